# -*- coding: utf-8 -*-
"""A failure after a change says what changed: tasks that fail halfway against
the lab's real libvirtd return ``changed: true`` and the actions done before
the failure (and nothing after it), and the next run, once the cause is gone,
converges. No guest boots."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._storage import overlays_first
from tests.conftest import run_module
from tests.integration import cleanup
from tests.integration.conftest import DOMAIN_TYPE, LAB_URI
from tests.integration.labmodule import lab_http_server, run_module_in_lab

pytestmark = [pytest.mark.lab]


def lab(module, args, **kwargs):
    return run_module(module, dict(args, uri=LAB_URI), **kwargs)


@pytest.fixture
def pool(lab_conn):
    directory = tempfile.mkdtemp(prefix="iaastest-fail-")
    os.chmod(directory, 0o755)  # noqa: S103 - QEMU runs as its own user and must reach the pool
    name = "iaastest-fail-%s" % uuid.uuid4().hex[:6]
    made = lab_conn.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, directory), 0
    )
    yield made
    for dom in lab_conn.listAllDomains(0):
        if dom.name().startswith(name):
            cleanup.remove_domain(dom)
    made.refresh(0)
    for vol in overlays_first(made.listAllVolumes(0)):
        vol.delete(0)
    made.destroy()
    os.rmdir(directory)


def test_vm_that_cannot_start_is_reported_defined(lab_conn, pool):
    """kvm_vm defines the VM, then QEMU cannot open its disk: defined, not started."""
    name = pool.name() + "-vm"
    pool.createXML(
        "<volume><name>locked.qcow2</name><capacity>67108864</capacity>"
        "<target><format type='qcow2'/><permissions><mode>0600</mode></permissions></target></volume>",
        0,
    )
    path = pool.storageVolLookupByName("locked.qcow2").path()
    os.chmod(path, 0)  # QEMU's user cannot open it
    task = dict(
        name=name,
        state="running",
        memory=64,
        vcpus=1,
        domain_type=DOMAIN_TYPE,
        disks=[dict(volume="locked.qcow2", pool=pool.name())],
    )
    failed = lab("kvm_vm", task, fails=True)
    assert "Cannot start the VM %s" % name in failed["msg"], failed["msg"]
    assert failed["changed"] is True and failed["actions"] == ["defined"], failed
    dom = lab_conn.lookupByName(name)
    assert dom.isPersistent() and not dom.isActive()

    os.chmod(path, 0o644)
    again = lab("kvm_vm", dict(task, state="stopped", force_stop=True))
    assert not again.changed, again["actions"]  # defined as asked: nothing left but the start


def test_pool_whose_directory_cannot_be_made_is_reported_defined(lab_conn, tmp_path):
    name = "iaastest-fail-pool-%s" % uuid.uuid4().hex[:6]
    blocker = Path(tempfile.mkdtemp(prefix="iaastest-fail-"))
    (blocker / "file").write_text("a file where the pool's directory should be\n")
    task = dict(name=name, path=str(blocker / "file" / "pool"), autostart=False)
    try:
        failed = lab("kvm_pool", task, fails=True)
        assert "Cannot build the directory of pool %s" % name in failed["msg"], failed["msg"]
        assert failed["changed"] is True and failed["actions"] == ["defined"], failed
        made = lab_conn.storagePoolLookupByName(name)
        assert made.isPersistent() and not made.isActive()
    finally:
        cleanup.clean(lab_conn, prefix=name)
        (blocker / "file").unlink()
        blocker.rmdir()


def test_network_that_cannot_start_is_reported_defined(lab_conn):
    """A second network on the lab network's subnet is defined, then refused a start by libvirt."""
    tag = uuid.uuid4().hex[:6]
    name = "iaastest-fail-net-%s" % tag
    lab_net = lab_conn.networkLookupByName("default")
    assert "192.168.122.1" in lab_net.XMLDesc(0)
    task = dict(
        name=name,
        mode="isolated",
        bridge="iaastf%s" % tag,
        ipv4=dict(address="192.168.122.1", prefix=24),
    )
    try:
        failed = lab("kvm_network", task, fails=True)
        assert "Cannot start network %s" % name in failed["msg"], failed["msg"]
        assert failed["changed"] is True and failed["actions"] == ["defined", "autostart on"], failed
        net = lab_conn.networkLookupByName(name)
        assert net.isPersistent() and not net.isActive() and net.autostart()
        assert lab_net.isActive()
    finally:
        cleanup.clean(lab_conn, prefix=name)


def test_forced_reimport_that_fails_its_checksum_says_the_old_content_is_gone(lab_conn, pool, tmp_path):
    (tmp_path / "iaastest-old.raw").write_bytes(b"old content\n" * 4096)
    (tmp_path / "iaastest-new.raw").write_bytes(b"new content\n" * 4096)
    name = "iaastest-reimported.raw"
    with lab_http_server(tmp_path) as url:
        base = dict(uri=LAB_URI, pool=pool.name(), name=name, format="raw")
        old_sha = hashlib.sha256((tmp_path / "iaastest-old.raw").read_bytes()).hexdigest()
        run_module_in_lab("kvm_volume", dict(base, source=url + "/iaastest-old.raw", checksum="sha256:" + old_sha))
        wrong = dict(base, source=url + "/iaastest-new.raw", checksum="sha256:" + "0" * 64, force=True)
        failed = run_module_in_lab("kvm_volume", wrong, fails=True)
    assert "nothing was imported" in failed["msg"], failed["msg"]
    assert failed["changed"] is True, failed
    assert failed["actions"] == ["deleted the previous content of %s" % name], failed
    pool.refresh(0)
    with pytest.raises(libvirt.libvirtError):
        pool.storageVolLookupByName(name)  # no half-imported volume either


def test_a_timeout_after_the_start_reports_the_start(lab_conn):
    """wait_for_ip gives up on a network without DHCP: the VM was defined and started."""
    tag = uuid.uuid4().hex[:6]
    net_name, vm_name = "iaastest-fail-nodhcp-%s" % tag, "iaastest-fail-wait-%s" % tag
    network = dict(name=net_name, mode="isolated", bridge="iaastw%s" % tag, autostart=False)
    network["ipv4"] = dict(address="192.168.198.1", prefix=24)
    task = dict(
        name=vm_name,
        state="running",
        memory=64,
        vcpus=1,
        domain_type=DOMAIN_TYPE,
        interfaces=[dict(network=net_name)],
        wait_for_ip=True,
        wait_timeout=3,
    )
    try:
        lab("kvm_network", network)
        failed = lab("kvm_vm", task, fails=True)
        assert "192.168" not in failed["msg"] and vm_name in failed["msg"], failed["msg"]
        assert failed["changed"] is True and failed["actions"] == ["defined", "started"], failed
        assert lab_conn.lookupByName(vm_name).isActive()
    finally:
        cleanup.clean(lab_conn, prefix=vm_name)
        cleanup.clean(lab_conn, prefix=net_name)
