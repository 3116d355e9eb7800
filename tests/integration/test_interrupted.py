# -*- coding: utf-8 -*-
"""Interrupted runs lose nothing: a module killed with SIGKILL at a named step
(plugins/module_utils/_interrupt.py) leaves a state that the next run converges,
with nothing lost, duplicated or half-made taken for complete.

Each case kills one module process at one step against the lab's real libvirtd,
looks at what was left, runs the same task again without the kill (it converges)
and once more (it changes nothing). No guest boots: the VM's disk is a linked
clone of a blank base volume, so it sits in its firmware.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import uuid
from pathlib import Path

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils import _seed
from ansible_collections.iaas.kvm.plugins.module_utils._interrupt import KILL_AT
from ansible_collections.iaas.kvm.plugins.module_utils._storage import (
    WRITING_SUFFIX,
    download_bytes,
    import_record_name,
    read_import_record,
)
from tests.conftest import ModuleResult, check_outcome
from tests.integration import cleanup
from tests.integration.conftest import DOMAIN_TYPE, LAB_URI
from tests.integration.labmodule import lab_http_server, module_process
from tests.state import files_state

pytestmark = [pytest.mark.lab]


def killed_at(step, module, args):
    """Run ``module`` with the kill hook set to ``step``; the process must die by SIGKILL there."""
    done = module_process(module, dict(args, uri=LAB_URI), env={KILL_AT: step})
    assert done.returncode == -signal.SIGKILL, "%s did not die at %s (rc %s): %s %s" % (
        module,
        step,
        done.returncode,
        done.stdout[-2000:],
        done.stderr[-2000:],
    )


def run(module, args):
    """Run ``module`` as its own process, without the hook; the test fails when it fails."""
    done = module_process(module, dict(args, uri=LAB_URI))
    text = done.stdout.strip()
    assert "{" in text, "%s printed no JSON (rc %d): %s %s" % (module, done.returncode, text, done.stderr)
    return check_outcome(module, ModuleResult(json.loads(text[text.index("{") :])), False)


@pytest.fixture
def pool(lab_conn):
    """A directory pool of this test's own, removed with its volumes afterwards."""
    directory = tempfile.mkdtemp(prefix="iaastest-intr-")
    os.chmod(directory, 0o755)  # noqa: S103 - QEMU runs as its own user and must reach the pool
    name = "iaastest-intr-%s" % uuid.uuid4().hex[:6]
    xml = "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, directory)
    made = lab_conn.storagePoolCreateXML(xml, 0)
    try:
        yield made
    finally:
        for dom in lab_conn.listAllDomains(0):
            if dom.name().startswith(name):
                cleanup.remove_domain(dom)
        made.refresh(0)
        for vol in made.listAllVolumes(0):
            vol.delete(0)
        made.destroy()
        os.rmdir(directory)


def volume_names(pool):
    pool.refresh(0)
    return sorted(v.name() for v in pool.listAllVolumes(0))


# --- a VM made the way roles/vm makes it: linked clone, seed, domain --------------------


def vm_tasks(pool, name):
    base = "%s-base.qcow2" % name
    return [
        ("kvm_volume", dict(pool=pool.name(), name=base, format="qcow2", capacity="64M")),
        ("kvm_volume", dict(pool=pool.name(), name="%s.qcow2" % name, backing_volume=base, capacity="128M")),
        ("cloudinit_seed", dict(pool=pool.name(), name="%s-seed.iso" % name, hostname="intr", meta_data={})),
        (
            "kvm_vm",
            dict(
                name=name,
                state="running",
                memory=64,
                vcpus=1,
                domain_type=DOMAIN_TYPE,
                disks=[dict(volume="%s.qcow2" % name, pool=pool.name())],
                cloudinit_seed=dict(volume="%s-seed.iso" % name, pool=pool.name()),
                shutdown_timeout=0,
                force_stop=True,
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("task", "step"),
    [
        pytest.param(1, "kvm_volume:created", id="after-the-clone"),
        pytest.param(2, "cloudinit_seed:uploading", id="during-the-seed"),
        pytest.param(3, "kvm_vm:defined", id="after-define"),
    ],
)
def test_vm_creation_killed_midway_converges_on_the_next_run(lab_conn, pool, task, step):
    name = pool.name() + "-vm"
    tasks = vm_tasks(pool, name)
    for module, args in tasks[:task]:
        run(module, args)
    killed_at(step, *tasks[task])

    results = [run(module, args) for module, args in tasks]
    assert [r.changed for r in results[:task]] == [False] * task  # what was done before stays done
    assert any(r.changed for r in results[task:]), "the interrupted flow had nothing left to do"
    dom = lab_conn.lookupByName(name)
    assert dom.isActive()
    names = volume_names(pool)
    assert names == sorted(["%s-base.qcow2" % name, "%s.qcow2" % name, "%s-seed.iso" % name]), names
    clone = pool.storageVolLookupByName("%s.qcow2" % name)
    assert "<backingStore>" in clone.XMLDesc(0) and "%s-base.qcow2" % name in clone.XMLDesc(0)
    seed = _seed.read_seed(download_bytes(lab_conn, pool.storageVolLookupByName("%s-seed.iso" % name)))
    assert "hostname: intr" in seed["user-data"]
    again = [run(module, args) for module, args in tasks]
    assert [r.changed for r in again] == [False] * len(tasks), [r["actions"] for r in again]


# --- a volume import killed midway ---------------------------------------------------


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "iaastest-payload.raw"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return path


@pytest.mark.parametrize("step", ["kvm_volume:uploading", "kvm_volume:before-record"])
@pytest.mark.parametrize("way", ["file", "url"], ids=["kernel-copy", "stream"])
def test_import_killed_midway_is_imported_again(lab_conn, pool, payload, step, way):
    """A file goes into this directory pool through the kernel, a URL through the stream API."""
    name = "iaastest-imported.raw"
    task = dict(pool=pool.name(), name=name, format="raw", source=str(payload))
    if way == "url":
        with lab_http_server(payload.parent) as url:
            digest = hashlib.sha256(payload.read_bytes()).hexdigest()
            task.update(source="%s/%s" % (url, payload.name), checksum="sha256:" + digest)
            killed_at(step, "kvm_volume", task)
            _check_imported_again(lab_conn, pool, name, task, payload)
        return
    killed_at(step, "kvm_volume", task)
    _check_imported_again(lab_conn, pool, name, task, payload)


def _check_imported_again(lab_conn, pool, name, task, payload):
    record = read_import_record(lab_conn, pool, name)
    assert record is not None and record["state"] == "importing", record

    again = run("kvm_volume", task)
    assert again.changed and "imported %s" % task["source"] in again["actions"], again["actions"]
    assert volume_names(pool) == sorted([name, import_record_name(name)])
    data = download_bytes(lab_conn, pool.storageVolLookupByName(name), 16 * 1024 * 1024)
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert read_import_record(lab_conn, pool, name)["state"] == "complete"
    assert not run("kvm_volume", task).changed


# --- a seed written midway ---------------------------------------------------------


@pytest.mark.parametrize("step", ["cloudinit_seed:marked", "cloudinit_seed:uploading"])
def test_seed_volume_killed_midway_is_written_again(lab_conn, pool, step):
    name = "iaastest-seed.iso"
    first = dict(pool=pool.name(), name=name, hostname="before", meta_data={"instance-id": "i-1"})
    run("cloudinit_seed", first)
    changed = dict(first, hostname="after")
    killed_at(step, "cloudinit_seed", changed)
    assert name + WRITING_SUFFIX in volume_names(pool)

    again = run("cloudinit_seed", first)  # even the old documents: the volume is half-written
    assert again.changed and again["actions"] == ["rewritten (an earlier write was interrupted)"]
    assert volume_names(pool) == [name]
    assert not run("cloudinit_seed", first).changed
    assert run("cloudinit_seed", changed).changed


@pytest.mark.parametrize("existing", [False, True], ids=["new", "update"])
def test_seed_file_killed_before_the_rename_keeps_the_old_one(tmp_path, existing):
    path = tmp_path / "iaastest-seed.iso"
    old = dict(path=str(path), hostname="before", meta_data={"instance-id": "i-1"})
    if existing:
        run("cloudinit_seed", old)
    before = path.read_bytes() if existing else None
    new = dict(old, hostname="after")
    killed_at("files:before-rename", "cloudinit_seed", new)
    assert (path.read_bytes() if path.exists() else None) == before  # never a part of the new one
    assert [n for n in files_state(tmp_path) if n.endswith(".iaas-tmp")], "no temporary file was left to clean"

    assert run("cloudinit_seed", new).changed
    assert sorted(files_state(tmp_path)) == ["iaastest-seed.iso"]
    assert "hostname: after" in _seed.read_seed(path.read_bytes())["user-data"]
    assert not run("cloudinit_seed", new).changed


# --- a network's live update killed between the persistent and the live change -----------


def test_network_killed_between_persistent_and_live_change_converges(lab_conn):
    tag = uuid.uuid4().hex[:6]
    name = "iaastest-intr-net-%s" % tag
    args = dict(
        name=name,
        mode="isolated",
        bridge="iaasti%s" % tag,
        autostart=False,
        ipv4=dict(address="192.168.197.1", prefix=24, dhcp=dict(start="192.168.197.100", end="192.168.197.150")),
    )
    host = dict(mac="52:54:00:19:70:10", ip="192.168.197.20", name="intr-host")
    entry = "ip='192.168.197.20'"
    with_host = dict(args, ipv4=dict(args["ipv4"], dhcp=dict(args["ipv4"]["dhcp"], hosts=[host])))
    try:
        run("kvm_network", args)
        killed_at("kvm_network:defined", "kvm_network", with_host)
        net = lab_conn.networkLookupByName(name)
        assert entry in net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
        assert entry not in net.XMLDesc(0)  # the running network does not have it yet

        again = run("kvm_network", with_host)
        assert again.changed and again["actions"] == ["updated live: ipv4.dhcp.hosts"], again["actions"]
        assert entry in net.XMLDesc(0)
        assert not run("kvm_network", with_host).changed
    finally:
        cleanup.clean(lab_conn, prefix=name)


def test_the_kill_hook_is_inert_without_its_variable(tmp_path):
    assert KILL_AT not in os.environ
    path = Path(tmp_path) / "iaastest-inert.iso"
    assert run("cloudinit_seed", dict(path=str(path), hostname="inert", meta_data={})).changed
