# -*- coding: utf-8 -*-
"""kvm_pool, kvm_volume and kvm_volume_info against the lab's real libvirtd.

Everything happens in a pool of this module's own (``iaastest-stor-…``, made
with kvm_pool in a temporary directory), which is removed with all its volumes
at the end. One guest boots, from a linked clone of the imported base image,
to show that the guest writes to the overlay and the base stays byte-identical,
and that a running guest's disk grows through the domain. URL imports download
from ``python3 -m http.server`` bound to 127.0.0.1 inside the lab namespace, so
those module runs happen inside the namespace too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._storage import upload_bytes, write_import_record
from tests.conftest import run_module
from tests.integration.conftest import LAB_NETWORK
from tests.integration.guests import Guest, domain_xml, make_seed_iso
from tests.integration.labmodule import lab_http_server, run_module_in_lab

pytestmark = [pytest.mark.lab]

GIB = 1024**3
MIB = 1024**2


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(4 * MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def qemu_chain(path):
    """``qemu-img info --backing-chain -U`` of ``path`` as a list of dicts."""
    out = subprocess.run(
        ["qemu-img", "info", "--backing-chain", "-U", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def checked_runs(module, args):
    """Check mode, apply, apply again, check mode again: the four results."""
    return [run_module(module, args, check_mode=check, diff=True) for check in (True, False, False, True)]


def assert_converged(runs):
    for result in runs:
        assert not result.failed, result.get("msg")
    assert [r.changed for r in runs] == [True, True, False, False]
    assert runs[0]["actions"] == runs[1]["actions"]
    assert runs[2]["actions"] == [] and runs[3]["actions"] == []


class Store(SimpleNamespace):
    def args(self, name, **extra):
        result = dict(pool=self.name, name=name)
        result.update(extra)
        return result

    def state(self):
        """The pool's volumes (name, capacity, allocation) and the files in its directory."""
        self.pool.refresh(0)
        volumes = sorted((v.name(), v.info()[1], v.info()[2]) for v in self.pool.listAllVolumes(0))
        return volumes, sorted(os.listdir(self.path))

    def volume(self, name):
        self.pool.refresh(0)
        return self.pool.storageVolLookupByName(name)


@pytest.fixture(scope="module")
def store(lab_conn):
    """This module's pool, made with kvm_pool (check, apply, apply, check)."""
    parent = tempfile.mkdtemp(prefix="iaastest-storage-")
    os.chmod(parent, 0o711)  # noqa: S103 - QEMU (user libvirt-qemu) must reach the pool's files
    name = "iaastest-stor-%s" % uuid.uuid4().hex[:6]
    path = os.path.join(parent, "pool")
    try:
        runs = checked_runs("kvm_pool", dict(name=name, path=path))
        pool = lab_conn.storagePoolLookupByName(name)
        yield Store(name=name, path=path, runs=runs, pool=pool, conn=lab_conn)
    finally:
        run_module("kvm_pool", dict(name=name, state="absent", force=True))
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def base(store, base_image):
    """The lab's base image imported from its file (check, apply, apply, check)."""
    runs = checked_runs("kvm_volume", store.args("iaastest-base.qcow2", source=str(base_image)))
    return SimpleNamespace(runs=runs, name="iaastest-base.qcow2", vol=store.volume("iaastest-base.qcow2"))


@pytest.fixture(scope="module")
def clone(store, base):
    """A 4 GiB linked clone of the 2 GiB base (check, apply, apply, check)."""
    task = store.args("iaastest-clone.qcow2", backing_volume=base.name, capacity="4G")
    runs = checked_runs("kvm_volume", task)
    return SimpleNamespace(runs=runs, task=task, name="iaastest-clone.qcow2", vol=store.volume("iaastest-clone.qcow2"))


# --- kvm_pool ------------------------------------------------------------------------


def test_pool_is_created_by_libvirt_with_mode_0711(store):
    assert_converged(store.runs)
    assert store.runs[1]["actions"] == ["defined", "started", "autostart on"]
    st = os.stat(store.path)
    assert st.st_uid == 0 and oct(st.st_mode & 0o7777) == "0o711"
    assert store.pool.isActive() and store.pool.autostart()
    assert store.runs[2]["pool"]["path"] == store.path
    assert store.runs[2]["pool"]["volume_count"] == 0


def test_pool_absent_refuses_volumes_unless_force(lab_conn):
    parent = tempfile.mkdtemp(prefix="iaastest-storage-")
    name = "iaastest-stor-%s" % uuid.uuid4().hex[:6]
    task = dict(name=name, path=os.path.join(parent, "p"))
    try:
        run_module("kvm_pool", task)
        run_module("kvm_volume", dict(pool=name, name="iaastest-a.raw", format="raw", capacity="1M"))
        refused = run_module("kvm_pool", dict(task, state="absent"), fails=True)
        assert refused.failed and "still holds 1 volume(s) (iaastest-a.raw)" in refused["msg"]
        assert os.listdir(task["path"]) == ["iaastest-a.raw"]
        assert lab_conn.storagePoolLookupByName(name).isActive()
        removed = run_module("kvm_pool", dict(task, state="absent", force=True))
        assert removed.changed and removed["deleted_volumes"] == ["iaastest-a.raw"]
        assert not os.path.exists(task["path"])
        with pytest.raises(libvirt.libvirtError):
            lab_conn.storagePoolLookupByName(name)
        assert not run_module("kvm_pool", dict(task, state="absent")).changed
    finally:
        run_module("kvm_pool", dict(task, state="absent", force=True))
        shutil.rmtree(parent, ignore_errors=True)


# --- imports -------------------------------------------------------------------------


def test_import_of_a_file_is_a_byte_copy_and_recorded(store, base, base_image):
    assert_converged(base.runs)
    assert base.runs[1]["actions"] == ["imported %s" % base_image]
    digest = sha256_of(base_image)
    assert sha256_of(base.vol.path()) == digest
    facts = base.runs[2]["volume"]
    assert facts["format"] == "qcow2" and facts["backing_chain"] == []
    assert facts["capacity"] == qemu_chain(base_image)[0]["virtual-size"]
    assert facts["import"]["sha256"] == digest and facts["import"]["state"] == "complete"
    assert facts["import"]["size"] == base_image.stat().st_size
    # the record is a volume beside it; kvm_volume_info shows it as the volume's import
    info = run_module("kvm_volume_info", dict(pool=store.name, name=[base.name]))
    assert info["volumes"][0]["import"] == facts["import"]
    listed = run_module("kvm_volume_info", dict(pool=store.name))
    assert not any(v["name"].endswith(".iaas-import.json") for v in listed["volumes"])


def test_import_with_checksum_reads_nothing_and_changes_nothing(store, base, base_image):
    inode = os.stat(base.vol.path()).st_ino
    task = store.args(base.name, source=str(base_image), checksum="sha256:" + sha256_of(base_image))
    for check_mode in (True, False):
        assert not run_module("kvm_volume", task, check_mode=check_mode).changed
    other = run_module("kvm_volume", dict(task, checksum="sha256:" + "0" * 64), fails=True)
    assert other.failed and "holds other content than" in other["msg"] and "force: true" in other["msg"]
    assert os.stat(base.vol.path()).st_ino == inode
    assert sha256_of(base.vol.path()) == sha256_of(base_image)


def test_a_copy_made_by_other_means_is_adopted_without_a_new_upload(store, base_image):
    name = "iaastest-copy.qcow2"
    target = os.path.join(store.path, name)
    shutil.copyfile(base_image, target)
    inode = os.stat(target).st_ino
    runs = checked_runs("kvm_volume", store.args(name, source=str(base_image)))
    assert_converged(runs)
    assert runs[1]["actions"] == ["recorded the import of %s (the volume already holds it)" % base_image]
    assert os.stat(target).st_ino == inode  # the same file, not imported again
    assert runs[2]["volume"]["import"]["sha256"] == sha256_of(base_image)
    assert run_module("kvm_volume", store.args(name, state="absent")).changed
    assert name + ".iaas-import.json" not in os.listdir(store.path)


def test_other_content_is_refused_unless_force_and_an_interrupted_import_is_redone(store, tmp_path):
    first, second = tmp_path / "first.raw", tmp_path / "second.raw"
    first.write_bytes(os.urandom(MIB))
    second.write_bytes(os.urandom(2 * MIB))
    name = "iaastest-reimport.raw"
    run_module("kvm_volume", store.args(name, source=str(first), format="raw"))
    before = store.state()
    refused = run_module("kvm_volume", store.args(name, source=str(second), format="raw"), fails=True)
    assert refused.failed and "holds other content than %s" % second in refused["msg"]
    assert store.state() == before
    forced = run_module("kvm_volume", store.args(name, source=str(second), format="raw", force=True))
    assert forced.changed and forced["actions"] == ["deleted the previous content of %s" % name, "imported %s" % second]
    assert sha256_of(os.path.join(store.path, name)) == sha256_of(second)
    assert forced["volume"]["capacity"] == 2 * MIB
    # a record left by an import that was cut short: the next run imports again
    write_import_record(store.conn, store.pool, name, dict(state="importing", source=str(second)))
    redone = run_module("kvm_volume", store.args(name, source=str(second), format="raw"))
    assert redone.changed and "imported %s" % second in redone["actions"]
    assert redone["volume"]["import"]["state"] == "complete"
    assert not run_module("kvm_volume", store.args(name, source=str(second), format="raw")).changed
    run_module("kvm_volume", store.args(name, state="absent"))


def test_import_from_a_url_inside_the_lab_namespace(store, base_image):
    digest = sha256_of(base_image)
    name = "iaastest-url.qcow2"
    with lab_http_server(base_image.parent) as url:
        task = store.args(name, source="%s/%s" % (url, base_image.name), checksum="sha256:" + digest)
        check = run_module_in_lab("kvm_volume", task, check_mode=True)
        assert check["changed"] and not check.get("failed"), check.get("msg")
        applied = run_module_in_lab("kvm_volume", task)
        assert applied["changed"] and not applied.get("failed"), applied.get("msg")
    assert sha256_of(os.path.join(store.path, name)) == digest
    assert applied["volume"]["import"]["source"] == task["source"]
    # the server is gone: the record alone says the volume is up to date
    for check_mode in (False, True):
        again = run_module_in_lab("kvm_volume", task, check_mode=check_mode)
        assert not again["changed"] and not again.get("failed"), again.get("msg")
    run_module("kvm_volume", store.args(name, state="absent"))


# --- linked clones, resize, deletion ---------------------------------------------------


def test_linked_clone_is_an_overlay_on_the_base(store, base, clone):
    assert_converged(clone.runs)
    assert clone.runs[1]["actions"] == ["created linked clone of %s/%s" % (store.name, base.name)]
    chain = qemu_chain(clone.vol.path())
    assert [image["filename"] for image in chain] == [clone.vol.path(), base.vol.path()]
    assert chain[0]["format"] == "qcow2" and chain[0]["backing-filename"] == base.vol.path()
    assert chain[0]["virtual-size"] == 4 * GIB
    facts = clone.runs[2]["volume"]
    assert facts["capacity"] == 4 * GIB and facts["allocation"] < 4 * MIB  # nothing copied
    assert facts["backing_chain"] == [dict(path=base.vol.path(), format="qcow2", volume=base.name, pool=store.name)]


def test_grow_and_shrink_refused(store, base):
    name = "iaastest-grow.qcow2"
    run_module("kvm_volume", store.args(name, backing_volume=base.name, capacity="3G"))
    grow = checked_runs("kvm_volume", store.args(name, backing_volume=base.name, capacity="5G"))
    assert_converged(grow)
    assert grow[1]["actions"] == ["grown to 5GiB"]
    assert grow[0]["volume"]["capacity"] == 5 * GIB
    assert qemu_chain(os.path.join(store.path, name))[0]["virtual-size"] == 5 * GIB
    before = store.state()
    for check_mode in (True, False):
        shrink = run_module(
            "kvm_volume", store.args(name, backing_volume=base.name, capacity="4G"), check_mode=check_mode, fails=True
        )
        assert shrink.failed and not shrink.changed
        assert shrink["msg"] == (
            "The volume %s has a capacity of 5GiB; capacity 4GiB would shrink it, which is never done." % name
        )
    assert store.state() == before
    run_module("kvm_volume", store.args(name, state="absent"))


def test_delete_is_refused_while_a_defined_vm_uses_the_volume(store, base, lab_conn):
    name = "iaastest-used.qcow2"
    vm = "iaastest-stvm-%s" % uuid.uuid4().hex[:6]
    made = run_module("kvm_volume", store.args(name, backing_volume=base.name))
    path = made["volume"]["path"]
    dom = lab_conn.defineXML(domain_xml(vm, path, path, LAB_NETWORK))  # defined, never started
    try:
        before = store.state()
        for check_mode in (True, False):
            refused = run_module("kvm_volume", store.args(name, state="absent"), check_mode=check_mode, fails=True)
            assert refused.failed and not refused.changed
            assert "VM(s) %s use it" % vm in refused["msg"]
        base_refused = run_module("kvm_volume", store.args(base.name, state="absent"), fails=True)
        assert base_refused.failed and "%s/%s" % (store.name, name) in base_refused["msg"]
        assert store.state() == before
    finally:
        dom.undefine()
    assert run_module("kvm_volume", store.args(name, state="absent")).changed
    for check_mode in (False, True):
        twice = run_module("kvm_volume", store.args(name, state="absent"), check_mode=check_mode)
        assert not twice.failed and not twice.changed


# --- bad inputs ---------------------------------------------------------------------------


def test_bad_inputs_are_one_sentence_and_touch_nothing(store, base, tmp_path):
    seed = upload_bytes(
        store.conn, store.pool, "iaastest-seed.iso", make_seed_iso("#cloud-config\n", "instance-id: x\n")
    )
    assert seed.storagePoolLookupByVolume().name() == store.name
    payload = tmp_path / "payload.raw"
    payload.write_bytes(os.urandom(4 * MIB))
    cases = [
        (dict(pool="iaastest-no-such-pool", capacity="1G"), "The storage pool 'iaastest-no-such-pool' does not exist."),
        (dict(backing_volume="iaastest-missing.qcow2"), "The backing volume iaastest-missing.qcow2 does not exist"),
        (dict(backing_volume="iaastest-seed.iso"), "is a iso volume; a linked clone needs a qcow2 or raw base"),
        (dict(capacity="0"), "capacity must be larger than 0"),
        (dict(capacity="-1G"), "capacity '-1G' is not a size"),
        (dict(capacity="12Q"), "capacity '12Q' has an unknown unit 'Q'"),
        (dict(name="../etc/passwd", capacity="1G"), "must not contain path separators or '..'"),
        (dict(source="http://127.0.0.1:9/x.raw", format="raw"), "needs checksum: sha256:"),
    ]
    before = store.state()
    for extra, message in cases:
        task = store.args("iaastest-bad.qcow2")
        task.update(extra)
        result = run_module("kvm_volume", task, fails=True)
        assert result.failed and message in result["msg"], (extra, result.get("msg"))
        assert result["msg"].count(". ") == 0 and result["msg"].endswith("."), result["msg"]
        assert store.state() == before, extra
    with lab_http_server(tmp_path) as url:
        wrong = store.args("iaastest-bad.raw", format="raw", source=url + "/payload.raw", checksum="sha256:" + "0" * 64)
        result = run_module_in_lab("kvm_volume", wrong, fails=True)
        assert (
            result.get("failed") and "The SHA-256 of %s/payload.raw is %s" % (url, sha256_of(payload)) in result["msg"]
        )
        assert "nothing was imported" in result["msg"]
        assert store.state() == before  # no volume, no record, no partial file
        missing = run_module_in_lab("kvm_volume", dict(wrong, source=url + "/missing.raw"), fails=True)
        assert missing.get("failed") and "Cannot download %s/missing.raw" % url in missing["msg"]
        assert store.state() == before
    seed.delete(0)


# --- one guest: writes go to the overlay; a running guest's disk grows ------------------


@pytest.fixture(scope="module")
def guest(store, base, clone, lab_conn, lab_network, ssh_key):
    """A guest booted from the linked clone; the base's SHA-256 is taken before it boots."""
    name = "iaastest-stor-%s" % uuid.uuid4().hex[:6]
    before = dict(base_sha=sha256_of(base.vol.path()), clone_allocation=clone.vol.info()[2])
    cloud_config = "#cloud-config\nssh_authorized_keys:\n  - %s\n" % ssh_key.public
    seed_data = make_seed_iso(cloud_config, "instance-id: %s-%d\nlocal-hostname: %s\n" % (name, time.time(), name))
    seed = upload_bytes(lab_conn, store.pool, name + "-seed.iso", seed_data)
    vm = Guest(conn=lab_conn, name=name, key=ssh_key, volumes=[seed])
    vm.console_log = os.path.join("/var/log/libvirt/qemu", name + "-console.log")
    try:
        xml = domain_xml(name, clone.vol.path(), seed.path(), lab_network.name(), console_log=vm.console_log)
        lab_conn.defineXML(xml).create()
        vm.wait_for_ssh()
        yield SimpleNamespace(vm=vm, before=before)
    finally:
        vm.destroy()


@pytest.mark.guest
def test_guest_writes_to_the_overlay_and_the_base_stays_byte_identical(guest, base, clone):
    vm = guest.vm
    vm.ssh("sudo dd if=/dev/urandom of=/var/tmp/iaastest.bin bs=1M count=64 status=none && sync")
    root_size = int(vm.ssh("df -B1 --output=size / | tail -1").stdout.strip())
    assert root_size > 2 * GIB  # cloud-init grew the file system past the 2 GiB base
    clone.vol = clone.vol.storagePoolLookupByVolume().storageVolLookupByName(clone.name)
    assert clone.vol.info()[2] >= guest.before["clone_allocation"] + 64 * MIB
    assert sha256_of(base.vol.path()) == guest.before["base_sha"]
    assert qemu_chain(clone.vol.path())[1]["filename"] == base.vol.path()


@pytest.mark.guest
def test_a_running_guests_disk_grows_through_the_domain(guest, store, clone):
    vm = guest.vm
    task = dict(clone.task, capacity="6G")
    check = run_module("kvm_volume", task, check_mode=True)
    assert check.changed and check["volume"]["capacity"] == 6 * GIB
    grown = run_module("kvm_volume", task)
    assert grown.changed, grown.get("msg")
    assert grown["actions"] == ["grown to 6GiB through running VM %s (disk vda)" % vm.name]
    deadline = time.monotonic() + 60
    size = None
    while time.monotonic() < deadline:
        size = int(vm.ssh("lsblk -bndo SIZE /dev/vda").stdout.strip())
        if size == 6 * GIB:
            break
        time.sleep(2)
    assert size == 6 * GIB
    assert grown["volume"]["capacity"] == 6 * GIB
    assert not run_module("kvm_volume", task).changed
    shrink = run_module("kvm_volume", dict(task, capacity="5G"), fails=True)
    assert shrink.failed and "would shrink it" in shrink["msg"]
    in_use = run_module("kvm_volume", store.args(clone.name, state="absent"), fails=True)
    assert in_use.failed and "VM(s) %s use it" % vm.name in in_use["msg"]


def _sparse_image(path):
    """8 MiB of random data, a 40 MiB hole, 3 MiB of random data."""
    with open(path, "wb") as handle:
        handle.write(os.urandom(8 * MIB))
        handle.seek(48 * MIB)
        handle.write(os.urandom(3 * MIB))


def test_a_file_goes_into_a_local_directory_pool_through_the_kernel(store, tmp_path, monkeypatch):
    from ansible_collections.iaas.kvm.plugins.module_utils import _source

    source = tmp_path / "sparse.raw"
    _sparse_image(source)
    copied = []
    real_copy = _source.Source.copy_into
    monkeypatch.setattr(
        _source.Source, "copy_into", lambda self, *a, **k: copied.append(self.location) or real_copy(self, *a, **k)
    )
    name = "iaastest-kernel.raw"
    runs = checked_runs("kvm_volume", store.args(name, source=str(source), format="raw"))
    assert_converged(runs)
    assert copied == [str(source)]  # this lab's pool is a directory of this machine
    target = os.path.join(store.path, name)
    assert sha256_of(target) == sha256_of(source) == runs[1]["volume"]["import"]["sha256"]
    assert runs[1]["volume"]["import"]["state"] == "complete"
    assert runs[1]["volume"]["capacity"] == 51 * MIB
    # the hole stays a hole: only the data was written
    assert os.stat(target).st_blocks * 512 <= 12 * MIB
    run_module("kvm_volume", store.args(name, state="absent"))


def test_a_file_goes_through_the_stream_api_where_the_pool_is_not_local(store, tmp_path, monkeypatch):
    """As against a remote hypervisor: the volume's file is not one this process can write."""
    from ansible_collections.iaas.kvm.plugins.modules import kvm_volume

    source = tmp_path / "streamed.raw"
    _sparse_image(source)
    monkeypatch.setattr(kvm_volume, "local_volume_file", lambda conn, pool, vol: None)
    name = "iaastest-streamed.raw"
    runs = checked_runs("kvm_volume", store.args(name, source=str(source), format="raw"))
    assert_converged(runs)
    assert sha256_of(os.path.join(store.path, name)) == sha256_of(source) == runs[1]["volume"]["import"]["sha256"]
    assert runs[1]["volume"]["import"]["state"] == "complete"
    wrong = store.args("iaastest-streamed-bad.raw", source=str(source), format="raw", checksum="sha256:" + "0" * 64)
    before = store.state()
    failed = run_module("kvm_volume", wrong, fails=True)
    assert failed.failed and "nothing was imported" in failed["msg"]
    assert store.state() == before  # no volume, no record left behind
    run_module("kvm_volume", store.args(name, state="absent"))


def test_local_volume_file_is_the_file_libvirt_describes(store):
    """Where this process sees another file at the volume's path (another mount
    namespace, as on another host), the fast path is not taken."""
    from ansible_collections.iaas.kvm.plugins.module_utils._storage import local_volume_file

    name = "iaastest-local.raw"
    run_module("kvm_volume", store.args(name, format="raw", capacity="1M"))
    vol = store.volume(name)
    assert local_volume_file(store.conn, store.pool, vol) == os.path.join(store.path, name)
    probe = (
        "import libvirt; from ansible_collections.iaas.kvm.plugins.module_utils._storage import local_volume_file; "
        "c = libvirt.open('qemu:///system'); p = c.storagePoolLookupByName(%r); "
        "print(local_volume_file(c, p, p.storageVolLookupByName(%r)))" % (store.name, name)
    )
    # a private mount namespace with a file of the same name and size over the pool's directory
    script = 'mount -t tmpfs iaastest "$1" && truncate -s 1M "$1/%s" && exec "$2" -c "$3"' % name
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", store.path, sys.executable, probe],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "collections")),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    run_module("kvm_volume", store.args(name, state="absent"))
