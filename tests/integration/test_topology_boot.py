# -*- coding: utf-8 -*-
"""The NUMA-faithful guest topology of kvm_vm's topology host, booted: a real QEMU guest (TCG) in
the lab with two NUMA cells and one pcie-expander-bus per cell, each carrying a virtio-rng device
behind a root port as the stand-in for a GPU (the lab has no GPU to pass through). The cells,
pinning, memory binding and placement come from module_utils/_topology.py, the code kvm_vm uses.

Inside the guest, sysfs must show each stand-in on the NUMA node of its cell, below an extra PCI
root bus (the expander bus), not below the root complex (pci0000:00). The lab image has no
pciutils, so the guest's own sysfs stands in for ``lspci -t``: each device's path under
/sys/devices is its place in the PCI tree.

The lab host has one NUMA node and two CPUs, so both guest cells are bound to host node 0 and
pinned to one host CPU each; the guest cannot tell."""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import etree, parse_xml, to_xml
from ansible_collections.iaas.kvm.plugins.module_utils._topology import apply_cells, place_devices
from tests.integration.conftest import DOMAIN_TYPE, SSHKey
from tests.integration.guests import Guest, make_seed_volume, overlay

pytestmark = [pytest.mark.lab, pytest.mark.guest]

VIRTIO_RNG = ("0x1af4", ("0x1005", "0x1044"))  # transitional and modern virtio-rng
# What the guest prints: per PCI function its name, NUMA node, vendor:device and place in the tree.
PROBE = (
    "for d in /sys/bus/pci/devices/*; do "
    'echo "$(basename $d) $(cat $d/numa_node) $(cat $d/vendor):$(cat $d/device) $(readlink -f $d)"; done; '
    'for n in /sys/devices/system/node/node[0-9]*; do echo "$(basename $n) cpus $(cat $n/cpulist)"; done'
)
TOPOLOGY = dict(
    cells=[
        dict(node=0, cpus="0", vcpus="0", memory=512),
        dict(node=0, cpus="1", vcpus="1", memory=512),
    ],
    devices=[dict(id="ua-standin-0", cell=0), dict(id="ua-standin-1", cell=1)],
)


def domain(name, disk, seed, network):
    root = parse_xml(
        f"""<domain type='{DOMAIN_TYPE}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{escape(disk)}'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='{escape(seed)}'/><target dev='sda' bus='scsi'/><readonly/>
    </disk>
    <interface type='network'><source network='{escape(network)}'/><model type='virtio'/></interface>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>"""
    )
    devices = root.find("devices")
    standins = []
    for index in range(2):
        rng = etree.SubElement(devices, "rng", model="virtio")
        etree.SubElement(rng, "backend", model="random").text = "/dev/urandom"
        etree.SubElement(rng, "alias", name="ua-standin-%d" % index)
        standins.append(rng)
    apply_cells(root, TOPOLOGY)
    place_devices(
        devices,
        TOPOLOGY,
        {d["id"]: d["cell"] for d in TOPOLOGY["devices"]},
        elements=standins,
        ident=lambda e: e.find("alias").get("name"),
    )
    return root


def test_guest_sees_its_devices_on_the_numa_nodes_of_their_expander_buses(
    lab_conn, lab_network, default_pool, base_volume, tmp_path
):
    name = "iaastest-topology-%s" % uuid.uuid4().hex[:6]
    key = SSHKey(tmp_path)
    guest = Guest(conn=lab_conn, name=name, key=key)
    try:
        disk = overlay(default_pool, name + ".qcow2", base_volume)
        guest.volumes.append(disk)
        seed = make_seed_volume(lab_conn, default_pool, name + "-seed.iso", name, key.public)
        guest.volumes.append(seed)
        xml = domain(name, disk.path(), seed.path(), lab_network.name())
        dom = lab_conn.defineXML(to_xml(xml))
        # What libvirt made of it: the bus numbers it gave the expander buses.
        stored = parse_xml(dom.XMLDesc(0))
        bus_numbers = {
            c.findtext("./target/node"): int(c.find("./target").get("busNr"))
            for c in stored.findall("./devices/controller[@model='pcie-expander-bus']")
        }
        assert sorted(bus_numbers) == ["0", "1"]
        dom.create()
        guest.wait_for_ssh()
        printed = guest.ssh(PROBE).stdout
        print(printed)  # the evidence (pytest -s shows it)
    finally:
        guest.destroy()

    lines = [line.split() for line in printed.splitlines()]
    nodes = {line[0]: line[2] for line in lines if line[1] == "cpus"}
    assert nodes == {"node0": "0", "node1": "1"}, printed
    standins = [line for line in lines if len(line) == 4 and line[2].split(":")[0] == VIRTIO_RNG[0]]
    standins = [line for line in standins if line[2].split(":")[1] in VIRTIO_RNG[1]]
    assert len(standins) == 2, printed
    by_node = {}
    for address, node, _ids, path in standins:
        by_node[node] = (address, path)
        # Below an expander bus: an extra PCI root (pci0000:<busNr>), never the root complex.
        assert not path.startswith("/sys/devices/pci0000:00/"), path
    assert sorted(by_node) == ["0", "1"], printed
    for node, (_address, path) in by_node.items():
        root_bus = "/sys/devices/pci0000:%02x/" % bus_numbers[node]
        assert path.startswith(root_bus), (node, path, bus_numbers)
