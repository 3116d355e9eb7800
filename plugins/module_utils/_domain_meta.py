# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's own data in a domain's ``<metadata>``: the VM's tags and
the model (PCI vendor:device) of each GPU kvm_vm attached.

libvirt keeps one element per XML namespace in ``<metadata>``; the collection
uses one, :data:`METADATA_NS`, a URN (no website stands behind it)::

    <metadata>
      <iaas:vm xmlns:iaas="urn:iaas-kvm:vm:1">
        <iaas:tags><iaas:tag name="role">web</iaas:tag></iaas:tags>
        <iaas:gpus><iaas:gpu address="0000:41:00.0" model="10de:2330"/></iaas:gpus>
      </iaas:vm>
    </metadata>

It is written with virDomainSetMetadata, which changes a running domain's live
definition and its persistent one at once, so a tag change never needs a
restart. kvm_vm_info, kvm_host_info and the kvm_vms inventory plugin read it
back from the domain XML, so no host query is needed to know a GPU's model.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    call,
    etree,
    libvirt,
    to_xml,
)

METADATA_NS = "urn:iaas-kvm:vm:1"
METADATA_KEY = "iaas"
_ROOT = "vm"


def empty_metadata():
    return dict(tags={}, gpus={})


def read_metadata(tree):
    """``{'tags': {name: value}, 'gpus': {address: model or None}}`` from a parsed domain definition."""
    meta = empty_metadata()
    root = tree.find("./metadata/{%s}%s" % (METADATA_NS, _ROOT))
    if root is None:
        return meta
    for tag in root.findall("./{%s}tags/{%s}tag" % (METADATA_NS, METADATA_NS)):
        if tag.get("name"):
            meta["tags"][tag.get("name")] = tag.text or ""
    for gpu in root.findall("./{%s}gpus/{%s}gpu" % (METADATA_NS, METADATA_NS)):
        if gpu.get("address"):
            meta["gpus"][gpu.get("address")] = gpu.get("model") or None
    return meta


def metadata_xml(meta):
    """The element virDomainSetMetadata takes (without its namespace), None when there is nothing to keep."""
    if not meta["tags"] and not meta["gpus"]:
        return None
    root = etree.Element(_ROOT)
    if meta["tags"]:
        tags = etree.SubElement(root, "tags")
        for name in sorted(meta["tags"]):
            etree.SubElement(tags, "tag", name=name).text = meta["tags"][name]
    if meta["gpus"]:
        gpus = etree.SubElement(root, "gpus")
        for address in sorted(meta["gpus"]):
            gpu = etree.SubElement(gpus, "gpu", address=address)
            if meta["gpus"][address]:
                gpu.set("model", meta["gpus"][address])
    return to_xml(root)


def write_metadata(dom, meta, live):
    """Store ``meta`` in the persistent definition of ``dom`` and, with ``live``, in the running one."""
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if live:
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    call(
        "set the tags of the VM %s" % dom.name(),
        dom.setMetadata,
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        metadata_xml(meta),
        METADATA_KEY,
        METADATA_NS,
        flags,
    )


def validate_tags(tags):
    """``tags`` (a dict of strings) checked, or LibvirtModuleError with one sentence."""
    result = {}
    for name, value in tags.items():
        if not isinstance(name, str) or not name.strip():
            raise LibvirtModuleError("Every tag needs a non-empty name, got %r." % (name,))
        if not isinstance(value, str):
            raise LibvirtModuleError(
                "tags.%s must be a string, got %s %r; quote it in YAML." % (name, type(value).__name__, value)
            )
        result[name] = value
    return result


def carry_metadata(wanted, current):
    """Copy the collection's metadata element of ``current`` into ``wanted`` (a domain
    tree from raw XML) unless ``wanted`` has one, so a redefine keeps the tags."""
    path = "./metadata/{%s}%s" % (METADATA_NS, _ROOT)
    if wanted.find(path) is not None or current.find(path) is None:
        return
    holder = wanted.find("./metadata")
    if holder is None:
        holder = etree.SubElement(wanted, "metadata")
    holder.append(copy.deepcopy(current.find(path)))
