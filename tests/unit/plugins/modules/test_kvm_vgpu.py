# -*- coding: utf-8 -*-
"""kvm_vgpu through its real main() against fake hosts (tests/fakesys.py) whose fake kernel
enforces the rules of mediated devices (instances per type, one type per GPU) and of NVIDIA's
vGPU types on SR-IOV VFs (a type from creatable_vgpu_types, 0 before another type); libvirt's
test driver holds the guests that use a vGPU.

Each scenario: check mode, apply, apply again (no write), check again, then back (absent),
again twice. Every refusal leaves the fake host (sysfs and /etc) as it was, with changed false
and the actions it would have done."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._vgpu import VGPU_NAMESPACE
from tests.unit.plugins.modules import hostdev_checks
from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver

MODULE = "kvm_vgpu"
T4 = "0000:3b:00.0"
L40S = "0000:41:00.0"


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


def run(run_module, host, check_mode=False, diff=False, fails=False, **args):
    args.setdefault("uri", TEST_URI)
    args["root"] = str(host.root)
    result = run_module(MODULE, args, check_mode=check_mode, diff=diff, fails=fails)
    # The fake kernel answers a write to current_vgpu_type a moment later (a real one before the
    # write returns): let it finish before the test looks or the next run reads.
    host.wait_quiet()
    return result


def cycle(run_module, host, **args):
    """check, apply, apply again, check again: the applied result."""
    before = host.snapshot()
    predicted = run(run_module, host, check_mode=True, **args)
    assert not predicted.failed, predicted.get("msg")
    assert predicted.changed and host.snapshot() == before, "check mode changed the host"
    applied = run(run_module, host, **args)
    assert not applied.failed, applied.get("msg")
    assert applied.changed and host.violations == []
    assert applied["writes"] == predicted["writes"] and applied["actions"] == predicted["actions"]
    assert applied["vgpu"] == predicted["vgpu"]
    converged, events = host.snapshot(), len(host.events)
    for check_mode in (False, True):
        again = run(run_module, host, check_mode=check_mode, **args)
        assert not again.failed, again.get("msg")
        assert not again.changed and again["writes"] == [] and again["actions"] == []
    assert host.snapshot() == converged and len(host.events) == events
    return applied


def refused(run_module, host, pattern, actions, **args):
    return hostdev_checks.refused(run, run_module, host, pattern, actions, **args)


def domain(conn, name, hostdev, running=False):
    xml = (
        "<domain type='test'><name>%s</name><memory>1048576</memory><os><type>hvm</type></os>"
        "<devices>%s</devices></domain>" % (name, hostdev)
    )
    dom = conn.defineXML(xml)
    if running:
        dom.create()
    return dom


def pci_hostdev(address):
    bus, rest = address[5:].split(":")
    slot, function = rest.split(".")
    return (
        "<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x%s' "
        "slot='0x%s' function='0x%s'/></source></hostdev>" % (bus, slot, function)
    )


# -- mediated devices ---------------------------------------------------------------------


def test_mdev_with_a_stable_uuid_and_its_mdevctl_definition(run_module, fake_host, conn):
    host = fake_host("mdev")
    (host.root / "usr/sbin").mkdir(parents=True)
    (host.root / "usr/sbin/mdevctl").write_text("")
    expected = str(uuid.uuid5(VGPU_NAMESPACE, "iaastest-desk1"))
    applied = cycle(run_module, host, name="iaastest-desk1", parent=T4, type="GRID T4-1B")
    assert applied["vgpu"] == dict(
        kind="mdev", parent=T4, type="nvidia-222", type_name="GRID T4-1B", uuid=expected, address=None
    )
    assert host.mdevs() == {expected: (T4, "nvidia-222")}
    definition = host.root / "etc/mdevctl.d" / T4 / expected
    assert json.loads(definition.read_text()) == dict(mdev_type="nvidia-222", start="auto", attrs=[])
    assert applied["persistent_file"] == str(definition)
    assert applied["actions"] == [
        "create the mediated device %s of type nvidia-222 on %s" % (expected, T4),
        "write %s" % definition,
    ]
    # The same type by its ID is the same vGPU.
    same = run(run_module, host, name="iaastest-desk1", parent=T4, type="nvidia-222")
    assert not same.failed and not same.changed

    removed = cycle(run_module, host, name="iaastest-desk1", parent=T4, state="absent")
    assert removed["vgpu"] is None and host.mdevs() == {} and not definition.exists()
    assert removed["actions"] == ["remove the mediated device %s" % expected, "remove %s" % definition]


def test_mdev_without_mdevctl_warns(run_module, fake_host, conn):
    host = fake_host("mdev")
    applied = run(run_module, host, name="iaastest-desk2", parent=T4, type="nvidia-228")
    assert not applied.failed, applied.get("msg")
    assert applied["persistent_file"] is None
    assert any("mdevctl is not installed" in str(w) for w in applied["warnings"])
    assert not (host.root / "etc/mdevctl.d").exists()


def test_mdev_refusals(run_module, fake_host, conn):
    host = fake_host("mdev")
    refused(
        run_module,
        host,
        r"^Refusing to create a vGPU of type GRID T4-99Q on 0000:3b:00\.0: it does not offer that type \(it offers "
        r"nvidia-222 \(GRID T4-1B\), nvidia-228 \(GRID T4-8Q\), nvidia-230 \(GRID T4-16Q\)\)\.$",
        ["create a vGPU of type GRID T4-99Q on 0000:3b:00.0"],
        name="iaastest-a",
        parent=T4,
        type="GRID T4-99Q",
    )
    first = run(run_module, host, name="iaastest-a", parent=T4, type="nvidia-230")
    assert not first.failed and first.changed
    second = str(uuid.uuid5(VGPU_NAMESPACE, "iaastest-b"))
    refused(
        run_module,
        host,
        r"^Refusing to create a vGPU of type nvidia-230 on 0000:3b:00\.0: it has no instance left",
        ["create the mediated device %s of type nvidia-230 on %s" % (second, T4)],
        name="iaastest-b",
        parent=T4,
        type="nvidia-230",
    )
    taken = first["vgpu"]["uuid"]
    refused(
        run_module,
        host,
        r"^Refusing to create the mediated device %s of type nvidia-222 on 0000:3b:00\.0: it exists already as "
        r"type nvidia-230 on 0000:3b:00\.0" % taken,
        [],
        name="iaastest-c",
        parent=T4,
        type="nvidia-222",
        uuid=taken,
    )
    # A running guest with the mdev: it stays.
    domain(
        conn,
        "iaastest-desk",
        "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='%s'/></source></hostdev>"
        % taken,
        running=True,
    )
    refused(
        run_module,
        host,
        r"^Refusing to remove the mediated device %s: the running guest\(s\) iaastest-desk use it; stop them first\.$"
        % taken,
        ["remove the mediated device %s" % taken],
        name="iaastest-a",
        parent=T4,
        state="absent",
    )


# -- NVIDIA vGPU on SR-IOV VFs -------------------------------------------------------------


def test_vf_vgpu_picked_kept_and_cleared(run_module, fake_host, conn):
    host = fake_host("sriov")
    applied = cycle(run_module, host, name="iaastest-train1", parent=L40S, type="NVIDIA L40S-24Q")
    assert applied["vgpu"] == dict(
        kind="sriov", parent=L40S, type="1154", type_name="NVIDIA L40S-24Q", uuid=None, address="0000:41:00.4"
    )
    assert host.vgpu_type_of("0000:41:00.4") == "1154"
    assert host.driver_of("0000:41:00.4") == "nvidia"  # a vGPU VF stays on the vendor's driver
    assert applied["actions"] == ["give 0000:41:00.4 the vGPU type 1154 (NVIDIA L40S-24Q)"]

    # Once a domain uses that VF, the next vGPU of the type gets another one.
    domain(conn, "iaastest-train1", pci_hostdev("0000:41:00.4"))
    second = cycle(run_module, host, name="iaastest-train2", parent=L40S, type="1154")
    assert second["vgpu"]["address"] == "0000:41:00.5"
    mine = run(run_module, host, name="iaastest-train1", parent=L40S, type="1154")
    assert not mine.failed and not mine.changed and mine["vgpu"]["address"] == "0000:41:00.4"

    # Absent finds the VF through the domain of that name.
    cleared = cycle(run_module, host, name="iaastest-train1", parent=L40S, state="absent")
    assert cleared["actions"] == ["clear the vGPU type of 0000:41:00.4"]
    assert host.vgpu_type_of("0000:41:00.4") == "0"


def test_vf_vgpu_refusals(run_module, fake_host, conn):
    host = fake_host("sriov")
    first = run(run_module, host, name="iaastest-big", parent=L40S, type="1155")
    assert not first.failed and first.changed and first["vgpu"]["address"] == "0000:41:00.4"
    domain(conn, "iaastest-big", pci_hostdev("0000:41:00.4"))
    # The 48Q type has one instance per GPU.
    refused(
        run_module,
        host,
        r"^Refusing to create a vGPU of type 1155 on 0000:41:00\.0: it has no instance left \(no free VF",
        ["give a VF of 0000:41:00.0 the vGPU type 1155"],
        name="iaastest-big2",
        parent=L40S,
        type="1155",
    )
    refused(
        run_module,
        host,
        r"^Refusing to create a vGPU of type 1155 on 0000:41:00\.0: it has no instance left \(0000:41:00\.5 cannot",
        ["give 0000:41:00.5 the vGPU type 1155"],
        name="iaastest-other",
        parent=L40S,
        type="1155",
        vf="0000:41:00.5",
    )
    # The running guest's VF keeps its type.
    conn.lookupByName("iaastest-big").create()
    refused(
        run_module,
        host,
        r"^Refusing to change the vGPU type of 0000:41:00\.4: the running guest\(s\) iaastest-big use it",
        ["clear the vGPU type of 0000:41:00.4"],
        name="iaastest-big",
        parent=L40S,
        state="absent",
    )


def test_vf_with_another_type_and_vf_on_vfio_are_refused(run_module, fake_host, conn):
    host = fake_host("sriov")
    first = run(run_module, host, name="iaastest-x", parent=L40S, type="1153", vf="0000:41:00.6")
    assert not first.failed, first.get("msg")
    assert first.changed and host.vgpu_type_of("0000:41:00.6") == "1153"
    refused(
        run_module,
        host,
        r"^Refusing to give 0000:41:00\.6 the vGPU type 1154: it has the type 1153 already; remove that vGPU first\.$",
        ["give 0000:41:00.6 the vGPU type 1154 (NVIDIA L40S-24Q)"],
        name="iaastest-y",
        parent=L40S,
        type="1154",
        vf="0000:41:00.6",
    )
    passthrough = run_module("kvm_gpu_passthrough", dict(uri=TEST_URI, root=str(host.root), devices=["0000:41:00.7"]))
    assert not passthrough.failed, passthrough.get("msg")
    refused(
        run_module,
        host,
        r"^Refusing to give 0000:41:00\.7 a vGPU type: it is on vfio-pci, and a vGPU VF stays on the vendor's driver",
        ["give 0000:41:00.7 the vGPU type 1153 (NVIDIA L40S-12Q)"],
        name="iaastest-z",
        parent=L40S,
        type="1153",
        vf="0000:41:00.7",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(name="iaastest-a", parent=T4), r"^state is present but all of the following are missing: type$"),
        (dict(name="iaastest-a", parent="0000:3c:00.0", type="x"), r"^There is no PCI device 0000:3c:00\.0"),
        (dict(name="iaastest-a", parent=T4, type="nvidia-222", uuid="nope"), r"^uuid 'nope' is not a UUID\.$"),
        (
            dict(name="iaastest-a", parent=T4, type="nvidia-222", uuid=str(uuid.uuid4()), vf="0000:41:00.4"),
            r"^parameters are mutually exclusive: uuid\|vf$",
        ),
    ],
)
def test_bad_input_fails_without_writing(run_module, fake_host, conn, args, message):
    host = fake_host("mdev")
    before = host.snapshot()
    result = run(run_module, host, fails=True, **args)
    assert result.failed, "bad input was expected to fail"
    assert re.search(message, result["msg"]), result["msg"]
    assert not result.changed and host.snapshot() == before
