# -*- coding: utf-8 -*-
"""kvm_vm_info against libvirt's test driver."""

from __future__ import annotations

import pytest

from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


def test_lists_every_vm_sorted_with_state_and_resources(run_module, conn):
    made = run_module(
        "kvm_vm",
        dict(
            uri=TEST_URI,
            name="info-a",
            state="paused",
            memory="1GiB",
            vcpus=2,
            domain_type="qemu",
            interfaces=[dict(network="default", mac="52:54:00:00:00:0a")],
        ),
    )
    assert not made.failed, made.get("msg")
    run_module("kvm_vm", dict(uri=TEST_URI, name="info-b", memory=64, domain_type="qemu", autostart=True))
    result = run_module("kvm_vm_info", dict(uri=TEST_URI))
    assert not result.failed and not result.changed
    assert [vm["name"] for vm in result["vms"]] == ["info-a", "info-b", "test"]
    first = result["vms"][0]
    assert first["state"] == "paused" and first["memory"] == 1024 and first["vcpus"] == 2
    assert first["interfaces"][0]["mac"] == "52:54:00:00:00:0a"
    assert result["vms"][1]["state"] == "stopped" and result["vms"][1]["autostart"] is True


def test_named_vms_only_and_missing_names_left_out(run_module, conn):
    run_module("kvm_vm", dict(uri=TEST_URI, name="info-c", memory=64, domain_type="qemu"))
    result = run_module("kvm_vm_info", dict(uri=TEST_URI, name=["info-c", "no-such-vm"]), check_mode=True)
    assert not result.failed
    assert [vm["name"] for vm in result["vms"]] == ["info-c"]
    assert result["vms"][0]["ip"] is None


def test_unreachable_hypervisor_is_one_sentence(run_module):
    result = run_module("kvm_vm_info", dict(uri="test:///nonexistent/file.xml"), fails=True)
    assert result.failed
    assert result["msg"].startswith("Cannot connect to the hypervisor at test:///nonexistent/file.xml:")
