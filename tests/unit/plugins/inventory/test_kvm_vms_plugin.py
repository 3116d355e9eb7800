# -*- coding: utf-8 -*-
"""The inventory plugin iaas.kvm.kvm_vms as Ansible runs it (ansible-inventory in a
subprocess, the repository's ansible.cfg): compose, groups, keyed_groups and strict,
the inventory cache, on_unreachable, and the file names it takes. The hypervisors are
libvirt test drivers read from files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.ansible_cli import ansible, unwrap
from tests.unit.plugins.inventory.test_kvm_vms import hypervisor_file, vm_xml


def ansible_inventory(config, *args):
    return ansible("ansible-inventory", "-i", config, *args, timeout=120)


def listed(config, *args):
    run = ansible_inventory(config, "--list", *args)
    assert run.returncode == 0, run.stderr
    return unwrap(json.loads(run.stdout)), run.stderr


@pytest.fixture
def hypervisors(tmp_path):
    hv1 = hypervisor_file(
        tmp_path,
        "hv1",
        vm_xml("web-1", mac="52:54:00:00:01:01", tags={"role": "web"}),
        vm_xml("db-1", memory_mib=2048, tags={"role": "db"}),
    )
    hv2 = hypervisor_file(tmp_path, "hv2", vm_xml("web-2", mac="52:54:00:00:02:01", tags={"role": "web"}))
    return tmp_path, [
        dict(uri=hv1, name="hv1", jump_host="root@192.168.149.11"),
        dict(uri=hv2, name="hv2", jump_host="root@192.168.149.12"),
        dict(uri="qemu+unix:///system?socket=%s" % (tmp_path / "nothing-here.sock"), name="hv3"),
    ]


def config_file(directory, name="fleet.kvm_vms.yml", **options):
    path = directory / name
    path.write_text(yaml.safe_dump(dict(plugin="iaas.kvm.kvm_vms", **options)))
    return path


def test_constructed_groups_and_vars_cache_and_an_unreachable_hypervisor(hypervisors):
    directory, entries = hypervisors
    config = config_file(
        directory,
        hypervisors=entries,
        proxy_jump=True,
        compose=dict(ansible_user="'debian'", memory_gib="kvm_memory // 1024"),
        groups=dict(big="kvm_memory >= 2048"),
        keyed_groups=[dict(key="kvm_tags.role", prefix="role")],
        cache=True,
        cache_plugin="ansible.builtin.jsonfile",
        cache_connection=str(directory / "cache"),
        cache_timeout=3600,
    )
    data, warnings = listed(config)
    assert "The hypervisor hv3 (qemu+unix:///system?socket=" in warnings and "cannot be reached" in warnings
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == ["db-1", "web-1", "web-2"]
    assert hostvars["web-1"]["ansible_user"] == "debian" and hostvars["db-1"]["memory_gib"] == 2
    assert hostvars["web-1"]["ansible_ssh_common_args"] == "-o ProxyJump=root@192.168.149.11"
    assert hostvars["web-1"]["ansible_host"] == hostvars["web-2"]["ansible_host"]
    assert hostvars["web-2"]["kvm_tags"] == {"role": "web"}
    assert sorted(data["big"]["hosts"]) == ["db-1"]
    assert sorted(data["role_web"]["hosts"]) == ["web-1", "web-2"] and data["role_db"]["hosts"] == ["db-1"]
    assert data["kvm_hypervisor_hv1"]["hosts"] == ["db-1", "web-1"]
    assert data["kvm_no_address"]["hosts"] == ["db-1"]

    # The hypervisors go away: the cache still answers, until it is flushed.
    for entry in entries[:2]:
        Path(entry["uri"][len("test://") :]).unlink()
    cached, _warnings = listed(config)
    assert sorted(cached["_meta"]["hostvars"]) == ["db-1", "web-1", "web-2"]
    flushed, warnings = listed(config, "--flush-cache")
    assert flushed["_meta"]["hostvars"] == {}
    assert "The hypervisor hv1 (" in warnings and "The hypervisor hv2 (" in warnings


def test_strict_turns_a_bad_expression_into_an_error(hypervisors):
    directory, entries = hypervisors
    lenient = config_file(directory, hypervisors=entries[:2], compose=dict(broken="kvm_no_such_var.x"))
    data, _warnings = listed(lenient)
    assert "broken" not in data["_meta"]["hostvars"]["web-1"]
    strict = config_file(directory, hypervisors=entries[:2], compose=dict(broken="kvm_no_such_var.x"), strict=True)
    run = ansible_inventory(strict, "--list")
    assert run.returncode != 0
    assert "Could not set broken for host" in run.stderr


def test_on_unreachable_fail(hypervisors):
    directory, entries = hypervisors
    config = config_file(directory, hypervisors=entries, on_unreachable="fail")
    run = ansible_inventory(config, "--graph")
    assert run.returncode != 0
    assert "The hypervisor hv3 (qemu+unix:///system?socket=" in run.stderr and "cannot be reached" in run.stderr


def test_only_files_named_kvm_vms_yml_are_taken(hypervisors):
    directory, entries = hypervisors
    config = config_file(directory, name="fleet.yml", hypervisors=entries[:2])
    run = ansible_inventory(config, "--list")
    assert run.returncode != 0
    assert "could not be verified by inventory plugin 'iaas.kvm.kvm_vms'" in run.stderr
    assert "web-1" not in run.stdout
