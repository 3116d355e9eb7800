# -*- coding: utf-8 -*-
"""The journey, verified: inside the guest over SSH (through the lab namespace)
and on the hypervisor. Names and values come from the scenario's vars/main.yml."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from labhosts import domain_xml, guest_addresses, leased_addresses

GIB = 1024**3


@pytest.fixture(scope="module")
def vm(scenario, guest):
    return guest(scenario["guest_name"])


@pytest.fixture(scope="module")
def disk_volume(conn, scenario):
    pool = conn.storagePoolLookupByName(scenario["guest_pool"])
    return pool.storageVolLookupByName(scenario["guest_name"] + ".qcow2")


@pytest.fixture(scope="module")
def base_volume(conn, scenario):
    pool = conn.storagePoolLookupByName(scenario["guest_pool"])
    return pool.storageVolLookupByName(scenario["guest_base_volume"])


def test_hostname_is_the_vm_name(vm, scenario):
    assert vm.check_output("hostname") == scenario["guest_name"]


def test_user_has_the_key_and_passwordless_sudo(vm, scenario, public_key):
    user = vm.user()
    assert user.name == scenario["guest_user"]
    keys = vm.file("%s/.ssh/authorized_keys" % user.home)
    assert keys.user == scenario["guest_user"]
    assert keys.mode & 0o077 == 0
    assert public_key in keys.content_string.splitlines()
    assert vm.run("sudo -n true").rc == 0


def test_cloud_init_is_done(vm):
    # "error" (or "degraded done" in newer releases) when a module failed
    status = vm.run("cloud-init status")
    assert (status.rc, status.stdout.strip()) == (0, "status: done"), status


def test_user_data_wrote_its_file(vm, scenario):
    written = vm.file(scenario["guest_file_path"])
    assert written.is_file
    assert written.mode == int(scenario["guest_file_mode"], 8)
    assert written.user == "root"
    with vm.sudo():
        assert written.content_string == scenario["guest_file_content"]


def test_ansible_configured_the_guest_over_ssh(vm, scenario):
    assert vm.file("/etc/motd").content_string == scenario["guest_motd"]


def test_root_filesystem_grew_to_the_disk(vm, scenario, base_volume):
    disk_bytes = scenario["guest_disk_gib"] * GIB
    assert int(vm.check_output("lsblk -bdno SIZE /dev/vda")) == disk_bytes
    root_source = vm.check_output("findmnt -no SOURCE /")
    assert root_source.startswith("/dev/vda"), root_source
    root_bytes = int(vm.check_output("df -B1 --output=size / | tail -n 1"))
    base_bytes = base_volume.info()[1]
    assert root_bytes > base_bytes, "the root filesystem was not grown beyond the base image"
    assert root_bytes > 0.9 * disk_bytes, "root filesystem %d bytes on a %d-byte disk" % (root_bytes, disk_bytes)


def test_guest_address_is_the_one_libvirt_leased(vm, conn, scenario):
    # `vm` reached the guest at its leased address; the guest holds exactly that address
    # on the interface whose MAC is the domain's.
    leases = leased_addresses(conn, scenario["guest_name"])
    assert len(leases) == 1
    assert guest_addresses(vm) == leases
    # and its default route goes through the network's address on the bridge
    network = ET.fromstring(conn.networkLookupByName(scenario["guest_network"]).XMLDesc(0))
    assert vm.check_output("ip route show default").split()[:3] == ["default", "via", network.find("ip").get("address")]


def test_disk_is_a_qcow2_overlay_of_the_base_volume(conn, scenario, disk_volume, base_volume, hypervisor):
    volume = ET.fromstring(disk_volume.XMLDesc(0))
    assert volume.find("target/format").get("type") == "qcow2"
    assert volume.findtext("backingStore/path") == base_volume.path()
    assert disk_volume.info()[1] == scenario["guest_disk_gib"] * GIB
    # The image itself, as qemu-img reads it (-U: the running guest holds the lock).
    info = json.loads(hypervisor.check_output("qemu-img info -U --output=json %s", disk_volume.path()))
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == base_volume.path()
    assert info["virtual-size"] == scenario["guest_disk_gib"] * GIB
    # The running domain boots from that overlay, and QEMU opened the base image beneath it.
    (disk,) = [d for d in domain_xml(conn, scenario["guest_name"]).iter("disk") if d.get("device") == "disk"]
    source = disk.find("source")
    assert (source.get("pool"), source.get("volume")) == (scenario["guest_pool"], disk_volume.name())
    assert disk.find("backingStore/source").get("file") == base_volume.path()
