# -*- coding: utf-8 -*-
"""kvm_vm_migrate against libvirt's test driver: what it refuses (with nothing
changed on either side), what it would do in check mode, and that a VM already
moved is ``ok``.

The source is a test driver of its own, read from a node file that each test
writes (``test:///<file>``: a fresh in-memory hypervisor on every open, so a
module run cannot change it); the destination is the shared ``test:///default``
(its network ``default``, its pool ``default-pool`` at ``/default-pool``,
3 MiB of free memory). The test driver cannot migrate; the moves themselves are
proven in the fleet lab (tests/fleet/test_migrate.py).
"""

from __future__ import annotations

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._storage import volume_xml
from tests.state import libvirt_state
from tests.unit.plugins.modules.testdriver import POOL, TEST_URI, emptied_test_driver

VM = "iaastest-mig-vm"
NODE = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>4</active><nodes>1</nodes><sockets>1</sockets>
    <cores>4</cores><threads>1</threads></cpu>
  <memory>2097152</memory>
  {domains}
  <network><name>default</name><bridge name='virbr0'/><forward/>
    <ip address='192.168.122.1' netmask='255.255.255.0'/></network>
  <network><name>iaastest-only-here</name><bridge name='iaastest0'/>
    <ip address='192.168.151.1' netmask='255.255.255.0'/></network>
  <pool type='dir'><name>{pool}</name><target><path>/{pool}</path></target>
    <volume type='file'><name>base.qcow2</name><capacity>1000000</capacity>
      <target><format type='qcow2'/></target></volume>
    <volume type='file'><name>clone.qcow2</name><capacity>1000000</capacity>
      <target><format type='qcow2'/></target>
      <backingStore><path>/{pool}/base.qcow2</path><format type='qcow2'/></backingStore></volume>
  </pool>
</node>"""


def domain(name=VM, memory_kib=1024, network="default", devices="", cpu=""):
    """A running test-driver domain (the node file's domains start running)."""
    return (
        "<domain type='test'><name>%s</name><memory unit='KiB'>%d</memory>%s<os><type>hvm</type></os>"
        "<devices><interface type='network'><source network='%s'/></interface>%s</devices></domain>"
        % (name, memory_kib, cpu, network, devices)
    )


CLONE_DISK = "<disk type='file' device='disk'><source file='/%s/clone.qcow2'/><target dev='vda'/></disk>" % POOL
GPU = "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source></hostdev>"


@pytest.fixture
def dest():
    with emptied_test_driver() as conn:
        yield conn


@pytest.fixture
def source(tmp_path):
    """``source(*domains)``: the URI of a source hypervisor holding ``domains``."""

    def make(*domains):
        path = tmp_path / "source.xml"
        path.write_text(NODE.format(domains="\n".join(domains), pool=POOL))
        return "test://" + str(path)

    return make


def task(uri, **extra):
    return dict(dict(uri=uri, dest_uri=TEST_URI, name=VM, migrate_uri="tcp://192.168.149.12"), **extra)


REFUSALS = [
    pytest.param(dict(devices=GPU), {}, "holds host devices (PCI device 0000:41:00.0)", id="gpu-hostdev"),
    pytest.param(
        dict(
            devices="<interface type='hostdev'><source><address type='pci' domain='0' bus='0x3b' slot='0x02' function='0x1'/></source></interface>"
        ),
        {},
        "SR-IOV interface 0000:3b:02.1",
        id="sriov-vf",
    ),
    pytest.param(
        dict(network="iaastest-only-here"),
        {},
        "lacks the VM's networks: iaastest-only-here (not defined)",
        id="network",
    ),
    pytest.param(
        dict(memory_kib=64 * 1024), {}, "MiB of free memory and the VM iaastest-mig-vm needs 64 MiB", id="memory"
    ),
    pytest.param(
        dict(
            cpu="<cpu mode='custom' match='exact'><model>qemu64</model><feature policy='require' name='avx512f'/></cpu>"
        ),
        {},
        "the destination's CPU lacks avx512f, which the VM's CPU model requires",
        id="cpu-model",
    ),
    pytest.param(
        dict(devices=CLONE_DISK), {}, "lacks /default-pool/base.qcow2, the base of the VM's disk", id="missing-base"
    ),
    pytest.param(
        dict(devices=CLONE_DISK),
        {"storage": "shared"},
        "does not see the disk /default-pool/clone.qcow2",
        id="not-shared",
    ),
]


@pytest.mark.parametrize("check_mode", [True, False], ids=["check", "apply"])
@pytest.mark.parametrize(("vm", "options", "sentence"), REFUSALS)
def test_refusals_change_nothing(run_module, dest, source, vm, options, sentence, check_mode):
    uri = source(domain(**vm))
    before = libvirt_state(dest)
    result = run_module("kvm_vm_migrate", task(uri, **options), check_mode=check_mode, fails=True)
    assert sentence in result["msg"], result["msg"]
    assert not result.changed
    assert libvirt_state(dest) == before
    assert dest.listAllDomains(0) and VM not in [d.name() for d in dest.listAllDomains(0)]


def test_cpu_the_destination_has_passes(run_module, dest, source):
    """A CPU model whose required features the destination has (pae) and a host CPU
    passed through between identical hosts are not refused."""
    for cpu in (
        "<cpu mode='custom' match='exact'><model>qemu32</model><feature policy='require' name='pae'/></cpu>",
        "<cpu mode='host-passthrough'/>",
    ):
        result = run_module("kvm_vm_migrate", task(source(domain(cpu=cpu))), check_mode=True)
        assert not result.failed
        assert result.changed and result["mode"] == "live"
        assert result["actions"] == [
            "migrate %s live to %s" % (VM, dest.getHostname()),
            "remove the definition of %s from the source" % VM,
        ]


def test_defined_on_both_sides_is_refused(run_module, dest, source):
    dest.defineXML(domain(network="default"))
    before = libvirt_state(dest)
    result = run_module("kvm_vm_migrate", task(source(domain())), fails=True)
    assert "is defined on both" in result["msg"]
    assert not result.changed
    assert libvirt_state(dest) == before


@pytest.mark.parametrize("check_mode", [True, False], ids=["check", "apply"])
def test_already_moved_is_ok(run_module, dest, source, check_mode):
    dest.defineXML(domain())
    result = run_module("kvm_vm_migrate", task(source()), check_mode=check_mode, diff=True)
    assert not result.failed
    assert not result.changed
    assert result["mode"] == "none" and result["actions"] == []


def test_nowhere_is_an_error(run_module, dest, source):
    result = run_module("kvm_vm_migrate", task(source()), fails=True)
    assert result["msg"].startswith("The VM iaastest-mig-vm is neither on this hypervisor")
    assert not result.changed


def test_linked_clone_plans_only_its_overlay(run_module, dest, source):
    """The base exists on the destination: check mode plans an overlay there and the
    live copy of its data (the overlay would be copied), and reports the base as left in
    place; nothing is made."""
    dest.storagePoolLookupByName(POOL).createXML(volume_xml("base.qcow2", 1000000, "qcow2"), 0)
    before = libvirt_state(dest)
    result = run_module("kvm_vm_migrate", task(source(domain(devices=CLONE_DISK))), check_mode=True, diff=True)
    assert not result.failed
    assert result.changed
    assert result["actions"][0] == (
        "create /default-pool/clone.qcow2 on the destination (overlay of /default-pool/base.qcow2, 1000000 bytes)"
    )
    roles = {v["path"]: (v["role"], v["copied"]) for v in result["volumes"]}
    assert roles == {
        "/default-pool/base.qcow2": ("base-in-place", False),
        "/default-pool/clone.qcow2": ("overlay", True),
    }
    assert result["diff"]["before"]["hypervisor"] != "" and "hypervisor" in result["diff"]["after"]
    assert libvirt_state(dest) == before


def test_full_chain_copies_the_missing_base_first(run_module, dest, source):
    result = run_module(
        "kvm_vm_migrate", task(source(domain(devices=CLONE_DISK)), copy_full_chain=True), check_mode=True
    )
    assert not result.failed
    assert result.changed
    assert result["actions"][:2] == [
        "copy /default-pool/base.qcow2 to the destination (base)",
        "create /default-pool/clone.qcow2 on the destination (overlay of /default-pool/base.qcow2, 1000000 bytes)",
    ]


def test_a_file_in_the_way_is_refused(run_module, dest, source):
    pool = dest.storagePoolLookupByName(POOL)
    pool.createXML(volume_xml("base.qcow2", 1000000, "qcow2"), 0)
    pool.createXML(volume_xml("clone.qcow2", 5, "raw"), 0)
    before = libvirt_state(dest)
    result = run_module("kvm_vm_migrate", task(source(domain(devices=CLONE_DISK))), fails=True)
    assert "already has /default-pool/clone.qcow2, where the VM's disk would go" in result["msg"]
    assert not result.changed
    assert libvirt_state(dest) == before


@pytest.mark.parametrize("option", ["timeout", "bandwidth"])
def test_negative_numbers_are_refused(run_module, dest, source, option):
    result = run_module("kvm_vm_migrate", task(source(domain()), **{option: -1}), fails=True)
    assert result["msg"] == "%s must be 0 or more, not -1." % option
    assert not result.changed
