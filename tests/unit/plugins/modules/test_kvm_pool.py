# -*- coding: utf-8 -*-
"""kvm_pool and kvm_pool_info through their real main(), against libvirt's
test driver (test:///default), which keeps its state while the ``conn``
fixture holds a connection open."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._storage import volume_xml
from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver

URI = TEST_URI


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


@pytest.fixture
def pool_name(conn):
    name = "iaastest-pool-%s" % uuid.uuid4().hex[:6]
    yield name
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    if pool.isActive():
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
    if pool.isPersistent():
        pool.undefine()


def args(name, **extra):
    result = dict(uri=URI, name=name, path="/srv/%s" % name)
    result.update(extra)
    return result


def test_define_check_apply_apply_check(run_module, conn, pool_name):
    first = run_module("kvm_pool", args(pool_name), check_mode=True, diff=True)
    assert first.changed and not first.failed
    assert first["actions"] == ["defined", "started", "autostart on"]
    assert first["diff"]["after"] == dict(path="/srv/" + pool_name, active=True, autostart=True)
    assert first["pool"]["uuid"] is None
    with pytest.raises(libvirt.libvirtError):
        conn.storagePoolLookupByName(pool_name)

    applied = run_module("kvm_pool", args(pool_name), diff=True)
    assert applied.changed
    assert applied["actions"] == first["actions"]
    pool = conn.storagePoolLookupByName(pool_name)
    assert pool.isActive() and pool.isPersistent() and pool.autostart()
    assert applied["pool"]["path"] == "/srv/" + pool_name
    assert applied["pool"]["type"] == "dir"
    assert applied["pool"]["volume_count"] == 0
    assert applied["pool"]["uuid"] == pool.UUIDString()

    again = run_module("kvm_pool", args(pool_name), diff=True)
    assert not again.changed and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    check_again = run_module("kvm_pool", args(pool_name), check_mode=True)
    assert not check_again.changed
    assert check_again["pool"] == again["pool"]


def test_path_with_trailing_slash_is_the_same_pool(run_module, pool_name):
    run_module("kvm_pool", args(pool_name))
    assert not run_module("kvm_pool", args(pool_name, path="/srv/%s/" % pool_name)).changed


def test_stop_start_and_autostart(run_module, conn, pool_name):
    run_module("kvm_pool", args(pool_name))
    stop_check = run_module("kvm_pool", args(pool_name, active=False, autostart=False), check_mode=True)
    assert stop_check.changed and stop_check["actions"] == ["stopped", "autostart off"]
    assert stop_check["pool"]["active"] is False and stop_check["pool"]["capacity"] is None
    assert conn.storagePoolLookupByName(pool_name).isActive()
    stopped = run_module("kvm_pool", args(pool_name, active=False, autostart=False))
    assert stopped.changed
    pool = conn.storagePoolLookupByName(pool_name)
    assert not pool.isActive() and not pool.autostart()
    assert not run_module("kvm_pool", args(pool_name, active=False, autostart=False)).changed
    # path may be left out for an existing pool
    started = run_module("kvm_pool", dict(uri=URI, name=pool_name))
    assert started["actions"] == ["started", "autostart on"]
    assert pool.isActive()


@pytest.mark.parametrize(
    "extra, message",
    [
        (dict(path=None), "path is needed to define it"),
        (dict(path="relative/dir"), "must be absolute"),
        (dict(name="../etc"), "must not contain path separators"),
        (dict(name="bad name"), "may hold only"),
    ],
)
def test_bad_input_defines_nothing(run_module, conn, pool_name, extra, message):
    before = sorted(p.name() for p in conn.listAllStoragePools(0))
    task = args(pool_name)
    task.update(extra)
    result = run_module("kvm_pool", task, fails=True)
    assert result.failed and message in result["msg"]
    assert not result.changed
    assert sorted(p.name() for p in conn.listAllStoragePools(0)) == before


def test_other_path_and_used_path_are_refused(run_module, conn, pool_name):
    run_module("kvm_pool", args(pool_name))
    moved = run_module("kvm_pool", args(pool_name, path="/srv/elsewhere"), fails=True)
    assert moved.failed and "already exists at /srv/%s" % pool_name in moved["msg"]
    assert conn.storagePoolLookupByName(pool_name).isActive()
    other = pool_name + "-b"
    taken = run_module("kvm_pool", dict(uri=URI, name=other, path="/srv/%s" % pool_name), fails=True)
    assert taken.failed and "already the target of storage pool %s" % pool_name in taken["msg"]
    with pytest.raises(libvirt.libvirtError):
        conn.storagePoolLookupByName(other)


def test_path_of_a_pool_of_another_type_is_refused(run_module, conn, pool_name):
    conn.storagePoolDefineXML(
        "<pool type='logical'><name>%s</name><source><name>vg0</name></source>"
        "<target><path>/dev/vg0</path></target></pool>" % pool_name,
        0,
    )
    result = run_module("kvm_pool", args(pool_name, path="/dev/vg0"), fails=True)
    assert result.failed and "is a logical pool" in result["msg"]


def test_absent_refuses_volumes_unless_force(run_module, conn, pool_name):
    run_module("kvm_pool", args(pool_name))
    pool = conn.storagePoolLookupByName(pool_name)
    base = pool.createXML(volume_xml("base.qcow2", 1024**3), 0)
    pool.createXML(volume_xml("clone.qcow2", 1024**3, "qcow2", base.path()), 0)

    refused = run_module("kvm_pool", args(pool_name, state="absent"), fails=True)
    assert refused.failed and "still holds 2 volume(s) (base.qcow2, clone.qcow2)" in refused["msg"]
    assert pool.isActive() and pool.numOfVolumes() == 2

    check = run_module("kvm_pool", args(pool_name, state="absent", force=True), check_mode=True, diff=True)
    assert check.changed
    assert check["deleted_volumes"] == ["clone.qcow2", "base.qcow2"]  # the overlay first
    assert check["diff"]["after"] == {} and check["diff"]["before"]["name"] == pool_name
    assert pool.numOfVolumes() == 2

    removed = run_module("kvm_pool", args(pool_name, state="absent", force=True))
    assert removed.changed and removed["deleted_volumes"] == ["clone.qcow2", "base.qcow2"]
    assert removed["actions"][-1] == "undefined"
    with pytest.raises(libvirt.libvirtError):
        conn.storagePoolLookupByName(pool_name)
    twice = run_module("kvm_pool", args(pool_name, state="absent"))
    assert not twice.changed and not twice.failed


def test_absent_of_an_inactive_pool_only_undefines(run_module, conn, pool_name):
    run_module("kvm_pool", args(pool_name, active=False))
    result = run_module("kvm_pool", args(pool_name, state="absent"))
    assert result["actions"] == ["undefined"]


def test_pool_info_lists_pools(run_module, conn, pool_name):
    run_module("kvm_pool", args(pool_name))
    info = run_module("kvm_pool_info", dict(uri=URI, name=[pool_name, "iaastest-missing"]))
    assert not info.changed
    assert [p["name"] for p in info["pools"]] == [pool_name]
    assert info["pools"][0]["path"] == "/srv/" + pool_name
    everything = run_module("kvm_pool_info", dict(uri=URI))
    assert {"default-pool", pool_name} <= {p["name"] for p in everything["pools"]}
