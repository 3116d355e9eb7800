# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI host devices in domain XML: shared by kvm_vm (gpus) and kvm_gpu_info
(the <hostdev> snippet it recommends)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import etree, libvirt, normalise_pci_address, parse_xml


def split_pci_address(address):
    """(domain, bus, slot, function) integers of a PCI address."""
    text = normalise_pci_address(address)
    domain, bus, rest = text.split(":")
    slot, function = rest.split(".")
    return int(domain, 16), int(bus, 16), int(slot, 16), int(function, 16)


def slot_of(address):
    """``0000:01:00`` for ``0000:01:00.1``: the functions of one slot share it."""
    return normalise_pci_address(address).rsplit(".", 1)[0]


def hostdev_element(address, managed=True):
    """A ``<hostdev mode='subsystem' type='pci'>`` for one host PCI function.

    ``managed=False`` for devices already bound to vfio-pci (libvirt then leaves
    the binding alone); the guest-side ``<address>`` is left to the caller.
    """
    domain, bus, slot, function = split_pci_address(address)
    hostdev = etree.Element("hostdev", mode="subsystem", type="pci", managed="yes" if managed else "no")
    source = etree.SubElement(hostdev, "source")
    etree.SubElement(
        source,
        "address",
        domain="0x%04x" % domain,
        bus="0x%02x" % bus,
        slot="0x%02x" % slot,
        function="0x%x" % function,
    )
    return hostdev


def guest_address(parent, bus, slot=0, function=0, multifunction=False):
    """Append the guest-side ``<address type='pci'>`` (domain 0, ``bus``, ``slot``, ``function``;
    ``multifunction='on'`` where asked) to ``parent``, a device or controller element."""
    address = etree.SubElement(
        parent,
        "address",
        type="pci",
        domain="0x0000",
        bus="0x%02x" % bus,
        slot="0x%02x" % slot,
        function="0x%x" % function,
    )
    if multifunction:
        address.set("multifunction", "on")
    return address


_NODE_NAME_RE = re.compile(r"^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$")


def host_pci_functions(conn):
    """``{'0000:01:00.0': node device}`` for the host's PCI functions, through
    libvirt's node device API (so a remote URI works too); None when the host
    lists none (libvirt's test driver, a daemon without the node device driver)."""
    try:
        devices = conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
    except libvirt.libvirtError:
        return None
    result = {}
    for device in devices:
        match = _NODE_NAME_RE.match(device.name())
        if match:
            result["%s:%s:%s.%s" % match.groups()] = device
    return result or None


def slot_functions(host_functions, address):
    """The addresses of every host function in ``address``'s slot (sorted)."""
    slot = slot_of(address)
    return sorted(a for a in host_functions if slot_of(a) == slot)


def node_device_driver(device):
    """The host driver a PCI node device is bound to (``vfio-pci``, ``nvidia``…) or None."""
    return parse_xml(device.XMLDesc(0)).findtext("./driver/name")


def node_device_model(device):
    """``10de:2330``: the PCI vendor and device IDs of a PCI node device, or None."""
    capability = parse_xml(device.XMLDesc(0)).find("./capability[@type='pci']")
    if capability is None:
        return None
    ids = []
    for tag in ("vendor", "product"):
        element = capability.find(tag)
        try:
            ids.append("%04x" % int(element.get("id"), 16))
        except (AttributeError, TypeError, ValueError):
            return None
    return ":".join(ids)
