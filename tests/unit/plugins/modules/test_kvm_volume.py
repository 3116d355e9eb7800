# -*- coding: utf-8 -*-
"""kvm_volume and kvm_volume_info through their real main(), against libvirt's
test driver (test:///default) for what it implements: blank volumes, linked
clones, refusals, deletion. The test driver has no stream upload and no
resize; imports and growing are tested against the lab
(tests/integration/test_storage.py). Sources that are refused before anything
is touched are tested here with real files."""

from __future__ import annotations

import subprocess
import uuid

import libvirt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError, parse_xml
from ansible_collections.iaas.kvm.plugins.module_utils._storage import volume_xml
from ansible_collections.iaas.kvm.plugins.modules.kvm_volume import parse_capacity
from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver

URI = TEST_URI
GIB = 1024**3


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


@pytest.fixture
def pool(conn):
    """A fresh pool holding ``base.qcow2`` (2 GiB) and ``seed.iso``; removed afterwards."""
    name = "iaastest-vol-%s" % uuid.uuid4().hex[:6]
    made = conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>/%s</path></target></pool>" % (name, name), 0
    )
    made.create(0)
    made.createXML(volume_xml("base.qcow2", 2 * GIB, "qcow2"), 0)
    made.createXML(volume_xml("seed.iso", 374784, "iso"), 0)
    domains = []
    yield made, domains
    for dom_name in domains:
        conn.lookupByName(dom_name).undefine()
    for vol in made.listAllVolumes(0):
        vol.delete(0)
    made.destroy()
    made.undefine()


def volumes(pool_obj):
    pool_obj.refresh(0)
    return sorted((v.name(), v.info()[1]) for v in pool_obj.listAllVolumes(0))


def args(pool_obj, **extra):
    result = dict(uri=URI, pool=pool_obj.name(), name="web1.qcow2")
    result.update(extra)
    return result


def define_domain(conn, pool_fixture, name, path):
    conn.defineXML(
        "<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'><source file='%s'/><target dev='vda'/></disk></devices>"
        "</domain>" % (name, path)
    )
    pool_fixture[1].append(name)


# --- capacity -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, fmt, expected",
    [
        ("20G", "qcow2", 20 * GIB),
        ("512MiB", "raw", 512 * 1024**2),
        ("2GiB", "qcow2", 2 * GIB),
        (1073741824, "raw", GIB),
        ("1000", "raw", 1000),
        (1000, "qcow2", 1024),
        ("1.5G", "qcow2", 1536 * 1024**2),
        (None, "qcow2", None),
    ],
)
def test_parse_capacity(value, fmt, expected):
    assert parse_capacity(value, fmt) == expected


@pytest.mark.parametrize("value", ["0", 0, "-1G", "12Q", "1e3", True, "0.5B"])
def test_parse_capacity_rejects(value):
    with pytest.raises(LibvirtModuleError) as err:
        parse_capacity(value, "qcow2")
    assert "capacity" in str(err.value)


@given(st.integers(min_value=1, max_value=2**50))
def test_qcow2_capacity_is_the_next_multiple_of_512(size):
    rounded = parse_capacity(size, "qcow2")
    assert rounded % 512 == 0
    assert size <= rounded < size + 512
    assert parse_capacity(size, "raw") == size


# --- blank volumes and linked clones ----------------------------------------------


def test_blank_volume_check_apply_apply_check(run_module, pool):
    pool_obj = pool[0]
    task = args(pool_obj, name="data.raw", format="raw", capacity="10G")
    before = volumes(pool_obj)
    check = run_module("kvm_volume", task, check_mode=True, diff=True)
    assert check.changed and check["actions"] == ["created 10GiB raw volume"]
    assert check["volume"]["capacity"] == 10 * GIB and check["volume"]["allocation"] is None
    assert check["volume"]["path"] == "/%s/data.raw" % pool_obj.name()
    assert check["diff"] == dict(before={}, after=dict(format="raw", capacity=10 * GIB, backing=None))
    assert volumes(pool_obj) == before

    applied = run_module("kvm_volume", task)
    assert applied.changed
    assert applied["volume"]["capacity"] == 10 * GIB and applied["volume"]["format"] == "raw"
    assert applied["volume"]["path"] == check["volume"]["path"]
    tree = parse_xml(pool_obj.storageVolLookupByName("data.raw").XMLDesc(0))
    assert tree.find("./target/format").get("type") == "raw"

    again = run_module("kvm_volume", task)
    assert not again.changed and again["actions"] == []
    assert not run_module("kvm_volume", task, check_mode=True).changed


def test_linked_clone_check_apply_apply_check(run_module, conn, pool):
    pool_obj = pool[0]
    base = pool_obj.storageVolLookupByName("base.qcow2")
    task = args(pool_obj, backing_volume="base.qcow2", capacity="20G")
    check = run_module("kvm_volume", task, check_mode=True)
    assert check.changed
    assert check["actions"] == ["created linked clone of %s/base.qcow2" % pool_obj.name()]
    assert check["volume"]["backing_chain"][0]["path"] == base.path()
    with pytest.raises(libvirt.libvirtError):
        pool_obj.storageVolLookupByName("web1.qcow2")

    applied = run_module("kvm_volume", task)
    assert applied.changed
    clone = pool_obj.storageVolLookupByName("web1.qcow2")
    tree = parse_xml(clone.XMLDesc(0))
    assert tree.findtext("./backingStore/path") == base.path()
    assert tree.find("./backingStore/format").get("type") == "qcow2"
    assert applied["volume"]["capacity"] == 20 * GIB
    assert applied["volume"]["backing_chain"] == [
        dict(path=base.path(), format="qcow2", volume="base.qcow2", pool=pool_obj.name())
    ]
    assert not run_module("kvm_volume", task).changed
    assert not run_module("kvm_volume", task, check_mode=True).changed
    # capacity may be left out later; it is not a change
    assert not run_module("kvm_volume", args(pool_obj, backing_volume="base.qcow2")).changed


def test_clone_defaults_to_the_base_capacity_and_may_not_be_smaller(run_module, pool):
    pool_obj = pool[0]
    smaller = run_module("kvm_volume", args(pool_obj, backing_volume="base.qcow2", capacity="1G"), fails=True)
    assert smaller.failed and "smaller than the capacity of the backing volume base.qcow2 (2GiB)" in smaller["msg"]
    made = run_module("kvm_volume", args(pool_obj, backing_volume="base.qcow2"))
    assert made["volume"]["capacity"] == 2 * GIB


def test_clone_of_a_base_in_another_pool(run_module, conn, pool):
    pool_obj = pool[0]
    task = dict(uri=URI, pool="default-pool", name="iaastest-x.qcow2")
    task.update(backing_volume="base.qcow2", backing_pool=pool_obj.name())
    try:
        made = run_module("kvm_volume", task)
        assert made.changed
        assert made["volume"]["backing_chain"][0]["pool"] == pool_obj.name()
        in_use = run_module("kvm_volume", args(pool_obj, name="base.qcow2", state="absent"), fails=True)
        assert in_use.failed and "default-pool/iaastest-x.qcow2 are built on it" in in_use["msg"]
    finally:
        run_module("kvm_volume", dict(task, state="absent"))


def test_existing_volume_with_another_backing_is_an_error(run_module, pool):
    pool_obj = pool[0]
    pool_obj.createXML(volume_xml("other.qcow2", 2 * GIB), 0)
    run_module("kvm_volume", args(pool_obj, backing_volume="other.qcow2"))
    before = volumes(pool_obj)
    result = run_module("kvm_volume", args(pool_obj, backing_volume="base.qcow2"), fails=True)
    assert result.failed and "already exists with backing file" in result["msg"]
    assert "not replaced" in result["msg"]
    plain = run_module("kvm_volume", args(pool_obj, name="base.qcow2", backing_volume="other.qcow2"), fails=True)
    assert plain.failed and "with backing file none" in plain["msg"]
    assert volumes(pool_obj) == before


def test_shrink_is_refused_and_changes_nothing(run_module, pool):
    pool_obj = pool[0]
    run_module("kvm_volume", args(pool_obj, capacity="4G"))
    for check_mode in (True, False):
        result = run_module("kvm_volume", args(pool_obj, capacity="3G"), check_mode=check_mode, fails=True)
        assert result.failed and not result.changed
        assert "capacity of 4GiB; capacity 3GiB would shrink it" in result["msg"]
    assert pool_obj.storageVolLookupByName("web1.qcow2").info()[1] == 4 * GIB


def test_grow_is_predicted_in_check_mode(run_module, pool):
    pool_obj = pool[0]
    run_module("kvm_volume", args(pool_obj, capacity="4G"))
    check = run_module("kvm_volume", args(pool_obj, capacity="6G"), check_mode=True, diff=True)
    assert check.changed and check["actions"] == ["grown to 6GiB"]
    assert check["volume"]["capacity"] == 6 * GIB
    assert check["diff"]["before"]["capacity"] == 4 * GIB and check["diff"]["after"]["capacity"] == 6 * GIB
    assert pool_obj.storageVolLookupByName("web1.qcow2").info()[1] == 4 * GIB


def test_existing_volume_of_another_format_is_an_error(run_module, pool):
    pool_obj = pool[0]
    result = run_module("kvm_volume", args(pool_obj, name="base.qcow2", format="raw"), fails=True)
    assert result.failed and "is a qcow2 volume, not raw; formats are not converted" in result["msg"]


def test_capacity_is_needed_for_a_new_blank_volume(run_module, pool):
    result = run_module("kvm_volume", args(pool[0]), fails=True)
    assert result.failed and "capacity is needed to create it" in result["msg"]


# --- bad inputs: one clear sentence, nothing touched --------------------------------


def bad_inputs(tmp_path):
    raw_file = tmp_path / "disk.raw"
    raw_file.write_bytes(b"\0" * 65536)
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(tmp_path / "b.qcow2"), "1G"], check=True, capture_output=True
    )
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", "-b", str(tmp_path / "b.qcow2"), "-F", "qcow2", str(overlay)],
        check=True,
        capture_output=True,
    )
    return [
        (dict(pool="iaastest-no-such-pool", capacity="1G"), "The storage pool 'iaastest-no-such-pool' does not exist."),
        (dict(backing_volume="missing.qcow2"), "The backing volume missing.qcow2 does not exist"),
        (dict(backing_volume="seed.iso"), "is a iso volume; a linked clone needs a qcow2 or raw base"),
        (dict(backing_volume="base.qcow2", format="raw"), "format must be qcow2"),
        (dict(capacity="0"), "capacity must be larger than 0"),
        (dict(capacity="-1G"), "is not a size"),
        (dict(capacity="12Q"), "unknown unit 'Q'"),
        (dict(name="../etc/passwd", capacity="1G"), "must not contain path separators or '..'"),
        (dict(name="web1.qcow2\n", capacity="1G"), "may hold only"),
        (dict(source="http://127.0.0.1:9/x.qcow2"), "needs checksum: sha256:"),
        (dict(source="http://127.0.0.1:9/x.qcow2", checksum="md5:abc"), "checksum must be 'sha256:'"),
        (
            dict(source="ftp://127.0.0.1/x.qcow2", checksum="sha256:" + "0" * 64),
            "absolute path on the hypervisor or an http",
        ),
        (dict(source="relative/x.qcow2"), "absolute path"),
        (dict(source=str(tmp_path / "missing.qcow2")), "No such file or directory"),
        (dict(source=str(tmp_path)), "is not a regular file"),
        (dict(source=str(raw_file)), "is a raw image (by its header), not qcow2"),
        (dict(source=str(raw_file), format="raw", capacity="1K"), "capacity 1KiB is smaller than the virtual size"),
        (dict(source=str(overlay)), "it has a backing file"),
        (dict(source=str(raw_file), backing_volume="base.qcow2"), "mutually exclusive"),
        (dict(backing_pool="x", capacity="1G"), "backing_pool"),
    ]


def test_bad_inputs_touch_nothing(run_module, pool, tmp_path):
    pool_obj = pool[0]
    for extra, message in bad_inputs(tmp_path):
        before = volumes(pool_obj)
        task = args(pool_obj)
        task.update(extra)
        for check_mode in (True, False):
            result = run_module("kvm_volume", task, check_mode=check_mode, fails=True)
            assert result.failed, extra
            assert message in result["msg"], (extra, result["msg"])
            assert not result.changed
        assert volumes(pool_obj) == before, extra


def test_import_in_check_mode_reads_the_header_only(run_module, pool, tmp_path):
    pool_obj = pool[0]
    image = tmp_path / "img.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(image), "3G"], check=True, capture_output=True)
    check = run_module("kvm_volume", args(pool_obj, source=str(image), capacity="5G"), check_mode=True, diff=True)
    assert check.changed
    assert check["actions"] == ["imported %s" % image, "grown to 5GiB"]
    assert check["volume"]["capacity"] == 5 * GIB and check["volume"]["format"] == "qcow2"
    assert check["diff"]["after"]["source"] == str(image)
    with pytest.raises(libvirt.libvirtError):
        pool_obj.storageVolLookupByName("web1.qcow2")


# --- absent -------------------------------------------------------------------------


def test_absent_refuses_a_volume_a_defined_vm_uses(run_module, conn, pool):
    pool_obj = pool[0]
    run_module("kvm_volume", args(pool_obj, backing_volume="base.qcow2"))
    clone = pool_obj.storageVolLookupByName("web1.qcow2")
    vm = "iaastest-vm-%s" % uuid.uuid4().hex[:6]
    define_domain(conn, pool, vm, clone.path())
    for check_mode in (True, False):
        refused = run_module("kvm_volume", args(pool_obj, state="absent"), check_mode=check_mode, fails=True)
        assert refused.failed and "VM(s) %s use it" % vm in refused["msg"] and "force: true" in refused["msg"]
    base_refused = run_module("kvm_volume", args(pool_obj, name="base.qcow2", state="absent"), fails=True)
    assert base_refused.failed and "%s/web1.qcow2 are built on it" % pool_obj.name() in base_refused["msg"]
    assert sorted(v.name() for v in pool_obj.listAllVolumes(0)) == ["base.qcow2", "seed.iso", "web1.qcow2"]

    check = run_module("kvm_volume", args(pool_obj, state="absent", force=True), check_mode=True, diff=True)
    assert check.changed and check["diff"]["before"]["name"] == "web1.qcow2" and check["diff"]["after"] == {}
    assert pool_obj.storageVolLookupByName("web1.qcow2")
    forced = run_module("kvm_volume", args(pool_obj, state="absent", force=True))
    assert forced.changed and forced["volume"] == {}
    with pytest.raises(libvirt.libvirtError):
        pool_obj.storageVolLookupByName("web1.qcow2")
    for check_mode in (False, True):
        twice = run_module("kvm_volume", args(pool_obj, state="absent"), check_mode=check_mode)
        assert not twice.changed and not twice.failed


def test_absent_in_a_missing_pool_is_ok(run_module):
    result = run_module("kvm_volume", dict(uri=URI, pool="iaastest-nothing", name="x.qcow2", state="absent"))
    assert not result.failed and not result.changed


# --- kvm_volume_info -----------------------------------------------------------------


def test_volume_info(run_module, conn, pool):
    pool_obj = pool[0]
    run_module("kvm_volume", args(pool_obj, backing_volume="base.qcow2", capacity="8G"))
    clone = pool_obj.storageVolLookupByName("web1.qcow2")
    vm = "iaastest-vm-%s" % uuid.uuid4().hex[:6]
    define_domain(conn, pool, vm, clone.path())
    info = run_module("kvm_volume_info", dict(uri=URI, pool=pool_obj.name()))
    assert not info.changed
    by_name = {v["name"]: v for v in info["volumes"]}
    assert sorted(by_name) == ["base.qcow2", "seed.iso", "web1.qcow2"]
    assert by_name["web1.qcow2"]["used_by"] == [vm]
    assert by_name["web1.qcow2"]["capacity"] == 8 * GIB
    assert by_name["web1.qcow2"]["backing_chain"][0]["volume"] == "base.qcow2"
    assert by_name["base.qcow2"]["used_by"] == []
    assert by_name["seed.iso"]["format"] == "iso"
    one = run_module("kvm_volume_info", dict(uri=URI, pool=pool_obj.name(), name=["base.qcow2", "nope"]))
    assert [v["name"] for v in one["volumes"]] == ["base.qcow2"]
    missing = run_module("kvm_volume_info", dict(uri=URI, pool="iaastest-nope"), fails=True)
    assert missing.failed and missing["msg"] == "The storage pool 'iaastest-nope' does not exist."
