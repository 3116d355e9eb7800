# -*- coding: utf-8 -*-
"""kvm_vm with the host's view of its passed-through devices, against libvirt's test driver:
the NUMA-faithful topology (topology: host), NIC VFs with fixed MACs, vGPUs (mediated devices
and NVIDIA VFs), GPU VFs standing alone, assume_vfio, and the refusals where the task
contradicts what the devices need.

kvm_vm runs through its main() and reads the device facts from a fake host's sysfs
(tests/fakesys.py) through its root option; the test driver validates and stores the
definition. Its devices have BARs small enough for the firmware's default 64-bit window, so
nothing here needs the qemu: namespace that the test driver drops (the large-BAR cases run
against the lab's libvirtd: tests/integration/test_vm_gpu_host.py). Each VM goes through check
mode (the XML it would define), apply, apply again (no change) and check mode again."""

from __future__ import annotations

import re

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from tests.fakesys import HGX_NODE0, HGX_NODE1, HGX_NVSWITCHES, TWO_NODE_CPUS, TWO_NODE_GPUS
from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE
NAME = "iaastest-topo"
GPUS = sorted(TWO_NODE_GPUS)
HGX_BOARD = sorted(HGX_NODE0 + HGX_NODE1 + HGX_NVSWITCHES)
FUNCTIONS = sorted(GPUS + [a[:-1] + "1" for a in GPUS])


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


@pytest.fixture
def vm(run_module, conn):
    def run(host, args, check_mode=False, diff=False, fails=False):
        full = dict(dict(name=NAME, domain_type="qemu", uri=TEST_URI, root=str(host.root)), **args)
        return run_module("kvm_vm", full, check_mode=check_mode, diff=diff, fails=fails)

    return run


def defined(conn):
    return NAME in [d.name() for d in conn.listAllDomains(0)]


def stored(conn):
    return parse_xml(conn.lookupByName(NAME).XMLDesc(INACTIVE))


def converge(vm, conn, host, args):
    """check mode (nothing defined, the XML returned), apply, apply again, check again."""
    existed = defined(conn)
    predicted = vm(host, args, check_mode=True)
    assert not predicted.failed, predicted.get("msg")
    assert predicted.changed and "xml" in predicted
    assert defined(conn) == existed, "check mode defined the VM"
    applied = vm(host, args)
    assert not applied.failed, applied.get("msg")
    assert applied.changed
    for check_mode in (False, True):
        again = vm(host, args, check_mode=check_mode)
        assert not again.failed, again.get("msg")
        assert not again.changed and again["actions"] == [], again.get("diff")
        assert "xml" not in again
    return predicted, applied, stored(conn)


def controllers(tree):
    return {int(c.get("index")): c for c in tree.findall("./devices/controller[@type='pci']")}


def cell_of(tree, element):
    """The guest NUMA cell of the expander bus a device hangs on, through its root port."""
    by_index = controllers(tree)
    port = by_index[int(element.find("./address").get("bus"), 16)]
    assert port.get("model") == "pcie-root-port"
    expander = by_index[int(port.find("./address").get("bus"), 16)]
    assert expander.get("model") == "pcie-expander-bus"
    return int(expander.findtext("./target/node"))


def hostdevs(tree):
    result = {}
    for hostdev in tree.findall("./devices/hostdev[@type='pci']"):
        source = hostdev.find("./source/address")
        address = "%04x:%02x:%02x.%x" % tuple(int(source.get(k), 16) for k in ("domain", "bus", "slot", "function"))
        result[address] = hostdev
    return result


FOUR = dict(vcpus=8, memory=16384, gpus=GPUS)


def test_gpus_on_two_nodes_get_a_numa_faithful_guest(vm, conn, fake_host):
    host = fake_host("two_nodes")
    predicted, applied, tree = converge(vm, conn, host, FOUR)
    for xml in (parse_xml(predicted["xml"]), tree):
        assert [(c.get("id"), c.get("cpus")) for c in xml.findall("./cpu/numa/cell")] == [("0", "0-3"), ("1", "4-7")]
        pins = {int(p.get("vcpu")): p.get("cpuset") for p in xml.findall("./cputune/vcpupin")}
        assert pins == {v: TWO_NODE_CPUS[0 if v < 4 else 1] for v in range(8)}
        assert [(m.get("cellid"), m.get("nodeset")) for m in xml.findall("./numatune/memnode")] == [
            ("0", "0"),
            ("1", "1"),
        ]
        assert xml.find("./numatune/memory").attrib == {"mode": "strict", "nodeset": "0-1"}
        devices = hostdevs(xml)
        assert sorted(devices) == FUNCTIONS
        for address in FUNCTIONS:
            assert cell_of(xml, devices[address]) == TWO_NODE_GPUS[address[:-1] + "0"], address
        # A GPU and its audio function share one guest slot, multifunction on function 0.
        gpu, audio = devices["0000:98:00.0"].find("./address"), devices["0000:98:00.1"].find("./address")
        assert (gpu.get("bus"), gpu.get("slot")) == (audio.get("bus"), audio.get("slot"))
        assert (gpu.get("function"), gpu.get("multifunction"), audio.get("function")) == ("0x0", "on", "0x1")
    assert [c.get("memory") for c in tree.findall("./cpu/numa/cell")] == ["8388608", "8388608"]  # KiB
    facts = applied["vm"]["topology"]
    assert facts["cells"] == [
        dict(node=0, cpus=TWO_NODE_CPUS[0], vcpus="0-3", memory=8192),
        dict(node=1, cpus=TWO_NODE_CPUS[1], vcpus="4-7", memory=8192),
    ]
    assert {d["id"]: d["cell"] for d in facts["devices"]} == {a: TWO_NODE_GPUS[a[:-1] + "0"] for a in FUNCTIONS}
    # Small BARs fit the firmware's default window: no mmio64_mb, no <maxphysaddr>.
    assert applied["vm"]["mmio64_mb"] is None and applied["vm"]["maxphysaddr"] is None


def test_a_topology_change_needs_a_restart_and_flat_takes_it_back(vm, conn, fake_host):
    host = fake_host("two_nodes")
    started = vm(host, dict(FOUR, state="running"))
    assert not started.failed, started.get("msg")
    grown = vm(host, dict(FOUR, vcpus=16, vcpus_max=16, state="running"))
    assert not grown.failed, grown.get("msg")
    assert grown.changed and grown["restart_required"] and "topology" in grown["restart_reasons"]
    assert [c.get("cpus") for c in stored(conn).findall("./cpu/numa/cell")] == ["0-7", "8-15"]
    again = vm(host, dict(FOUR, vcpus=16, vcpus_max=16, state="running"))
    assert not again.failed and not again.changed and again["restart_required"]

    flat = vm(host, dict(FOUR, vcpus=16, vcpus_max=16, topology="flat", state="running"))
    assert not flat.failed, flat.get("msg")
    assert flat.changed and flat["restart_required"]
    tree = stored(conn)
    assert tree.find("./cpu/numa") is None and tree.find("./cputune/vcpupin") is None
    assert tree.find("./numatune") is None and tree.find("./vcpu").get("cpuset") is None
    assert not [c for c in controllers(tree).values() if c.get("model") == "pcie-expander-bus"]
    assert sorted(hostdevs(tree)) == FUNCTIONS
    # Flat as kvm_vm always did it: every slot behind its own root port on the root complex.
    ports = {h.find("./address").get("bus") for h in hostdevs(tree).values()}
    assert len(ports) == 4 and all(controllers(tree)[int(p, 16)].find("./address") is None for p in ports)
    same = vm(host, dict(FOUR, vcpus=16, vcpus_max=16, topology="flat", state="running"))
    assert not same.failed and not same.changed


def test_gpus_of_one_node(vm, conn, fake_host):
    host = fake_host("two_nodes")
    _predicted, applied, tree = converge(vm, conn, host, dict(vcpus=2, memory=4096, gpus=["0000:98:00.0"]))
    assert [(c["node"], c["vcpus"]) for c in applied["vm"]["topology"]["cells"]] == [(1, "0-1")]
    assert tree.find("./vcpu").get("cpuset") == TWO_NODE_CPUS[1]
    # The task's numa_node agrees: no contradiction.
    same = vm(host, dict(vcpus=2, memory=4096, gpus=["0000:98:00.0"], numa_node=1))
    assert not same.failed, same.get("msg")


def test_assume_vfio_makes_check_mode_tell_the_truth(vm, conn, fake_host):
    host = fake_host("two_nodes")
    args = dict(vcpus=2, memory=4096, gpus=["0000:17:00.0"])
    plain = vm(host, args, check_mode=True)
    assert not plain.failed, plain.get("msg")
    assert [h.get("managed") for h in hostdevs(parse_xml(plain["xml"])).values()] == ["yes", "yes"]
    assumed = vm(host, dict(args, assume_vfio=["0000:17:00.0", "0000:17:00.1"]), check_mode=True)
    assert not assumed.failed, assumed.get("msg")
    assert [h.get("managed") for h in hostdevs(parse_xml(assumed["xml"])).values()] == ["no", "no"]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(numa_node=0),
            r"^numa_node 0 contradicts topology host: the VM's devices sit on host NUMA node\(s\) 0, 1",
        ),
        (
            dict(vcpus=1),
            r"^topology host gives each of the host NUMA nodes 0, 1 a guest NUMA cell, so the VM needs at ",
        ),
        (dict(machine="pc"), r"^gpus need a q35 machine"),
        (dict(maxphysaddr=35), r"^maxphysaddr 35 is too small: .* need 36 bits\.$"),
        (dict(maxphysaddr="passthrough", cpu_mode="host-model"), r"^maxphysaddr passthrough needs cpu_mode host-pass"),
        (dict(maxphysaddr="wide"), r"^maxphysaddr must be passthrough or a number of bits \(32-64\), got 'wide'\.$"),
        (
            dict(vfs=[dict(address="0000:3b:02.0", mac="01:00:5e:00:00:01")]),
            r"^vfs\[0\]\.mac '01:00:5e:00:00:01' is not ",
        ),
        (dict(vgpus=[dict(uuid="x", address="0000:41:00.4")]), r"^parameters are mutually exclusive: uuid\|address"),
        (dict(vgpus=[dict(uuid="not-a-uuid")]), r"^vgpus\[0\]\.uuid 'not-a-uuid' is not a UUID\.$"),
    ],
)
def test_contradictions_are_refused_before_anything_is_defined(vm, conn, fake_host, change, message):
    host = fake_host("two_nodes")
    result = vm(host, dict(FOUR, **change), fails=True)
    assert result.failed, "the contradiction was expected to be refused"
    assert re.search(message, result["msg"]), result["msg"]
    assert not result.changed and not defined(conn)


def test_topology_host_needs_numa_facts(vm, conn, fake_host):
    host = fake_host("shared_usb")  # its GPU shows no NUMA node
    refused = vm(host, dict(vcpus=2, memory=1024, gpus=["0000:0a:00.0"], topology="host"), fails=True)
    assert refused.failed, "topology host without NUMA facts was expected to fail"
    assert refused["msg"].startswith("topology host needs the host NUMA nodes of the VM's GPUs, VFs or vGPUs")
    # Left out, the VM is flat, as before the host's facts were read.
    _p, applied, tree = converge(vm, conn, host, dict(vcpus=2, memory=1024, gpus=["0000:0a:00.0"]))
    assert applied["vm"]["topology"] is None and tree.find("./cpu/numa") is None
    assert sorted(hostdevs(tree)) == ["0000:0a:00.0", "0000:0a:00.1"]


# -- VFs and vGPUs ---------------------------------------------------------------------------


def test_a_nic_vf_with_a_fixed_mac_near_its_node(run_module, vm, conn, fake_host):
    host = fake_host("nic_sriov")
    vfs = run_module(
        "kvm_sriov", dict(uri=TEST_URI, root=str(host.root), device="0000:3b:00.0", num_vfs=2, vf_driver="vfio")
    )
    assert not vfs.failed, vfs.get("msg")
    args = dict(vcpus=2, memory=2048, vfs=[dict(address="0000:3b:02.1", mac="52:54:00:6B:00:01")])
    _p, applied, tree = converge(vm, conn, host, args)
    ifaces = tree.findall("./devices/interface[@type='hostdev']")
    assert len(ifaces) == 1 and ifaces[0].get("managed") != "yes"  # on vfio-pci already (no is the default)
    assert ifaces[0].find("./mac").get("address") == "52:54:00:6b:00:01"
    assert cell_of(tree, ifaces[0]) == 0
    assert applied["vm"]["topology"]["cells"][0]["node"] == 1  # the NIC's node
    assert applied["vm"]["vfs"] == [dict(address="0000:3b:02.1", mac="52:54:00:6b:00:01")]
    assert applied["vm"]["interfaces"] == [] and applied["vm"]["machine"] == "q35"
    # Another VF without a MAC: libvirt's choice is kept.
    moved = vm(host, dict(args, vfs=[dict(address="0000:3b:02.0")]))
    assert not moved.failed, moved.get("msg")
    assert moved.changed and [v["address"] for v in moved["vm"]["vfs"]] == ["0000:3b:02.0"]
    again = vm(host, dict(args, vfs=[dict(address="0000:3b:02.0")]))
    assert not again.failed and not again.changed


def test_an_mdev_vgpu(run_module, vm, conn, fake_host):
    host = fake_host("mdev")
    made = run_module(
        "kvm_vgpu", dict(uri=TEST_URI, root=str(host.root), name=NAME, parent="0000:3b:00.0", type="nvidia-228")
    )
    assert not made.failed, made.get("msg")
    uuid = made["vgpu"]["uuid"]
    _p, applied, tree = converge(vm, conn, host, dict(vcpus=2, memory=4096, vgpus=[dict(uuid=uuid.upper())]))
    mdevs = tree.findall("./devices/hostdev[@type='mdev']")
    assert [m.find("./source/address").get("uuid") for m in mdevs] == [uuid]
    assert mdevs[0].get("model") == "vfio-pci"
    assert cell_of(tree, mdevs[0]) == 0
    assert applied["vm"]["vgpus"] == [dict(uuid=uuid, address=None)] and applied["vm"]["gpus"] == []
    gone = vm(host, dict(vcpus=2, memory=4096, vgpus=[]))
    assert not gone.failed and gone.changed and stored(conn).find("./devices/hostdev") is None


def test_a_vf_vgpu_is_unmanaged_and_not_a_gpu(run_module, vm, conn, fake_host):
    host = fake_host("sriov")
    made = run_module(
        "kvm_vgpu", dict(uri=TEST_URI, root=str(host.root), name=NAME, parent="0000:41:00.0", type="1154")
    )
    assert not made.failed, made.get("msg")
    host.wait_quiet()
    address = made["vgpu"]["address"]
    args = dict(vcpus=2, memory=8192, vgpus=[dict(address=address)], gpus=[])
    _p, applied, tree = converge(vm, conn, host, args)
    hostdev = hostdevs(tree)[address]
    assert hostdev.get("managed") == "no" and hostdev.find("./alias").get("name") == "ua-vgpu-0000-41-00-4"
    assert applied["vm"]["vgpus"] == [dict(uuid=None, address=address)] and applied["vm"]["gpus"] == []
    # Two GPU VFs in gpus stand alone: two guest slots, not one multifunction device.
    two = vm(host, dict(args, vgpus=[], gpus=["0000:41:00.6", "0000:41:00.7"]))
    assert not two.failed, two.get("msg")
    devices = hostdevs(stored(conn))
    assert sorted(devices) == ["0000:41:00.6", "0000:41:00.7"]
    assert devices["0000:41:00.6"].find("./address").get("bus") != devices["0000:41:00.7"].find("./address").get("bus")


# -- large BARs: refused before anything is defined (the lab defines the ones that fit) ----------

EIGHT = dict(cpu_mode="host-passthrough", vcpus=16, memory="512GiB", gpus=HGX_BOARD)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(mmio64_mb=65536), r"^mmio64_mb 65536 is too small for the devices' 64-bit BARs, which need 2097152 MiB"),
        (dict(maxphysaddr=41), r"^maxphysaddr 41 is too small: .* need 42 bits\.$"),
        (dict(maxphysaddr=47), r"^maxphysaddr 47 is more than this host's CPUs have \(46 bits\)\.$"),
        (dict(firmware="bios"), r"a BIOS \(SeaBIOS\) guest has only QEMU's default 32768 MiB; use firmware: uefi\.$"),
        (dict(memory="64TiB"), r"needs a 47-bit physical address space .* this host's CPUs have 46 bits"),
    ],
)
def test_large_bars_that_cannot_be_mapped_are_refused(vm, conn, fake_host, change, message):
    host = fake_host("hgx")
    result = vm(host, dict(EIGHT, **change), fails=True)
    assert result.failed, "the request was expected to be refused"
    assert re.search(message, result["msg"]), result["msg"]
    assert not result.changed and not defined(conn)


def test_a_host_with_too_few_address_bits_is_refused(vm, conn, fake_host):
    host = fake_host("hgx")
    host.set_cpu_vendor("GenuineIntel", phys_bits=41)
    result = vm(host, EIGHT, fails=True)
    assert result.failed, "the address width was expected to be refused"
    assert result["msg"].startswith(
        "The guest needs a 42-bit physical address space for its memory and its devices' 64-bit BARs, and this "
        "host's CPUs have 41 bits"
    )
    assert not defined(conn)
