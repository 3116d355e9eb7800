# -*- coding: utf-8 -*-
"""kvm_gpu_info through its real main() against fake hosts, and its <hostdev> snippet against
the domain kvm_vm defines with ``gpus`` in libvirt's test driver: both must agree."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from tests.fakesys import GIB, HGX_NODE0, HGX_NODE1, HGX_NVSWITCHES, MIB

MODULE = "kvm_gpu_info"
URI = "test:///default"


def info(run_module, host, check_mode=False, **args):
    args.setdefault("uri", URI)
    result = run_module(MODULE, dict(args, root=str(host.root)), check_mode=check_mode)
    assert not result.failed, result.get("msg")
    assert not result.changed
    return result


def by_address(result):
    return {gpu["address"]: gpu for gpu in result["gpus"]}


def test_hgx_facts(run_module, fake_host):
    host = fake_host("hgx")
    ids = host.root / "usr/share/misc/pci.ids"
    ids.parent.mkdir(parents=True)
    ids.write_text("10de  NVIDIA Corporation\n\t2330  GH100 [H100 SXM5 80GB]\n")
    before = host.snapshot()
    result = info(run_module, host)
    assert host.snapshot() == before and host.events == []

    gpus = by_address(result)
    assert sorted(gpus) == sorted([*HGX_NODE0, *HGX_NODE1, "0000:03:00.0"])
    assert result["iommu"]["enabled"] is True and result["iommu"]["units"] == ["dmar0", "dmar1", "dmar2", "dmar3"]
    assert result["vfio_pci_loaded"] is True
    per_gpu = 128 * GIB + 32 * MIB
    for address in HGX_NODE0 + HGX_NODE1:
        gpu = gpus[address]
        assert (gpu["vendor_id"], gpu["device_id"], gpu["pci_class"]) == ("10de", "2330", "0x030200")
        assert gpu["vendor_name"] == "NVIDIA Corporation" and gpu["device_name"] == "GH100 [H100 SXM5 80GB]"
        assert gpu["class_name"] == "3D controller"
        assert gpu["numa_node"] == (0 if address in HGX_NODE0 else 1)
        assert gpu["bar64_bytes"] == per_gpu
        assert gpu["mmio64_mb"] == 256 * 1024
        assert gpu["driver"] == "nvidia" and gpu["boot_vga"] is False
        assert gpu["passthrough_ready"] is True and gpu["refusals"] == []
        assert gpu["used_by"] == []
        # Each GPU sits alone in its group, its switch port in another.
        assert [m["address"] for m in gpu["iommu_group_members"]] == [address]
    assert gpus["0000:9a:00.0"]["iommu_group"] == 14
    # Eight H100s need 8 x (128 GiB + 32 MiB) of 64-bit MMIO: a 2 TiB window.
    assert result["mmio64_mb"] == 2 * 1024 * 1024

    bmc = gpus["0000:03:00.0"]
    assert bmc["boot_vga"] is True and bmc["passthrough_ready"] is False
    assert bmc["refusals"][0].startswith("Refusing to bind 0000:03:00.0 to vfio-pci: it is the boot VGA device")
    assert bmc["vendor_name"] is None


def test_group_members_and_refusals(run_module, fake_host):
    host = fake_host("shared_usb")
    gpu = by_address(info(run_module, host))["0000:0a:00.0"]
    assert [(m["address"], m["driver"], m["same_slot"]) for m in gpu["iommu_group_members"]] == [
        ("0000:0a:00.0", "nvidia", True),
        ("0000:0a:00.1", "snd_hda_intel", True),
        ("0000:0b:00.0", "xhci_hcd", False),
    ]
    assert [f["address"] for f in gpu["functions"]] == ["0000:0a:00.0", "0000:0a:00.1"]
    assert gpu["passthrough_ready"] is False
    assert "it also holds 0000:0b:00.0 (class 0x0c0330, on driver xhci_hcd)" in gpu["refusals"][0]


def test_bridge_in_the_group_is_no_obstacle(run_module, fake_host):
    gpu = by_address(info(run_module, fake_host("behind_bridge")))["0000:01:00.0"]
    assert [(m["address"], m["bridge"]) for m in gpu["iommu_group_members"]] == [
        ("0000:00:01.0", True),
        ("0000:01:00.0", False),
        ("0000:01:00.1", False),
    ]
    assert gpu["passthrough_ready"] is True


L40S_VFS = ["0000:41:00.%d" % f for f in range(4, 8)] + ["0000:41:01.%d" % f for f in range(8)]
L40S_VFS += ["0000:41:02.%d" % f for f in range(4)]


def test_sriov_and_vgpu_types_of_the_vfs(run_module, fake_host):
    host = fake_host("sriov")
    gpus = by_address(info(run_module, host))
    pf = gpus["0000:41:00.0"]
    assert pf["sriov"] == dict(total_vfs=32, num_vfs=16, vfs=L40S_VFS, drivers_autoprobe=True, vf_device_id="26b9")
    assert pf["mdev_types"] == []
    assert pf["vgpu_types"] == [
        dict(kind="sriov", type="1153", name="NVIDIA L40S-12Q", vfs=L40S_VFS, available_instances=16),
        dict(kind="sriov", type="1154", name="NVIDIA L40S-24Q", vfs=L40S_VFS, available_instances=16),
        dict(kind="sriov", type="1155", name="NVIDIA L40S-48Q", vfs=L40S_VFS, available_instances=16),
    ]
    assert pf["passthrough_ready"] is False and "SR-IOV physical function" in pf["refusals"][0]
    vf = gpus["0000:41:00.4"]
    assert vf["physfn"] == "0000:41:00.0" and vf["sriov"] is None
    assert [f["address"] for f in vf["functions"]] == ["0000:41:00.4"]
    assert vf["passthrough_ready"] is True
    assert vf["vgpu"]["current_type"] is None
    assert [t["type"] for t in vf["vgpu"]["creatable"]] == ["1153", "1154", "1155"]

    # One VF takes the 24Q type: the other 24 GiB of frame buffer fit a 24Q or a 12Q, not a 48Q.
    (host.device_dir("0000:41:00.4") / "nvidia/current_vgpu_type").write_text("1154")
    host.wait_quiet()
    gpus = by_address(info(run_module, host))
    assert gpus["0000:41:00.4"]["vgpu"] == dict(current_type="1154", creatable=[])
    assert [(t["type"], t["available_instances"]) for t in gpus["0000:41:00.0"]["vgpu_types"]] == [
        ("1153", 15),
        ("1154", 15),
    ]
    assert gpus["0000:41:00.5"]["vgpu"]["creatable"] == [
        dict(type="1153", name="NVIDIA L40S-12Q"),
        dict(type="1154", name="NVIDIA L40S-24Q"),
    ]


def test_mdev_types(run_module, fake_host):
    gpu = by_address(info(run_module, fake_host("mdev")))["0000:3b:00.0"]
    assert gpu["mdev_types"] == [
        dict(type="nvidia-222", name="GRID T4-1B", available_instances=16),
        dict(type="nvidia-228", name="GRID T4-8Q", available_instances=2),
        dict(type="nvidia-230", name="GRID T4-16Q", available_instances=1),
    ]
    assert [(t["kind"], t["type"], t["available_instances"]) for t in gpu["vgpu_types"]] == [
        ("mdev", "nvidia-222", 16),
        ("mdev", "nvidia-228", 2),
        ("mdev", "nvidia-230", 1),
    ]
    assert gpu["sriov"] is None and gpu["vgpu"] is None and gpu["board"] is None


def test_nvswitches_and_the_board(run_module, fake_host):
    result = info(run_module, fake_host("hgx"))
    assert [s["address"] for s in result["nvswitches"]] == HGX_NVSWITCHES
    assert {(s["device_id"], s["driver"], s["board"]) for s in result["nvswitches"]} == {("22a3", "nvidia", 0)}
    assert [s["iommu_group"] for s in result["nvswitches"]] == [70, 71, 72, 73]
    assert result["boards"] == [
        dict(id=0, gpus=sorted(HGX_NODE0 + HGX_NODE1), nvswitches=HGX_NVSWITCHES, numa_nodes=[0, 1])
    ]
    gpus = by_address(result)
    assert {gpus[a]["board"] for a in HGX_NODE0 + HGX_NODE1} == {0}
    assert gpus["0000:03:00.0"]["board"] is None  # the BMC's VGA is no board's
    assert result["phys_bits"] == 46


def test_no_board_without_nvswitches(run_module, fake_host):
    result = info(run_module, fake_host("quadro"))
    assert result["nvswitches"] == [] and result["boards"] == []


def test_iommu_off(run_module, fake_host):
    host = fake_host("iommu_off")
    host.set_cmdline("BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=off")
    result = info(run_module, host, check_mode=True)
    assert result["iommu"]["enabled"] is False and result["iommu"]["groups"] == 0
    assert result["iommu"]["cmdline_flags"] == ["intel_iommu=off"]
    assert result["iommu"]["evidence"].startswith("no IOMMU groups under ")
    gpu = by_address(result)["0000:01:00.0"]
    assert gpu["iommu_group"] is None and gpu["iommu_group_members"] == []
    assert "the IOMMU is off" in gpu["refusals"][0]


def test_no_gpu(run_module, fake_host):
    result = info(run_module, fake_host(None))
    assert result["gpus"] == [] and result["mmio64_mb"] is None and result["iommu"]["enabled"] is False


def test_used_by_and_unreachable_libvirt(run_module, fake_host, tmp_path):
    node = tmp_path / "iaastest-node.xml"
    node.write_text(
        "<node><domain type='test'><name>iaastest-gpuvm</name><memory>1048576</memory>"
        "<os><type>hvm</type></os><devices><hostdev mode='subsystem' type='pci' managed='no'><source>"
        "<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev></devices>"
        "</domain></node>"
    )
    host = fake_host("gpu_audio")
    gpu = by_address(info(run_module, host, uri="test://%s" % node))["0000:01:00.0"]
    assert gpu["used_by"] == ["iaastest-gpuvm"]
    assert gpu["passthrough_ready"] is False
    assert gpu["refusals"][-1].startswith("Refusing to change the driver of 0000:01:00.0: the running guest(s)")

    result = info(run_module, host, uri="qemu+unix:///system?socket=%s" % (tmp_path / "iaastest-missing.sock"))
    assert by_address(result)["0000:01:00.0"]["used_by"] is None
    assert any("Cannot tell which running guests use the GPUs" in str(w) for w in result["warnings"])


def _hostdevs(tree):
    """(source address, managed) of every PCI hostdev in an element tree."""
    result = []
    for hostdev in tree.iter("hostdev"):
        source = hostdev.find("./source/address")
        result.append((tuple(source.get(k) for k in ("domain", "bus", "slot", "function")), hostdev.get("managed")))
    return result


@pytest.fixture
def test_conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    yield conn
    try:
        dom = conn.lookupByName("iaastest-gpuvm")
    except libvirt.libvirtError:
        pass
    else:
        dom.undefine()
    conn.close()


def test_snippet_agrees_with_kvm_vm(run_module, fake_host, test_conn):
    host = fake_host("quadro")
    gpu = by_address(info(run_module, host))["0000:65:00.0"]
    snippet = parse_xml("<devices>%s</devices>" % gpu["hostdev_xml"])
    functions = [f["address"] for f in gpu["functions"]]
    assert len(functions) == 4

    vm = run_module("kvm_vm", dict(uri=URI, name="iaastest-gpuvm", memory=1024, vcpus=2, gpus=functions))
    assert vm.changed and not vm.failed, vm.get("msg")
    domain = parse_xml(test_conn.lookupByName("iaastest-gpuvm").XMLDesc(0))
    # The same host functions, the same managed flag (none is on vfio-pci yet: libvirt binds them).
    assert _hostdevs(domain) == _hostdevs(snippet)
    assert [m for _a, m in _hostdevs(snippet)] == ["yes"] * 4
    # kvm_vm puts them in one guest slot, multifunction on function 0, on a q35 machine.
    machine = domain.find("./os/type").get("machine")
    assert machine == "q35" or machine.startswith("pc-q35")
    guest = [h.find("./address[@type='pci']") for h in domain.findall("./devices/hostdev")]
    assert [a.get("function") for a in guest] == ["0x0", "0x1", "0x2", "0x3"]
    assert len({(a.get("bus"), a.get("slot")) for a in guest}) == 1
    assert [a.get("multifunction") for a in guest] == ["on", None, None, None]


def test_snippet_is_unmanaged_once_on_vfio(run_module, fake_host):
    host = fake_host("gpu_audio")
    run_module("kvm_gpu_passthrough", dict(uri=URI, root=str(host.root), devices=["0000:01:00.0"]))
    gpu = by_address(info(run_module, host))["0000:01:00.0"]
    assert _hostdevs(parse_xml("<d>%s</d>" % gpu["hostdev_xml"])) == [
        (("0x0000", "0x01", "0x00", "0x0"), "no"),
        (("0x0000", "0x01", "0x00", "0x1"), "no"),
    ]
