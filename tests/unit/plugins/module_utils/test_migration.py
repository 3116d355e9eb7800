# -*- coding: utf-8 -*-
"""The domain XML kvm_vm_migrate hands to the destination, read back through
libvirt's test driver: read-only media emptied (readonly_media=detach), disks
given as a pool's volume turned into file disks at the volume's path, and the
host devices that keep a VM where it is."""

from __future__ import annotations

import libvirt

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml, to_xml
from ansible_collections.iaas.kvm.plugins.module_utils._migration import (
    detach_media,
    passed_through_devices,
    volume_disks_as_files,
)
from tests.unit.plugins.modules.testdriver import emptied_test_driver

DOMAIN = """<domain type='test'><name>iaastest-mig-xml</name><memory unit='KiB'>1024</memory>
<os><type>hvm</type></os><devices>
<disk type='volume' device='disk'><source pool='default-pool' volume='disk.qcow2'/><target dev='vda'/></disk>
<disk type='volume' device='cdrom'><source pool='default-pool' volume='seed.iso'/><target dev='sda'/><readonly/></disk>
<disk type='file' device='cdrom'><target dev='sdb'/><readonly/></disk>
<hostdev mode='subsystem' type='pci' managed='yes'><source>
<address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source></hostdev>
</devices></domain>"""


def test_detach_and_file_disks_round_trip_through_libvirt():
    tree = parse_xml(DOMAIN)
    assert detach_media(tree) == ["sda"]
    volume_disks_as_files(tree, lambda pool, volume: "/%s/%s" % (pool, volume))
    assert passed_through_devices(tree) == ["PCI device 0000:41:00.0"]
    with emptied_test_driver() as conn:
        dom = conn.defineXML(to_xml(tree))
        back = parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    disks = {d.find("./target").get("dev"): d for d in back.findall("./devices/disk")}
    assert disks["vda"].get("type") == "file"
    assert disks["vda"].find("./source").attrib == {"file": "/default-pool/disk.qcow2"}
    assert disks["sda"].find("./source") is None and disks["sdb"].find("./source") is None
