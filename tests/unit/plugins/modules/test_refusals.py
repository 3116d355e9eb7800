# -*- coding: utf-8 -*-
"""A refusal changes nothing: the refusal paths of kvm_volume, kvm_pool and
cloudinit_seed, each in check mode and in a real run, against libvirt's test
driver and a temporary directory. Before and after, every domain, network,
pool and volume (both definitions, sizes) and every file are listed and
compared; the result says ``changed: false`` and what the task would do.

The refusals of kvm_network and kvm_vm have tables of their own in
test_kvm_network.py and test_kvm_vm.py; those of kvm_gpu_passthrough in
test_kvm_gpu_passthrough.py (against the fake sysfs).
"""

from __future__ import annotations

import uuid

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._storage import volume_xml
from tests.state import files_state, libvirt_state
from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver

GIB = 1024**3


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


@pytest.fixture
def pool(conn):
    """A pool with ``base.qcow2``, its linked clone ``clone.qcow2``, and
    ``used.qcow2``, the disk of a running test-driver domain."""
    name = "iaastest-ref-%s" % uuid.uuid4().hex[:6]
    made = conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>/%s</path></target></pool>" % (name, name), 0
    )
    made.create(0)
    base = made.createXML(volume_xml("base.qcow2", 2 * GIB, "qcow2"), 0)
    made.createXML(volume_xml("clone.qcow2", 2 * GIB, "qcow2", base.path(), "qcow2"), 0)
    used = made.createXML(volume_xml("used.qcow2", GIB, "qcow2"), 0)
    dom = conn.defineXML(
        "<domain type='test'><name>%s-vm</name><memory>65536</memory><os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'><source file='%s'/><target dev='vda'/></disk></devices>"
        "</domain>" % (name, used.path())
    )
    dom.create()
    yield made
    dom.destroy()
    dom.undefine()
    for vol in reversed(made.listAllVolumes(0)):
        vol.delete(0)
    made.destroy()
    made.undefine()


def volume_task(pool, **extra):
    return dict(dict(uri=TEST_URI, pool=pool.name(), name="clone.qcow2"), **extra)


# case id, module, task (from the pool and a temporary directory), message, would-be actions
CASES = [
    (
        "volume-shrink",
        "kvm_volume",
        lambda pool, tmp: volume_task(pool, backing_volume="base.qcow2", capacity="1G"),
        "capacity 1GiB would shrink it, which is never done",
        [],
    ),
    (
        "volume-delete-a-disk-in-use",
        "kvm_volume",
        lambda pool, tmp: volume_task(pool, name="used.qcow2", state="absent"),
        "is not deleted because VM(s) %(pool)s-vm use it; set force: true",
        ["deleted"],
    ),
    (
        "volume-delete-a-base-of-clones",
        "kvm_volume",
        lambda pool, tmp: volume_task(pool, name="base.qcow2", state="absent"),
        "is not deleted because volume(s) %(pool)s/clone.qcow2 are built on it; set force: true",
        ["deleted"],
    ),
    (
        "volume-other-backing",
        "kvm_volume",
        lambda pool, tmp: volume_task(pool, name="used.qcow2", backing_volume="base.qcow2"),
        "already exists with backing file none",
        [],
    ),
    (
        "volume-other-format",
        "kvm_volume",
        lambda pool, tmp: volume_task(pool, format="raw"),
        "is a qcow2 volume, not raw; formats are not converted",
        [],
    ),
    (
        "pool-remove-with-volumes",
        "kvm_pool",
        lambda pool, tmp: dict(uri=TEST_URI, name=pool.name(), state="absent"),
        "still holds 3 volume(s) (base.qcow2, clone.qcow2, used.qcow2); delete them first or set force: true",
        [
            "deleted volume clone.qcow2",
            "deleted volume base.qcow2",
            "deleted volume used.qcow2",
            "stopped",
            "removed directory /%(pool)s",
            "undefined",
        ],
    ),
    (
        "pool-move",
        "kvm_pool",
        lambda pool, tmp: dict(uri=TEST_URI, name=pool.name(), path="/srv/elsewhere"),
        "already exists at /%(pool)s, not /srv/elsewhere",
        [],
    ),
    (
        "seed-over-a-file-that-is-not-a-seed",
        "cloudinit_seed",
        lambda pool, tmp: dict(path=str(tmp / "iaastest-not-a-seed.iso"), hostname="web1"),
        "exists but is not a NoCloud seed",
        [],
    ),
    (
        "seed-over-a-volume-that-is-not-a-seed",
        "cloudinit_seed",
        lambda pool, tmp: dict(uri=TEST_URI, pool=pool.name(), name="used.qcow2", hostname="web1"),
        "is not a NoCloud seed",
        [],
    ),
]


@pytest.mark.parametrize("check_mode", [False, True], ids=["apply", "check"])
@pytest.mark.parametrize(("module", "make_task", "message", "actions"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_refusal_changes_nothing(run_module, conn, pool, tmp_path, module, make_task, message, actions, check_mode):
    (tmp_path / "iaastest-not-a-seed.iso").write_bytes(b"precious data, not an ISO image\n" * 64)
    before = (libvirt_state(conn), files_state(tmp_path))
    refused = run_module(module, make_task(pool, tmp_path), check_mode=check_mode, fails=True)
    names = dict(pool=pool.name())
    assert message % names in refused["msg"], refused["msg"]
    assert refused["changed"] is False
    assert refused["actions"] == [a % names for a in actions]
    assert (libvirt_state(conn), files_state(tmp_path)) == before
