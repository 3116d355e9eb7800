# -*- coding: utf-8 -*-
"""kvm_host_info through its main() against libvirt's test driver and fake hosts:
topology, NUMA nodes and huge pages, committed resources of running and stopped VMs,
GPUs with the VMs that hold them, pools, the drain marker, and GPUs from libvirt's
node devices where sysfs has none."""

from __future__ import annotations

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._host import DRAIN_MARKER
from tests.fakesys import HGX_NODE0, HGX_NODE1
from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver

MODULE = "kvm_host_info"


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


def host_info(run_module, host, check_mode=False, **args):
    args.setdefault("uri", TEST_URI)
    result = run_module(MODULE, dict(args, root=str(host.root)), check_mode=check_mode)
    assert not result.failed, result.get("msg")
    assert not result.changed
    return result


def kvm_vm(run_module, **args):
    result = run_module("kvm_vm", dict(args, uri=TEST_URI, domain_type="qemu", shutdown_timeout=2))
    assert not result.failed, result.get("msg")
    return result


def hgx_with_hugepages(host):
    host.add_hugepages(0, 2048, total=1024, free=512)
    host.add_hugepages(0, 1048576, total=0, free=0)
    host.add_hugepages(1, 2048, total=2048, free=2048)
    host.add_hugepages(1, 1048576, total=8, free=6)


def test_topology_numa_nodes_and_huge_pages(run_module, fake_host, conn):
    host = fake_host("hgx", hgx_with_hugepages)
    before = host.snapshot()
    result = host_info(run_module, host)
    assert host.snapshot() == before and host.events == []
    # libvirt's test driver: two cells of 8 CPUs, one socket each.
    assert result["cpu"]["cpus"] == 16 and result["cpu"]["sockets"] == 2 and result["cpu"]["cores"] == 16
    assert result["cpu"]["threads_per_core"] == 1
    nodes = result["numa_nodes"]
    assert [(n["id"], n["cpu_list"], n["memory_mib"]) for n in nodes] == [(0, "0-7", 2048), (1, "8-15", 4096)]
    assert nodes[0]["cpus"] == list(range(8))
    assert nodes[0]["hugepages"] == [
        dict(size_kib=2048, total=1024, free=512),
        dict(size_kib=1048576, total=0, free=0),
    ]
    assert nodes[1]["hugepages"] == [
        dict(size_kib=2048, total=2048, free=2048),
        dict(size_kib=1048576, total=8, free=6),
    ]
    assert result["hugepages"] == [
        dict(size_kib=2048, total=3072, free=2560),
        dict(size_kib=1048576, total=8, free=6),
    ]
    assert result["memory"]["total_mib"] == 3072
    assert result["hostname"] and result["uri"] == TEST_URI
    assert result["pools"] == [
        dict(
            name="default-pool",
            type="dir",
            path="/default-pool",
            active=True,
            capacity=107374182400,
            allocation=0,
            available=107374182400,
        )
    ]
    assert host_info(run_module, host, check_mode=True) == result


def test_without_numa_nodes_in_sysfs_huge_pages_come_from_libvirt(run_module, fake_host, conn):
    result = host_info(run_module, fake_host("gpu_audio"))  # a fake host without /sys/devices/system/node
    # The test driver's capabilities list 2 MiB and 1 GiB pages, none reserved; the
    # smallest size of each cell is its base page, not a huge page.
    assert [(p["size_kib"], p["total"]) for p in result["numa_nodes"][0]["hugepages"]] == [(2048, 0), (1048576, 0)]
    assert [p["size_kib"] for p in result["numa_nodes"][1]["hugepages"]] == [2048, 1048576]


def test_committed_resources_count_running_and_stopped_vms_with_their_ceilings(run_module, fake_host, conn):
    kvm_vm(run_module, name="run1", state="running", vcpus=2, vcpus_max=4, memory=512, memory_max=1024)
    kvm_vm(run_module, name="off1", state="stopped", vcpus=3, memory=256)
    result = host_info(run_module, fake_host("hgx"))
    domains = {d["name"]: d for d in result["domains"]}
    assert sorted(domains) == ["off1", "run1", "test"]
    run1, off1, test = domains["run1"], domains["off1"], domains["test"]
    assert (run1["state"], run1["running"], run1["vcpus"], run1["vcpus_max"]) == ("running", True, 2, 4)
    assert (run1["memory_mib"], run1["memory_max_mib"]) == (512, 1024)
    assert (off1["state"], off1["running"], off1["persistent"]) == ("stopped", False, True)
    # The test driver's own domain "test": 2 vCPUs, an 8 GiB ceiling.
    assert (test["vcpus_max"], test["memory_max_mib"]) == (2, 8192)
    assert result["committed"]["running"] == dict(domains=2, vcpus=4 + 2, memory_mib=1024 + 8192)
    assert result["committed"]["all"] == dict(domains=3, vcpus=4 + 2 + 3, memory_mib=1024 + 8192 + 256)


def test_gpus_with_their_numa_node_and_the_vms_that_hold_them(run_module, fake_host, conn):
    host = fake_host("hgx")
    # One running VM with a GPU, one stopped VM that still holds its GPU.
    kvm_vm(run_module, name="train1", state="running", memory=1024, gpus=[HGX_NODE0[0]], tags={"team": "a"})
    kvm_vm(run_module, name="train2", state="stopped", memory=1024, gpus=[HGX_NODE1[1]])
    result = host_info(run_module, host)
    assert result["gpu_source"] == "sysfs"
    gpus = {g["address"]: g for g in result["gpus"]}
    assert sorted(gpus) == sorted([*HGX_NODE0, *HGX_NODE1, "0000:03:00.0"])
    for address in HGX_NODE0 + HGX_NODE1:
        gpu = gpus[address]
        assert gpu["model"] == "10de:2330" and gpu["driver"] == "nvidia"
        assert gpu["numa_node"] == (0 if address in HGX_NODE0 else 1)
        assert gpu["passthrough_ready"] is True
    assert gpus[HGX_NODE0[0]]["used_by"] == ["train1"] and gpus[HGX_NODE0[0]]["free"] is False
    assert gpus[HGX_NODE1[1]]["used_by"] == ["train2"] and gpus[HGX_NODE1[1]]["free"] is False
    assert [a for a, g in sorted(gpus.items()) if g["free"]] == sorted(
        a for a in HGX_NODE0 + HGX_NODE1 if a not in (HGX_NODE0[0], HGX_NODE1[1])
    )
    bmc = gpus["0000:03:00.0"]
    assert bmc["used_by"] == [] and bmc["passthrough_ready"] is False and bmc["free"] is False
    assert bmc["refusals"][0].startswith("Refusing to bind 0000:03:00.0 to vfio-pci: it is the boot VGA device")
    domains = {d["name"]: d for d in result["domains"]}
    assert domains["train1"]["gpus"] == [dict(address=HGX_NODE0[0], model=None)]
    assert domains["train1"]["tags"] == {"team": "a"}
    assert domains["train2"]["gpus"] == [dict(address=HGX_NODE1[1], model=None)]


def test_a_vm_holds_the_gpus_of_its_live_and_of_its_next_definition(run_module, fake_host, conn):
    host = fake_host("hgx")
    kvm_vm(run_module, name="train1", state="running", memory=1024, gpus=[HGX_NODE0[0]])
    moved = kvm_vm(run_module, name="train1", state="running", memory=1024, gpus=[HGX_NODE0[1]])
    assert moved["restart_required"] is True
    gpus = {g["address"]: g for g in host_info(run_module, host)["gpus"]}
    assert gpus[HGX_NODE0[0]]["used_by"] == ["train1"] and gpus[HGX_NODE0[1]]["used_by"] == ["train1"]


def test_the_drain_marker(run_module, fake_host, conn):
    host = fake_host("gpu_audio")
    assert host_info(run_module, host)["drained"] is False
    marker = host.root / DRAIN_MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text("")
    result = host_info(run_module, host)
    assert result["drained"] is True and result["drained_reason"] is None
    marker.write_text("firmware update\n")
    result = host_info(run_module, host)
    assert result["drained"] is True and result["drained_reason"] == "firmware update"
    assert str(DRAIN_MARKER) == "var/lib/iaas-kvm/drained"


NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>2</threads><active>8</active>
    <mhz>2000</mhz><model>x86_64</model></cpu>
  <memory>16777216</memory>
  <domain type='test'>
    <name>holder</name><memory>524288</memory><vcpu>2</vcpu><os><type>hvm</type></os>
    <devices>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source><address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source>
      </hostdev>
    </devices>
  </domain>
  <pool type='dir'><name>default-pool</name><target><path>/default-pool</path></target></pool>
  <device><name>pci_0000_41_00_0</name><parent>computer</parent>
    <capability type='pci'><class>0x030200</class><domain>0</domain><bus>65</bus><slot>0</slot><function>0</function>
      <product id='0x2330'>GH100 [H100 SXM5 80GB]</product><vendor id='0x10de'>NVIDIA Corporation</vendor>
      <numa node='1'/></capability></device>
  <device><name>pci_0000_42_00_0</name><parent>computer</parent>
    <capability type='pci'><class>0x030000</class><domain>0</domain><bus>66</bus><slot>0</slot><function>0</function>
      <product id='0x2204'/><vendor id='0x10de'/></capability></device>
  <device><name>pci_0000_42_00_1</name><parent>computer</parent>
    <capability type='pci'><class>0x040300</class><domain>0</domain><bus>66</bus><slot>0</slot><function>1</function>
      <product id='0x1aef'/><vendor id='0x10de'/></capability></device>
</node>
"""


def test_gpus_from_libvirt_node_devices_where_sysfs_lists_no_pci_device(run_module, fake_host, tmp_path):
    node = tmp_path / "host.xml"
    node.write_text(NODE_XML)
    result = host_info(run_module, fake_host(), uri="test://%s" % node)
    assert result["gpu_source"] == "libvirt"
    assert result["gpus"] == [
        dict(
            address="0000:41:00.0",
            model="10de:2330",
            vendor_id="10de",
            device_id="2330",
            vendor_name="NVIDIA Corporation",
            device_name="GH100 [H100 SXM5 80GB]",
            numa_node=1,
            driver=None,
            iommu_group=None,
            passthrough_ready=None,
            refusals=[],
            used_by=["holder"],
            free=False,
        ),
        dict(
            address="0000:42:00.0",
            model="10de:2204",
            vendor_id="10de",
            device_id="2204",
            vendor_name=None,
            device_name=None,
            numa_node=None,
            driver=None,
            iommu_group=None,
            passthrough_ready=None,
            refusals=[],
            used_by=[],
            free=True,
        ),
    ]
    assert result["cpu"]["cpus"] == 8 and result["memory"]["total_mib"] == 16384


def test_an_unreachable_hypervisor_is_one_sentence(run_module, fake_host):
    result = run_module(
        MODULE, dict(uri="qemu+unix:///system?socket=/nonexistent/sock", root=str(fake_host().root)), fails=True
    )
    assert result.failed and not result.changed
    assert result["msg"].startswith("Cannot connect to the hypervisor at qemu+unix:///system?socket=/nonexistent/sock")
