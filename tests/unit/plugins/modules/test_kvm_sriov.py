# -*- coding: utf-8 -*-
"""kvm_sriov through its real main() against fake hosts (tests/fakesys.py), whose fake kernel
enforces the kernel's SR-IOV rules: sriov_numvfs goes to 0 before a new non-zero count, never
above sriov_totalvfs, only through a bound PF driver; VFs appear and disappear with the count.

Each scenario runs check mode (writes nothing, predicts the writes), apply, apply again (no
write), check mode again, then back to where it started. Every refusal is checked to leave
the fake host (sysfs and /etc) exactly as it was, with changed false and the actions it would
have done."""

from __future__ import annotations

import re

import pytest

from tests.fakesys import ETHERNET, INTEL, standard_drivers
from tests.unit.plugins.modules import hostdev_checks

MODULE = "kvm_sriov"
URI = "test:///default"
NIC = "0000:3b:00.0"
NIC_VFS = ["0000:3b:02.%d" % n for n in range(8)]
GPU = "0000:41:00.0"


def run(run_module, host, check_mode=False, diff=False, fails=False, **args):
    args.setdefault("uri", URI)
    args["root"] = str(host.root)
    return run_module(MODULE, args, check_mode=check_mode, diff=diff, fails=fails)


def converge(run_module, host, **args):
    """check, apply, apply again, check again: the applied result."""
    before = host.snapshot()
    predicted = run(run_module, host, check_mode=True, **args)
    assert not predicted.failed, predicted.get("msg")
    assert predicted.changed
    assert host.snapshot() == before, "check mode wrote to the host"
    applied = run(run_module, host, **args)
    assert not applied.failed, applied.get("msg")
    assert applied.changed and host.violations == []
    assert applied["writes"] == predicted["writes"], "check mode did not predict the writes"
    assert applied["actions"] == predicted["actions"]
    assert [v["address"] for v in applied["vfs"]] == [v["address"] for v in predicted["vfs"]]
    if args.get("vf_driver") == "vfio":
        assert applied["vfs"] == predicted["vfs"]
    events, converged = len(host.events), host.snapshot()
    again = run(run_module, host, **args)
    assert not again.failed, again.get("msg")
    assert not again.changed and again["writes"] == [] and again["actions"] == []
    checked = run(run_module, host, check_mode=True, **args)
    assert not checked.failed and not checked.changed
    assert len(host.events) == events and host.snapshot() == converged
    return applied


def test_nic_vfs_for_passthrough_and_back(run_module, fake_host):
    host = fake_host("nic_sriov")
    initial = host.snapshot()
    applied = converge(run_module, host, device="3b:00.0", num_vfs=4, vf_driver="vfio")
    assert applied["vfs"] == [dict(address=a, driver="vfio-pci") for a in NIC_VFS[:4]]
    assert host.vfs_of(NIC) == NIC_VFS[:4]
    assert all(host.driver_of(a) == "vfio-pci" and host.override_of(a) == "vfio-pci" for a in NIC_VFS[:4])
    sysfs = str(host.root / "sys/bus/pci/devices")
    # No host driver ever saw the VFs: autoprobe off first, then the count, then each VF's override and probe.
    assert applied["writes"][:2] == [
        dict(path=sysfs + "/%s/sriov_drivers_autoprobe" % NIC, value="0"),
        dict(path=sysfs + "/%s/sriov_numvfs" % NIC, value="4"),
    ]
    assert not [e for e in host.events if e[0] == "bind" and e[2] == "iavf"]
    assert applied["actions"][:2] == [
        "stop host drivers to probe new VFs of 0000:3b:00.0",
        "enable 4 VFs on 0000:3b:00.0",
    ]

    # 4 -> 8 goes through 0, as the kernel wants.
    more = converge(run_module, host, device=NIC, num_vfs=8, vf_driver="vfio")
    assert [w["value"] for w in more["writes"][:2]] == ["0", "8"]
    assert [e for e in host.events if e[0] == "sriov_numvfs"][-2:] == [
        ("sriov_numvfs", NIC, 0),
        ("sriov_numvfs", NIC, 8),
    ]
    assert host.vfs_of(NIC) == NIC_VFS

    back = converge(run_module, host, device=NIC, num_vfs=0)
    assert back["vfs"] == [] and host.vfs_of(NIC) == []
    # Back where it started, but for the autoprobe the vfio run turned off (and the fake kernel's records).
    changed = {k for k in set(initial) | set(host.snapshot()) if initial.get(k) != host.snapshot().get(k)}
    assert changed == {"sys/devices/pci0000:00/0000:3b:00.0/sriov_drivers_autoprobe"}


def test_nic_vfs_on_their_host_driver(run_module, fake_host):
    host = fake_host("nic_sriov")
    applied = converge(run_module, host, device=NIC, num_vfs=2)
    assert [(v["address"], host.driver_of(v["address"])) for v in applied["vfs"]] == [
        (NIC_VFS[0], "iavf"),
        (NIC_VFS[1], "iavf"),
    ]
    # Rebinding the existing VFs for passthrough needs no new count.
    rebound = converge(run_module, host, device=NIC, num_vfs=2, vf_driver="vfio")
    assert [w["path"].rsplit("/", 1)[-1] for w in rebound["writes"]][:3] == [
        "driver_override",
        "unbind",
        "drivers_probe",
    ]
    assert [host.driver_of(a) for a in NIC_VFS[:2]] == ["vfio-pci", "vfio-pci"]
    back = converge(run_module, host, device=NIC, num_vfs=2, vf_driver="host")
    assert [host.driver_of(a) for a in NIC_VFS[:2]] == ["iavf", "iavf"]
    assert back["actions"] == ["return %s to its host driver" % a for a in NIC_VFS[:2]]


def test_gpu_vfs_count_change_goes_through_zero(run_module, fake_host):
    host = fake_host("sriov")
    assert len(host.vfs_of(GPU)) == 16
    applied = converge(run_module, host, device=GPU, num_vfs=4, diff=False)
    assert [w["value"] for w in applied["writes"]] == ["0", "4"]
    assert applied["actions"] == ["disable the 16 VFs of 0000:41:00.0", "enable 4 VFs on 0000:41:00.0"]
    assert [v["driver"] for v in applied["vfs"]] == ["nvidia"] * 4
    back = converge(run_module, host, device=GPU, num_vfs=16)
    assert len(back["vfs"]) == 16 and host.numvfs_of(GPU) == 16


def test_diff(run_module, fake_host):
    host = fake_host("nic_sriov")
    result = run(run_module, host, check_mode=True, diff=True, device=NIC, num_vfs=2, vf_driver="vfio")
    assert not result.failed, result.get("msg")
    assert result["diff"] == dict(
        before=dict(num_vfs=0, vfs=[]),
        after=dict(num_vfs=2, vfs=[dict(address=a, driver="vfio-pci") for a in NIC_VFS[:2]]),
    )


# -- refusals: nothing changes, changed false, the actions it would have done -------------------


def refused(run_module, host, pattern, actions, **args):
    result = hostdev_checks.refused(run, run_module, host, pattern, actions, **args)
    assert host.events == []
    return result


def test_more_vfs_than_offered_is_refused(run_module, fake_host):
    host = fake_host("nic_sriov")
    refused(
        run_module,
        host,
        r"^Refusing to set 64 VFs on 0000:3b:00\.0: it offers at most 8 \(sriov_totalvfs\)\.$",
        ["enable 64 VFs on 0000:3b:00.0"],
        device=NIC,
        num_vfs=64,
    )


def test_pf_without_driver_is_refused(run_module, fake_host):
    def build(host):
        standard_drivers(host)
        host.iommu_on()
        host.add_device(NIC, INTEL, "1592", ETHERNET, group=40, sriov_total=8, vf=dict(device="1889", offset=16))

    host = fake_host(build=build)
    refused(
        run_module,
        host,
        r"^Refusing to change the VFs of 0000:3b:00\.0: no driver is bound to it",
        ["enable 2 VFs on 0000:3b:00.0"],
        device=NIC,
        num_vfs=2,
    )


def test_vfio_vfs_with_the_iommu_off_are_refused(run_module, fake_host):
    def build(host):
        standard_drivers(host)
        host.add_device(NIC, INTEL, "1592", ETHERNET, driver="ice", sriov_total=8, vf=dict(device="1889", offset=16))

    host = fake_host(build=build)
    result = refused(
        run_module,
        host,
        r"^Refusing to bind 0000:3b:02\.0, 0000:3b:02\.1 to vfio-pci: the IOMMU is off",
        [
            "stop host drivers to probe new VFs of 0000:3b:00.0",
            "enable 2 VFs on 0000:3b:00.0",
            "bind 0000:3b:02.0 to vfio-pci",
            "bind 0000:3b:02.1 to vfio-pci",
        ],
        device=NIC,
        num_vfs=2,
        vf_driver="vfio",
    )
    assert result["refusals"] == [result["msg"]]


@pytest.fixture
def vf_guest_uri(tmp_path):
    """A libvirt test driver whose running guest iaastest-vfvm has the GPU's VF 0000:41:00.5."""
    path = tmp_path / "iaastest-node.xml"
    path.write_text(
        "<node><domain type='test'><name>iaastest-vfvm</name><memory>1048576</memory>"
        "<os><type>hvm</type></os><devices><hostdev mode='subsystem' type='pci' managed='no'><source>"
        "<address domain='0x0000' bus='0x41' slot='0x00' function='0x5'/></source></hostdev></devices>"
        "</domain></node>"
    )
    return "test://%s" % path


def test_count_change_under_a_running_guest_is_refused(run_module, fake_host, vf_guest_uri):
    host = fake_host("sriov")
    refused(
        run_module,
        host,
        r"^Refusing to remove the VF 0000:41:00\.5: the running guest\(s\) iaastest-vfvm use it; stop them first\.$",
        ["disable the 16 VFs of 0000:41:00.0", "enable 4 VFs on 0000:41:00.0"],
        device=GPU,
        num_vfs=4,
        uri=vf_guest_uri,
    )
    # The same count needs no change, so the guest is no obstacle.
    same = run(run_module, host, device=GPU, num_vfs=16, uri=vf_guest_uri)
    assert not same.failed and not same.changed


def test_unreachable_libvirt_is_a_refusal(run_module, fake_host, tmp_path):
    host = fake_host("sriov")
    refused(
        run_module,
        host,
        r"^Cannot tell whether a running guest uses 0000:41:00\.4, .*, so nothing was changed: Cannot connect",
        ["disable the 16 VFs of 0000:41:00.0"],
        device=GPU,
        num_vfs=0,
        uri="qemu+unix:///system?socket=%s" % (tmp_path / "iaastest-missing.sock"),
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(device="0000:3c:00.0", num_vfs=1), r"^There is no PCI device 0000:3c:00\.0 on this host"),
        (dict(device="0000:03:00.0", num_vfs=1), r"^0000:03:00\.0 is not an SR-IOV physical function"),
        (dict(device=GPU, num_vfs=-1), r"^num_vfs must not be negative, not -1\.$"),
        (dict(device=GPU), r"^missing required arguments: num_vfs$"),
    ],
)
def test_bad_input_fails_without_writing(run_module, fake_host, args, message):
    host = fake_host("sriov")
    before = host.snapshot()
    result = run(run_module, host, fails=True, **args)
    assert result.failed, "bad input was expected to fail"
    assert re.search(message, result["msg"]), result["msg"]
    assert not result.changed and host.snapshot() == before


# -- a failure halfway tells what changed ---------------------------------------------------


def test_a_failure_after_a_change_says_changed(run_module, fake_host):
    host = fake_host("nic_sriov")
    converge(run_module, host, device=NIC, num_vfs=2)
    host.break_attribute(NIC_VFS[1], "driver_override")
    result = run(run_module, host, device=NIC, num_vfs=2, vf_driver="vfio", fails=True)
    assert result.failed, "the broken attribute was expected to fail the run"
    assert "driver_override" in result["msg"]
    assert result.changed is True
    assert result["actions"] == ["bind 0000:3b:02.0 to vfio-pci"]
    assert host.driver_of(NIC_VFS[0]) == "vfio-pci" and host.driver_of(NIC_VFS[1]) == "iavf"


# -- persistent: true ----------------------------------------------------------------------------


def test_persistent_rules(run_module, fake_host):
    host = fake_host("nic_sriov")
    rules = host.root / "etc/udev/rules.d/70-iaas-kvm-sriov.rules"
    applied = converge(run_module, host, device=NIC, num_vfs=2, vf_driver="vfio", persistent=True)
    assert applied["persistent_file"] == str(rules)
    assert rules.read_text().splitlines()[3:] == [
        "# pf 0000:3b:00.0 2 vfio",
        'ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="0000:3b:00.0", ATTR{sriov_drivers_autoprobe}="0", '
        'ATTR{sriov_numvfs}="2"',
        'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:3b:02.0", ATTR{driver_override}="vfio-pci", '
        "RUN+=\"/bin/sh -c 'echo $kernel > /sys/bus/pci/drivers_probe'\"",
        'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:3b:02.1", ATTR{driver_override}="vfio-pci", '
        "RUN+=\"/bin/sh -c 'echo $kernel > /sys/bus/pci/drivers_probe'\"",
    ]
    assert applied["writes"][-1] == dict(path=str(rules), value=rules.read_text())
    back = converge(run_module, host, device=NIC, num_vfs=0, persistent=True)
    assert not rules.exists() and back["writes"][-1] == dict(path=str(rules), value=None)
