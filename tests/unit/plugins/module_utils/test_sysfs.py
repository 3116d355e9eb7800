# -*- coding: utf-8 -*-
"""_sysfs and _gpu against fake hosts, and the fake kernel itself: it must refuse what the
real kernel refuses, or the module tests prove nothing."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._gpu import (
    GpuError,
    normalise_vendor,
    read_persistent,
    render_persistent,
)
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import (
    Sysfs,
    SysfsError,
    cmdline_value,
    iommu_state,
    kernel_cmdline,
    modules_for_modaliases,
    pci_names,
)
from tests.fakesys import GIB, MIB


def write(host, relative, value):
    with open(host.sys / relative, "w") as handle:
        handle.write(value)


def settle(host, count):
    """Wait until the fake kernel has handled ``count`` writes in all (events and violations),
    and has finished with each (a change is recorded before it shows)."""
    deadline = time.monotonic() + 5
    while len(host.events) + len(host.violations) < count:
        assert time.monotonic() < deadline, "the fake kernel did not answer"
        time.sleep(0.005)
    host.wait_quiet()


# -- the fake kernel enforces the kernel's rules --------------------------------------


def test_fake_kernel_refuses_vfio_bind_without_driver_override(fake_host):
    host = fake_host("gpu_audio")
    write(host, "bus/pci/drivers/nvidia/unbind", "0000:01:00.0")
    settle(host, 1)
    write(host, "bus/pci/drivers/vfio-pci/bind", "0000:01:00.0")
    settle(host, 2)
    assert host.driver_of("0000:01:00.0") is None
    assert host.violations == [
        "bind 0000:01:00.0 to vfio-pci: the driver does not match the device (driver_override None) (ENODEV)"
    ]


def test_fake_kernel_refuses_unbinding_an_unbound_device(fake_host):
    host = fake_host("gpu_audio")
    write(host, "bus/pci/drivers/vfio-pci/unbind", "0000:01:00.0")
    settle(host, 1)
    assert host.violations == ["unbind 0000:01:00.0 from vfio-pci: it is bound to nvidia (ENODEV)"]
    assert host.driver_of("0000:01:00.0") == "nvidia"


def test_fake_kernel_refuses_binding_a_bound_device(fake_host):
    host = fake_host("gpu_audio")
    write(host, "bus/pci/devices/0000:01:00.0/driver_override", "vfio-pci")
    write(host, "bus/pci/drivers/vfio-pci/bind", "0000:01:00.0")
    settle(host, 1)
    assert host.violations == ["bind 0000:01:00.0 to vfio-pci: it is bound to nvidia already (EBUSY)"]


def test_fake_kernel_probe_honours_driver_override(fake_host):
    host = fake_host("gpu_audio")
    write(host, "bus/pci/devices/0000:01:00.0/driver_override", "vfio-pci\n")
    write(host, "bus/pci/drivers/nvidia/unbind", "0000:01:00.0")
    settle(host, 1)
    write(host, "bus/pci/drivers_probe", "0000:01:00.0")
    settle(host, 2)
    assert host.driver_of("0000:01:00.0") == "vfio-pci"
    # Without the override the same probe gives it back to the driver whose ID table matches.
    write(host, "bus/pci/devices/0000:01:00.0/driver_override", "\n")
    write(host, "bus/pci/drivers/vfio-pci/unbind", "0000:01:00.0")
    settle(host, 3)
    write(host, "bus/pci/drivers_probe", "0000:01:00.0")
    settle(host, 4)
    assert host.driver_of("0000:01:00.0") == "nvidia"
    assert host.violations == []


def test_fake_kernel_flags_a_reset(fake_host):
    host = fake_host("gpu_audio")
    write(host, "bus/pci/devices/0000:01:00.0/reset", "1")
    settle(host, 1)
    assert "must never reset or remove" in host.violations[0]


def test_fake_kernel_sriov_count_goes_through_zero(fake_host):
    host = fake_host("nic_sriov")
    pf = "0000:3b:00.0"
    write(host, "bus/pci/devices/%s/sriov_numvfs" % pf, "2")
    settle(host, 1)
    assert host.vfs_of(pf) == ["0000:3b:02.0", "0000:3b:02.1"]
    assert [host.driver_of(v) for v in host.vfs_of(pf)] == ["iavf", "iavf"]
    assert os.path.basename(os.readlink(host.device_dir("0000:3b:02.1") / "physfn")) == pf
    # A new non-zero count over an enabled one: EBUSY, the old count stays.
    write(host, "bus/pci/devices/%s/sriov_numvfs" % pf, "4")
    settle(host, 2)
    assert host.violations == ["sriov_numvfs of %s: 2 VFs already enabled, set 0 before 4 (EBUSY)" % pf]
    assert host.numvfs_of(pf) == 2 and len(host.vfs_of(pf)) == 2
    write(host, "bus/pci/devices/%s/sriov_numvfs" % pf, "9")
    settle(host, 3)
    assert host.violations[-1] == "sriov_numvfs of %s: 9 is more than sriov_totalvfs 8 (ERANGE)" % pf
    write(host, "bus/pci/devices/%s/sriov_numvfs" % pf, "0")
    settle(host, 4)
    assert host.vfs_of(pf) == [] and not os.path.lexists(host.sys / "bus/pci/devices/0000:3b:02.0")
    assert not (host.sys / "kernel/iommu_groups/300").exists()
    # Without autoprobe the VFs appear without a driver.
    write(host, "bus/pci/devices/%s/sriov_drivers_autoprobe" % pf, "0")
    write(host, "bus/pci/devices/%s/sriov_numvfs" % pf, "1")
    settle(host, 5)
    assert host.driver_of("0000:3b:02.0") is None


def test_fake_kernel_vgpu_types_of_vfs(fake_host):
    host = fake_host("sriov")
    first, second, third = "0000:41:00.4", "0000:41:00.5", "0000:41:00.6"
    write(host, "bus/pci/devices/%s/nvidia/current_vgpu_type" % first, "1155")
    settle(host, 1)
    assert host.vgpu_type_of(first) == "1155"
    # The 48Q type takes the whole frame buffer: no VF can take another vGPU now.
    assert (host.device_dir(second) / "nvidia/creatable_vgpu_types").read_text() == "ID    : vGPU Name\n"
    write(host, "bus/pci/devices/%s/nvidia/current_vgpu_type" % second, "1155")
    settle(host, 2)
    assert host.violations == ["current_vgpu_type of %s: type 1155 is not creatable there (none) (EINVAL)" % second]
    assert host.vgpu_type_of(second) == "0"
    write(host, "bus/pci/devices/%s/nvidia/current_vgpu_type" % first, "1154")
    settle(host, 3)
    assert host.violations[-1] == "current_vgpu_type of %s: it has type 1155, set 0 before 1154 (EBUSY)" % first
    write(host, "bus/pci/devices/%s/nvidia/current_vgpu_type" % first, "0")
    write(host, "bus/pci/devices/%s/nvidia/current_vgpu_type" % third, "1154")
    settle(host, 5)
    assert (host.vgpu_type_of(first), host.vgpu_type_of(third)) == ("0", "1154")
    assert "1154  : NVIDIA L40S-24Q" in (host.device_dir(second) / "nvidia/creatable_vgpu_types").read_text()


def test_fake_kernel_mediated_devices(fake_host):
    host = fake_host("mdev")
    gpu, uuid = "0000:3b:00.0", "5a3e7a2c-2f0e-4b3b-9a51-0d3c1e1f2a01"
    types = "bus/pci/devices/%s/mdev_supported_types" % gpu
    write(host, types + "/nvidia-230/create", uuid)
    settle(host, 1)
    assert host.mdevs() == {uuid: (gpu, "nvidia-230")}
    # T4-16Q has one instance; and a GPU with a vGPU offers no other type.
    assert (host.sys / types / "nvidia-230/available_instances").read_text() == "0\n"
    assert (host.sys / types / "nvidia-222/available_instances").read_text() == "0\n"
    write(host, types + "/nvidia-222/create", "5a3e7a2c-2f0e-4b3b-9a51-0d3c1e1f2a02")
    write(host, types + "/nvidia-230/create", uuid)
    settle(host, 3)
    assert sorted(host.violations) == [
        "create nvidia-222 on %s: no instance left (EDQUOT)" % gpu,
        "create nvidia-230 on %s: %s exists already (EEXIST)" % (gpu, uuid),
    ]
    write(host, "bus/mdev/devices/%s/remove" % uuid, "1")
    settle(host, 4)
    assert host.mdevs() == {}
    assert (host.sys / types / "nvidia-222/available_instances").read_text() == "16\n"


# -- reading sysfs ------------------------------------------------------------------------


def test_device_facts(fake_host):
    host = fake_host("hgx")
    device = Sysfs(str(host.sys)).device("0000:9a:00.0")
    assert device["vendor_id"] == "10de" and device["device_id"] == "2330"
    assert device["subsystem_device_id"] == "16c1"
    assert device["pci_class"] == 0x030200
    assert device["driver"] == "nvidia" and device["driver_override"] is None
    assert device["numa_node"] == 1 and device["local_cpus"] == "56-111,168-223"
    assert device["iommu_group"] == 14
    assert device["reset_methods"] == ["flr", "bus"]
    assert device["bars"] == [
        dict(index=0, size=16 * MIB, is_64bit=False, prefetchable=False),
        dict(index=1, size=128 * GIB, is_64bit=True, prefetchable=True),
        dict(index=3, size=32 * MIB, is_64bit=True, prefetchable=True),
    ]
    bmc = Sysfs(str(host.sys)).device("0000:03:00.0")
    assert bmc["boot_vga"] is True and bmc["numa_node"] == 0 and bmc["driver"] is None


def test_missing_attributes_read_as_none(fake_host):
    host = fake_host("iommu_off")
    sysfs = Sysfs(str(host.sys))
    device = sysfs.device("0000:01:00.1")
    assert device["numa_node"] is None  # the kernel shows -1
    assert device["iommu_group"] is None and device["boot_vga"] is False and device["reset_methods"] == []
    assert device["sriov_total_vfs"] is None and device["physfn"] is None
    assert sysfs.iommu_groups() == {} and sysfs.iommu_units() == []


def test_write_failure_is_a_sentence(tmp_path):
    sysfs = Sysfs(str(tmp_path / "iaastest-nosys"))
    with pytest.raises(
        SysfsError, match=r"^The kernel refused '0000:01:00.0' written to .*: No such file or directory\.$"
    ):
        sysfs.write(sysfs.probe_path(), "0000:01:00.0")


def test_iommu_state_and_command_line(fake_host):
    host = fake_host("gpu_audio")
    host.set_cmdline("BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt pcie_acs_override=downstream")
    cmdline = kernel_cmdline(str(host.root))
    state = iommu_state(Sysfs(str(host.sys)), cmdline)
    assert state["enabled"] is True and state["groups"] == 2 and state["units"] == ["dmar0"]
    assert state["cmdline_flags"] == ["intel_iommu=on", "iommu=pt", "pcie_acs_override=downstream"]
    assert state["passthrough_mode"] is True and state["acs_override"] == "downstream"
    assert "2 IOMMU groups under" in state["evidence"]
    assert cmdline_value("a=1 b a=2", "a") == "2" and cmdline_value("a=1", "b") is None


def test_pci_names(tmp_path):
    ids = tmp_path / "usr/share/misc/pci.ids"
    ids.parent.mkdir(parents=True)
    ids.write_text(
        "# comment\n10de  NVIDIA Corporation\n\t2330  GH100 [H100 SXM5 80GB]\n\t\t10de 16c1  H100 SXM5 80GB\n"
        "\t2204  GA102 [GeForce RTX 3090]\n1a03  ASPEED Technology, Inc.\n\t2000  ASPEED Graphics Family\n"
        "C 03  Display controller\n\t02  3D controller\n"
    )
    names = pci_names(str(tmp_path), {("10de", "2330"), ("1a03", "2000"), ("8086", "1234")})
    assert names == {
        ("10de",): "NVIDIA Corporation",
        ("10de", "2330"): "GH100 [H100 SXM5 80GB]",
        ("1a03",): "ASPEED Technology, Inc.",
        ("1a03", "2000"): "ASPEED Graphics Family",
    }
    assert pci_names(str(tmp_path / "iaastest-none"), {("10de", "2330")}) == {}


# -- _gpu helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("given_vendor, expected", [("nvidia", "10de"), ("0x10DE", "10de"), ("AMD", "1002")])
def test_vendor_names_and_ids(given_vendor, expected):
    assert normalise_vendor(given_vendor) == expected


def test_unknown_vendor_is_refused():
    with pytest.raises(GpuError, match="is not a PCI vendor ID"):
        normalise_vendor("matrox")


def test_persistent_file_round_trip(tmp_path):
    entries = {"0000:9a:00.0": ["nouveau", "nvidia"], "0000:9a:00.1": ["snd_hda_intel"], "0000:ab:00.0": []}
    path = tmp_path / "iaastest-vfio.conf"
    path.write_text(render_persistent(entries))
    assert read_persistent(str(path)) == entries
    assert "softdep nouveau pre: vfio-pci" in path.read_text().splitlines()
    assert render_persistent({}) is None
    assert read_persistent(str(tmp_path / "iaastest-absent.conf")) == {}


def test_modules_for_modaliases(fake_host):
    host = fake_host("gpu_audio")
    host.add_module_aliases(
        "# Aliases extracted from modules themselves.\n"
        "alias pci:v000010DEd*sv*sd*bc03sc00i00* nouveau\n"
        "alias pci:v000010DEd*sv*sd*bc03sc00i00* nvidia\n"
        "alias pci:v*d*sv*sd*bc04sc03i00* snd_hda_intel\n"
        "alias pci:v*d*sv*sd*bc*sc*i* vfio_pci\n"
        "alias usb:v*p*d*dc*dsc*dp*ic09isc*ip*in* usbcore\n"
    )
    sysfs = Sysfs(str(host.sys))
    gpu, audio = (sysfs.device(a)["modalias"] for a in ("0000:01:00.0", "0000:01:00.1"))
    assert gpu == "pci:v000010DEd00002204sv00000000sd00000000bc03sc00i00"
    assert modules_for_modaliases(str(host.root), [gpu, audio]) == {
        gpu: ["nouveau", "nvidia", "vfio_pci"],
        audio: ["snd_hda_intel", "vfio_pci"],
    }
    assert modules_for_modaliases(str(host.root / "iaastest-none"), [gpu]) == {gpu: []}
