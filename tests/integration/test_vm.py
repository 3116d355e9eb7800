# -*- coding: utf-8 -*-
"""kvm_vm against the lab with one real guest (Debian 12 from an overlay of the
base image and a NoCloud seed), reused through the module in order: create
running and reach it over SSH, converge again (ok, check mode ok), change its
memory (restart_required), restart it (the guest sees the new memory), stop it
gracefully, remove it (its disks stay).

The tests of this file build on each other and run in file order.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import DOMAIN_TYPE, guest_ssh, wait_for_ssh
from tests.integration.guests import make_seed_volume, overlay
from tests.integration.vmtools import Made, kvm_vm, lookup_domain

pytestmark = [pytest.mark.lab, pytest.mark.guest]


@pytest.fixture(scope="module")
def guest(lab_conn, lab_network, default_pool, base_volume, ssh_key):
    """The guest's task arguments; the domain, its volumes and its console log are
    removed when the module's tests end."""
    made = Made(lab_conn)
    name = made.domain("iaastest-vm-%s" % uuid.uuid4().hex[:6])
    try:
        disk = overlay(default_pool, name + ".qcow2", base_volume)
        made.volumes.append(disk)
        seed = make_seed_volume(lab_conn, default_pool, name + "-seed.iso", name, ssh_key.public)
        made.volumes.append(seed)
        args = dict(
            name=name,
            state="running",
            domain_type=DOMAIN_TYPE,
            vcpus=2,
            memory="1GiB",
            disks=[dict(volume=disk.name(), pool=default_pool.name())],
            cloudinit_seed=dict(volume=seed.name(), pool=default_pool.name()),
            interfaces=[dict(network=lab_network.name())],
            guest_agent=True,
            console_log=made.console(name),
            wait_for_ip=True,
            wait_timeout=300,
            shutdown_timeout=120,
        )
        yield dict(args=args, made=made, disk=disk, seed=seed, state={})
    finally:
        made.remove()


def meminfo_mib(key, ip):
    text = guest_ssh(key, ip, "grep MemTotal /proc/meminfo").stdout
    return int(re.search(r"MemTotal:\s+(\d+) kB", text).group(1)) // 1024


def test_check_mode_predicts_creation_and_defines_nothing(lab_conn, guest):
    result = kvm_vm(guest["args"], check_mode=True, diff=True)
    assert not result.failed, result.get("msg")
    assert result.changed
    assert result["actions"] == ["defined", "started"]
    assert result["diff"]["after"]["memory"] == 1024
    assert lookup_domain(lab_conn, guest["args"]["name"]) is None


def test_create_running_waits_for_ip_and_ssh(lab_conn, guest, ssh_key, base_volume):
    result = kvm_vm(guest["args"])
    assert not result.failed, result.get("msg")
    assert result.changed
    assert result["actions"] == ["defined", "started"]
    ip = result["ip"]
    assert ip and ip.startswith("192.168.122."), result
    vm = result["vm"]
    assert vm["state"] == "running"
    assert vm["interfaces"][0]["mac"].startswith("52:54:00:")
    assert any(a["address"] == ip for a in vm["interfaces"][0]["addresses"])
    assert vm["disks"][0]["target"] == "vda" and vm["disks"][0]["format"] == "qcow2"
    assert vm["cloudinit_seed"]["bus"] == "scsi"
    wait_for_ssh(ssh_key, ip)
    assert guest_ssh(ssh_key, ip, "hostname").stdout.strip() == guest["args"]["name"]
    assert "status: done" in guest_ssh(ssh_key, ip, "cloud-init status --wait", timeout=300).stdout
    guest["state"].update(ip=ip, uuid=vm["uuid"], mac=vm["interfaces"][0]["mac"])
    # The serial console went to the log file as well.
    log = Path(guest["args"]["console_log"]).read_text(errors="replace")
    assert "Linux version" in log or "login:" in log, log[-2000:]


def test_second_run_and_check_mode_are_ok(guest):
    assert "uuid" in guest["state"], "needs the guest of the test before"
    again = kvm_vm(guest["args"], diff=True)
    assert not again.failed, again.get("msg")
    assert not again.changed, again["diff"]
    assert again["actions"] == []
    assert again["restart_required"] is False
    assert again["ip"] == guest["state"]["ip"]
    assert again["diff"]["before"] == again["diff"]["after"]
    checked = kvm_vm(guest["args"], check_mode=True)
    assert not checked.changed
    assert checked["vm"]["uuid"] == guest["state"]["uuid"]


def test_memory_change_reports_restart_required(guest, ssh_key):
    assert "uuid" in guest["state"], "needs the guest of the tests before"
    args = dict(guest["args"], memory=1536)
    checked = kvm_vm(args, check_mode=True)
    assert checked.changed and checked["restart_required"], checked
    result = kvm_vm(args, diff=True)
    assert not result.failed, result.get("msg")
    assert result.changed
    assert result["restart_required"] is True
    assert "memory" in result["restart_reasons"]
    assert result["diff"]["before"]["memory"] == 1024 and result["diff"]["after"]["memory"] == 1536
    # Unchanged on the next run, yet still reported: the guest runs with the old memory.
    again = kvm_vm(args)
    assert not again.changed
    assert again["restart_required"] is True
    assert meminfo_mib(ssh_key, guest["state"]["ip"]) < 1024
    # The redefine kept the UUID and the MAC.
    assert again["vm"]["uuid"] == guest["state"]["uuid"]
    assert again["vm"]["interfaces"][0]["mac"] == guest["state"]["mac"]


def test_restart_true_brings_the_guest_back_with_the_new_memory(guest, ssh_key):
    assert "uuid" in guest["state"], "needs the guest of the tests before"
    args = dict(guest["args"], memory=1536, restart=True)
    result = kvm_vm(args)
    assert not result.failed, result.get("msg")
    assert result.changed
    assert result["actions"] == ["restarted"]
    assert result["restart_required"] is False
    ip = result["ip"]
    assert ip
    wait_for_ssh(ssh_key, ip)
    assert meminfo_mib(ssh_key, ip) > 1300
    assert kvm_vm(args).changed is False
    guest["state"]["ip"] = ip


def test_stopped_shuts_the_guest_down_gracefully(lab_conn, guest):
    assert "uuid" in guest["state"], "needs the guest of the tests before"
    args = dict(guest["args"], state="stopped", memory=1536, wait_for_ip=False)
    result = kvm_vm(args)
    assert not result.failed, result.get("msg")
    assert result.changed
    assert result["actions"] == ["shut down"]  # not "powered off": the guest obeyed ACPI
    assert result["vm"]["state"] == "stopped"
    assert not lab_conn.lookupByName(guest["args"]["name"]).isActive()
    assert kvm_vm(args).changed is False
    assert kvm_vm(args, check_mode=True).changed is False


def test_absent_keeps_the_disks(lab_conn, guest, default_pool):
    assert "uuid" in guest["state"], "needs the guest of the tests before"
    args = dict(name=guest["args"]["name"], state="absent")
    checked = kvm_vm(args, check_mode=True)
    assert checked.changed and lookup_domain(lab_conn, args["name"]) is not None
    result = kvm_vm(args)
    assert not result.failed, result.get("msg")
    assert result.changed and result["removed_volumes"] == []
    assert lookup_domain(lab_conn, args["name"]) is None
    default_pool.refresh(0)
    names = default_pool.listVolumes()
    assert guest["disk"].name() in names and guest["seed"].name() in names
    assert kvm_vm(args).changed is False
