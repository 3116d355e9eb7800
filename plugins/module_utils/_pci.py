# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI host devices in domain XML: shared by kvm_vm (gpus) and kvm_gpu_info
(the <hostdev> snippet it recommends)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import etree, normalise_pci_address


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
