# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_vm's passed-through devices besides whole GPUs, and the guest address width
they need: their facts in a definition, the user's spec in the same shape, and
their XML.

- ``vfs``: SR-IOV virtual functions of a NIC as ``<interface type='hostdev'>``,
  with a fixed MAC where given (libvirt sets it through the physical function);
- ``vgpus``: a mediated device as ``<hostdev type='mdev' model='vfio-pci'>``, or an
  NVIDIA VF with a vGPU type as a PCI ``<hostdev managed='no'>`` marked with a
  user alias (``ua-vgpu-…``, kept by libvirt in the inactive definition) so it
  is told apart from a GPU of ``gpus``;
- ``maxphysaddr``: ``<cpu><maxphysaddr>``, ``passthrough`` or ``emulate`` with bits;
- ``topology``: the plan of ``_topology`` (None for the flat placement).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    etree,
    hostdev_address,
    normalise_pci_address,
)
from ansible_collections.iaas.kvm.plugins.module_utils._pci import hostdev_element
from ansible_collections.iaas.kvm.plugins.module_utils._topology import topology_facts

VGPU_ALIAS_PREFIX = "ua-vgpu-"
TOPOLOGIES = ("host", "flat")
FIELDS = ("topology", "maxphysaddr", "vfs", "vgpus")


def is_vgpu_hostdev(hostdev):
    alias = hostdev.find("./alias")
    return alias is not None and (alias.get("name") or "").startswith(VGPU_ALIAS_PREFIX)


def _vgpu_alias(address):
    return VGPU_ALIAS_PREFIX + address.replace(":", "-").replace(".", "-")


# -- facts ---------------------------------------------------------------------------------


def vf_facts(tree):
    result = []
    for iface in tree.findall("./devices/interface[@type='hostdev']"):
        mac = iface.find("./mac")
        result.append(dict(address=hostdev_address(iface), mac=mac.get("address").lower() if mac is not None else None))
    return sorted(result, key=lambda v: v["address"] or "")


def vgpu_facts(tree):
    result = []
    for hostdev in tree.findall("./devices/hostdev[@type='mdev']"):
        address = hostdev.find("./source/address")
        if address is not None and address.get("uuid"):
            result.append(dict(uuid=address.get("uuid").lower(), address=None))
    for hostdev in tree.findall("./devices/hostdev[@type='pci']"):
        if is_vgpu_hostdev(hostdev):
            result.append(dict(uuid=None, address=hostdev_address(hostdev)))
    return sorted(result, key=lambda v: (v["uuid"] or "", v["address"] or ""))


def maxphysaddr_facts(tree):
    node = tree.find("./cpu/maxphysaddr")
    if node is None:
        return None
    if node.get("mode") == "passthrough":
        return "passthrough"
    bits = node.get("bits")
    return int(bits) if bits and bits.isdigit() else None


def device_facts(tree):
    """The fields of this file in ``domain_facts``."""
    return dict(
        topology=topology_facts(tree),
        maxphysaddr=maxphysaddr_facts(tree),
        vfs=vf_facts(tree),
        vgpus=vgpu_facts(tree),
    )


# -- the user's spec ---------------------------------------------------------------------


def _pci(value, what):
    try:
        return normalise_pci_address(value)
    except ValueError as exc:
        raise LibvirtModuleError("%s: %s" % (what, exc)) from exc


def normalise_passthrough(params, normalise_mac):
    """The fields of this file that the task gives, validated; ``normalise_mac(value, what)``
    checks a MAC address as kvm_vm's interfaces do."""
    spec = {}
    if params.get("topology") is not None:
        spec["topology"] = params["topology"]
    value = params.get("maxphysaddr")
    if value is not None:
        if str(value).strip() == "passthrough":
            spec["maxphysaddr"] = "passthrough"
        else:
            try:
                bits = int(str(value).strip())
            except ValueError:
                bits = 0
            if not 32 <= bits <= 64:
                raise LibvirtModuleError("maxphysaddr must be passthrough or a number of bits (32-64), got %r." % value)
            spec["maxphysaddr"] = bits
    if params.get("vfs") is not None:
        vfs = []
        for index, entry in enumerate(params["vfs"]):
            address = _pci(entry["address"], "vfs[%d].address" % index)
            mac = normalise_mac(entry.get("mac"), "vfs[%d].mac" % index)
            vfs.append(dict(address=address, mac=mac))
        if len({v["address"] for v in vfs}) != len(vfs):
            raise LibvirtModuleError("vfs lists the same VF twice.")
        spec["vfs"] = sorted(vfs, key=lambda v: v["address"])
    if params.get("vgpus") is not None:
        spec["vgpus"] = _normalise_vgpus(params["vgpus"])
    return spec


def _normalise_vgpus(entries):
    vgpus = []
    for index, entry in enumerate(entries):
        if entry.get("uuid"):
            try:
                vgpus.append(dict(uuid=str(uuid.UUID(entry["uuid"])), address=None))
            except ValueError as exc:
                raise LibvirtModuleError("vgpus[%d].uuid %r is not a UUID." % (index, entry["uuid"])) from exc
        else:
            vgpus.append(dict(uuid=None, address=_pci(entry["address"], "vgpus[%d].address" % index)))
    keys = [(v["uuid"], v["address"]) for v in vgpus]
    if len(set(keys)) != len(keys):
        raise LibvirtModuleError("vgpus lists the same vGPU twice.")
    return sorted(vgpus, key=lambda v: (v["uuid"] or "", v["address"] or ""))


def project_passthrough(field, current, wanted):
    """``current`` as the comparison with ``wanted`` sees it: a VF's MAC left out of the task
    is libvirt's to choose, so it is not compared."""
    if field != "vfs":
        return current
    macs = {v["address"]: v["mac"] for v in wanted}
    return [dict(vf, mac=None) if vf["address"] in macs and macs[vf["address"]] is None else vf for vf in current or []]


# -- XML -----------------------------------------------------------------------------------


def apply_vfs(devices, spec, managed):
    """``<interface type='hostdev'>`` for the VFs of ``spec['vfs']``; ``managed`` maps a VF to
    whether libvirt binds it (not on vfio-pci yet)."""
    if "vfs" not in spec:
        return
    wanted = {v["address"]: v for v in spec["vfs"]}
    present = set()
    for iface in devices.findall("interface[@type='hostdev']"):
        address = hostdev_address(iface)
        if address not in wanted:
            devices.remove(iface)
            continue
        present.add(address)
        iface.set("managed", "yes" if managed.get(address, True) else "no")
        mac = wanted[address]["mac"]
        if mac and (iface.find("mac") is None or iface.find("mac").get("address", "").lower() != mac):
            if iface.find("mac") is not None:
                iface.remove(iface.find("mac"))
            iface.insert(0, etree.Element("mac", address=mac))
    for address in sorted(set(wanted) - present):
        iface = etree.SubElement(
            devices, "interface", type="hostdev", managed="yes" if managed.get(address, True) else "no"
        )
        if wanted[address]["mac"]:
            etree.SubElement(iface, "mac", address=wanted[address]["mac"])
        source = hostdev_element(address).find("source")
        source.find("address").set("type", "pci")
        iface.append(source)


def apply_vgpus(devices, spec):
    if "vgpus" not in spec:
        return
    uuids = {v["uuid"] for v in spec["vgpus"] if v["uuid"]}
    addresses = {v["address"] for v in spec["vgpus"] if v["address"]}
    for hostdev in devices.findall("hostdev[@type='mdev']"):
        address = hostdev.find("./source/address")
        found = (address.get("uuid") or "").lower() if address is not None else None
        if found in uuids:
            uuids.discard(found)
        else:
            devices.remove(hostdev)
    for hostdev in devices.findall("hostdev[@type='pci']"):
        if is_vgpu_hostdev(hostdev):
            if hostdev_address(hostdev) in addresses:
                addresses.discard(hostdev_address(hostdev))
            else:
                devices.remove(hostdev)
    for mdev_uuid in sorted(uuids):
        hostdev = etree.SubElement(devices, "hostdev", mode="subsystem", type="mdev", model="vfio-pci")
        etree.SubElement(etree.SubElement(hostdev, "source"), "address", uuid=mdev_uuid)
    for address in sorted(addresses):
        # The vendor's driver keeps the VF (its vGPU type lives there): libvirt must not rebind it.
        hostdev = hostdev_element(address, managed=False)
        etree.SubElement(hostdev, "alias", name=_vgpu_alias(address))
        devices.append(hostdev)


def apply_maxphysaddr(root, spec):
    if "maxphysaddr" not in spec:
        return
    cpu = root.find("./cpu")
    if cpu is None:
        cpu = etree.SubElement(root, "cpu")
    for node in cpu.findall("maxphysaddr"):
        cpu.remove(node)
    value = spec["maxphysaddr"]
    if value == "passthrough":
        etree.SubElement(cpu, "maxphysaddr", mode="passthrough")
    elif value is not None:
        etree.SubElement(cpu, "maxphysaddr", mode="emulate", bits=str(value))
