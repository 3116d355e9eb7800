# -*- coding: utf-8 -*-
"""kvm_vm against the lab with VMs that have no disk: QEMU runs their firmware
only (seconds to start, and they ignore the ACPI power button), and VMs that
are only defined. Real libvirtd and QEMU, no guest OS to wait for."""

from __future__ import annotations

import os
import uuid

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from ansible_collections.iaas.kvm.plugins.module_utils._pci import host_pci_functions
from tests.conftest import run_module
from tests.integration.conftest import LAB_URI
from tests.integration.guests import overlay
from tests.integration.vmtools import Made, diskless, kvm_vm, lookup_domain

pytestmark = [pytest.mark.lab]

NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"


@pytest.fixture
def made(lab_conn):
    with Made(lab_conn) as things:
        yield things


def name_for(made, kind):
    return made.domain("iaastest-%s-%s" % (kind, uuid.uuid4().hex[:6]))


def test_stopped_fails_without_force_stop_when_the_guest_ignores_acpi(lab_conn, made):
    name = name_for(made, "acpi")
    args = diskless(name, state="running", console_log=made.console(name))
    assert kvm_vm(args)["actions"] == ["defined", "started"]
    stop = dict(args, state="stopped", shutdown_timeout=3)
    refused = kvm_vm(stop, fails=True)
    assert refused.failed
    assert refused["msg"] == (
        "The VM %s did not shut down within shutdown_timeout (3 s); set force_stop: true to power it off." % name
    )
    assert lab_conn.lookupByName(name).isActive()
    forced = kvm_vm(dict(stop, force_stop=True))
    assert not forced.failed, forced.get("msg")
    assert forced.changed and forced["actions"] == ["powered off"]
    assert not lab_conn.lookupByName(name).isActive()
    assert not kvm_vm(dict(stop, force_stop=True)).changed


def test_uefi_vm_is_removed_with_its_nvram(lab_conn, made):
    name = name_for(made, "uefi")
    args = diskless(name, state="running", memory=256, firmware="uefi", machine="q35")
    result = kvm_vm(args)
    assert not result.failed, result.get("msg")
    assert result["vm"]["firmware"] == "uefi" and result["vm"]["machine"].startswith("pc-q35-")
    nvram = os.path.join(NVRAM_DIR, "%s_VARS.fd" % name)
    assert os.path.exists(nvram)
    assert not kvm_vm(args).changed
    absent = dict(name=name, state="absent", force_stop=True, shutdown_timeout=2)
    assert kvm_vm(absent, check_mode=True).changed and os.path.exists(nvram)
    removed = kvm_vm(absent)
    assert not removed.failed, removed.get("msg")
    assert removed["actions"] == ["powered off", "undefined"]
    assert lookup_domain(lab_conn, name) is None
    assert not os.path.exists(nvram)
    assert not kvm_vm(absent).changed
    assert not kvm_vm(absent, check_mode=True).changed


def test_gpu_shaped_definition_round_trips_through_the_qemu_driver(lab_conn, made):
    """Everything a GPU VM gets except the GPU (the lab has none): q35, UEFI, NUMA
    pinning, huge pages, the 64-bit MMIO window, live ceilings. Defined only."""
    name = name_for(made, "gpushape")
    args = dict(
        name=name,
        state="present",
        domain_type="kvm",
        machine="q35",
        firmware="uefi",
        cpu_mode="host-passthrough",
        vcpus=2,
        vcpus_max=4,
        memory="2GiB",
        memory_max="4GiB",
        numa_node=0,
        hugepages=True,
        mmio64_mb=65536,
    )
    result = kvm_vm(args, diff=True)
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["defined"]
    stored = parse_xml(lab_conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert stored.find("./numatune/memory").get("nodeset") == "0"
    assert stored.find("./memoryBacking/hugepages") is not None
    assert stored.find("./vcpu").get("cpuset")
    args_seen = [a.get("value") for a in stored.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert args_seen == ["-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=65536"]
    vm = result["vm"]
    assert (vm["vcpus"], vm["vcpus_max"], vm["memory"], vm["memory_max"]) == (2, 4, 2048, 4096)
    again = kvm_vm(args)
    assert not again.changed, again["actions"]
    assert not kvm_vm(args, check_mode=True).changed
    bigger = kvm_vm(dict(args, mmio64_mb=131072))
    assert bigger.changed and bigger["vm"]["mmio64_mb"] == 131072


def test_gpus_are_expanded_through_the_lab_hosts_node_devices(lab_conn, made):
    """The real node device API: a host PCI function, its slot and its driver.
    The VM is only defined, never started, so the host device is not touched."""
    functions = host_pci_functions(lab_conn)
    assert functions, "the lab's libvirtd lists no PCI node devices"
    address = sorted(functions)[-1]
    name = name_for(made, "hostdev")
    args = dict(name=name, state="present", memory=256, domain_type="qemu", gpus=[address[5:]])
    result = kvm_vm(args)
    assert not result.failed, result.get("msg")
    slot = address.rsplit(".", 1)[0]
    assert [g["address"] for g in result["vm"]["gpus"]] == sorted(a for a in functions if a.startswith(slot))
    driver = parse_xml(functions[address].XMLDesc(0)).findtext("./driver/name")
    expected_managed = driver != "vfio-pci"
    assert all(g["managed"] is expected_managed for g in result["vm"]["gpus"])
    assert result["vm"]["machine"].startswith("pc-q35-") and result["vm"]["firmware"] == "uefi"
    assert not kvm_vm(args).changed


def test_remove_volumes_spares_volumes_another_vm_uses(lab_conn, made, default_pool, base_volume):
    name, other = name_for(made, "rmvol"), name_for(made, "rmvol")
    own = overlay(default_pool, name + ".qcow2", base_volume)
    shared = overlay(default_pool, name + "-shared.qcow2", base_volume)
    made.volumes += [own, shared]
    own_path = own.path()
    disks = [dict(volume=own.name()), dict(volume=shared.name())]
    assert kvm_vm(dict(diskless(name, state="present"), disks=disks)).changed
    assert kvm_vm(dict(diskless(other, state="present"), disks=[dict(path=shared.path())])).changed
    result = kvm_vm(dict(name=name, state="absent", remove_volumes=True))
    assert not result.failed, result.get("msg")
    assert result["removed_volumes"] == [own_path]
    default_pool.refresh(0)
    assert own.name() not in default_pool.listVolumes()
    assert shared.name() in default_pool.listVolumes()


def test_kvm_vm_info_reports_state_and_resources(lab_conn, made):
    name = name_for(made, "info")
    kvm_vm(diskless(name, state="paused", memory=96))
    result = run_module("kvm_vm_info", dict(uri=LAB_URI, name=[name]))
    assert not result.failed, result.get("msg")
    (vm,) = result["vms"]
    assert vm["name"] == name and vm["state"] == "paused" and vm["memory"] == 96
    assert vm["uuid"] == lab_conn.lookupByName(name).UUIDString()
    listed = run_module("kvm_vm_info", dict(uri=LAB_URI))
    assert name in [v["name"] for v in listed["vms"]]


BAD = [
    (dict(memory=0), "memory must be at least 1 MiB, got 0."),
    (dict(memory=-1), "memory must not be negative, got -1."),
    (dict(memory="1Q"), "has an unknown unit 'Q'"),
    (dict(vcpus=0), "vcpus must be at least 1, got 0."),
    (dict(disks=[dict(volume="iaastest-no-such-volume.qcow2")]), "of disks[0] does not exist in pool 'default'."),
    (dict(interfaces=[dict(network="iaastest-no-such-net")]), "The network 'iaastest-no-such-net' of interfaces[0]"),
    (dict(gpus=["0000:01:00"]), "is not a PCI address"),
    (dict(xml="<domain type='qemu'><name>x</name"), "xml is not well-formed XML"),
    (dict(xml="<domain type='qemu'><name>iaastest-other</name></domain>"), "differs from name"),
    (dict(xml="<domain type='qemu'><name>x</name></domain>", memory=64), "mutually exclusive: xml|memory"),
]


@pytest.mark.parametrize("override, message", BAD)
def test_bad_input_is_one_clear_error_and_changes_nothing(lab_conn, made, override, message):
    name = name_for(made, "bad")
    args = diskless(name, state="running")
    if "xml" in override:
        args = {k: v for k, v in args.items() if k not in ("memory", "vcpus", "domain_type")}
    result = kvm_vm(dict(args, **override), fails=True)
    assert result.failed and message in result["msg"], result["msg"]
    assert lookup_domain(lab_conn, name) is None
    # An existing VM stays as it was.
    kvm_vm(diskless(name, state="present"))
    before = lab_conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    again = kvm_vm(dict(args, **override), fails=True)
    assert again.failed
    assert lab_conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    assert not lab_conn.lookupByName(name).isActive()
