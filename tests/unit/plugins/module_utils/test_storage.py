# -*- coding: utf-8 -*-
"""module_utils/_storage.py: image headers read from files that qemu-img made,
volume XML defined in libvirt's test driver and read back, ordering of
overlays, and names."""

from __future__ import annotations

import struct
import subprocess
import uuid

import libvirt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import is_local_uri, parse_xml
from ansible_collections.iaas.kvm.plugins.module_utils._storage import (
    backing_chain,
    format_family,
    local_volume_file,
    overlays_first,
    probe_image,
    volume_details,
    volume_xml,
    volumes_backed_by,
)

URI = "test:///default"
GIB = 1024**3


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def head_of(path, size=4096):
    with open(path, "rb") as handle:
        return handle.read(size)


@pytest.mark.parametrize(
    "fmt, options, expected",
    [
        ("qcow2", [], "qcow2"),
        ("qcow2", ["-o", "compat=0.10"], "qcow2"),
        ("raw", [], "raw"),
        ("vmdk", [], "vmdk"),
        ("vdi", [], "vdi"),
        ("vhdx", [], "vhdx"),
        ("vpc", [], "vpc"),
        ("qed", [], "qed"),
    ],
)
def test_probe_image_reads_what_qemu_img_wrote(tmp_path, fmt, options, expected):
    path = tmp_path / ("disk." + fmt)
    qemu_img("create", "-f", fmt, *options, str(path), "1G")
    info = probe_image(head_of(path), path.stat().st_size)
    assert info["format"] == expected
    if expected == "qcow2":
        assert info["virtual_size"] == GIB
        assert info["problem"] is None
    if expected == "raw":
        assert info["virtual_size"] == GIB


def test_probe_image_refuses_a_qcow2_with_a_backing_file(tmp_path):
    base, overlay = tmp_path / "base.qcow2", tmp_path / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", str(base), "1G")
    qemu_img("create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay), "2G")
    info = probe_image(head_of(overlay))
    assert info["format"] == "qcow2"
    assert info["virtual_size"] == 2 * GIB
    assert "backing file" in info["problem"]


def test_probe_image_refuses_a_qcow2_with_an_external_data_file(tmp_path):
    image = tmp_path / "ext.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "data_file=%s" % (tmp_path / "ext.data"), str(image), "1G")
    assert "external data file" in probe_image(head_of(image))["problem"]


def test_probe_image_refuses_a_corrupt_or_truncated_qcow2():
    header = bytearray(b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, GIB) + bytes(104 - 32))
    struct.pack_into(">Q", header, 72, 1 << 1)
    assert "corrupt" in probe_image(bytes(header))["problem"]
    assert "truncated" in probe_image(b"QFI\xfb\x00\x00\x00\x03")["problem"]
    version1 = b"QFI\xfb" + struct.pack(">I", 1) + bytes(96)
    assert probe_image(version1)["format"] == "qcow"


def test_an_iso_image_is_raw(tmp_path):
    iso = tmp_path / "seed.iso"
    head = bytearray(0x9000)
    head[0x8001:0x8006] = b"CD001"
    iso.write_bytes(bytes(head))
    assert probe_image(bytes(head), len(head))["format"] == "raw"
    assert format_family("iso") == "raw"
    assert format_family(None) == "raw"
    assert format_family("qcow2") == "qcow2"


@given(st.binary(min_size=0, max_size=256))
def test_probe_image_never_fails_on_any_bytes(data):
    info = probe_image(data, len(data))
    assert info["format"] in ("raw", "qcow2", "qcow", "qed", "vmdk", "vhdx", "vpc", "luks", "parallels", "vdi")
    if info["format"] == "raw":
        assert info["virtual_size"] == len(data)


# --- against libvirt's test driver ---------------------------------------------


@pytest.fixture
def pool():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    name = "iaastest-%s" % uuid.uuid4().hex[:6]
    xml = "<pool type='dir'><name>%s</name><target><path>/%s</path></target></pool>" % (name, name)
    made = conn.storagePoolDefineXML(xml, 0)
    made.create(0)
    yield made
    for vol in made.listAllVolumes(0):
        vol.delete(0)
    made.destroy()
    made.undefine()
    conn.close()


def test_volume_xml_round_trip_through_libvirt(pool):
    base = pool.createXML(volume_xml("base.qcow2", 2 * GIB, "qcow2", mode="0600"), 0)
    clone = pool.createXML(volume_xml("clone.qcow2", 4 * GIB, "qcow2", base.path(), "qcow2", mode="0600"), 0)
    tree = parse_xml(clone.XMLDesc(0))
    assert tree.findtext("./name") == "clone.qcow2"
    assert int(tree.findtext("./capacity")) == 4 * GIB
    assert tree.find("./target/format").get("type") == "qcow2"
    assert tree.findtext("./backingStore/path") == base.path()
    facts = volume_details(pool.connect(), clone)
    assert facts["pool"] == pool.name()
    assert facts["capacity"] == 4 * GIB
    assert facts["backing_chain"] == [dict(path=base.path(), format="qcow2", volume="base.qcow2", pool=pool.name())]


def test_backing_chain_follows_volumes_and_stops_at_a_foreign_file(pool):
    conn = pool.connect()
    base = pool.createXML(volume_xml("base.raw", GIB, "raw"), 0)
    mid = pool.createXML(volume_xml("mid.qcow2", GIB, "qcow2", base.path(), "raw"), 0)
    top = pool.createXML(volume_xml("top.qcow2", GIB, "qcow2", mid.path(), "qcow2"), 0)
    chain = backing_chain(conn, top)
    assert [link["volume"] for link in chain] == ["mid.qcow2", "base.raw"]
    assert [link["format"] for link in chain] == ["qcow2", "raw"]
    foreign = pool.createXML(volume_xml("foreign.qcow2", GIB, "qcow2", "/nowhere/x.qcow2", "qcow2"), 0)
    assert backing_chain(conn, foreign) == [dict(path="/nowhere/x.qcow2", format="qcow2", volume=None, pool=None)]
    assert volumes_backed_by(conn, base.path()) == ["%s/mid.qcow2" % pool.name()]
    assert volumes_backed_by(conn, mid.path()) == ["%s/top.qcow2" % pool.name()]
    assert volumes_backed_by(conn, top.path()) == []


def test_overlays_come_before_their_bases(pool):
    base = pool.createXML(volume_xml("a-base.qcow2", GIB), 0)
    mid = pool.createXML(volume_xml("m-mid.qcow2", GIB, "qcow2", base.path()), 0)
    pool.createXML(volume_xml("b-top.qcow2", GIB, "qcow2", mid.path()), 0)
    pool.createXML(volume_xml("z-alone.raw", GIB, "raw"), 0)
    order = [vol.name() for vol in overlays_first(pool.listAllVolumes(0))]
    assert order.index("b-top.qcow2") < order.index("m-mid.qcow2") < order.index("a-base.qcow2")
    assert sorted(order) == ["a-base.qcow2", "b-top.qcow2", "m-mid.qcow2", "z-alone.raw"]


@pytest.mark.parametrize(
    "uri, local",
    [
        ("qemu:///system", True),
        ("qemu+unix:///system?socket=/run/x/libvirt-sock", True),
        ("test:///default", True),
        ("qemu+ssh://root@hv1/system", False),
        ("qemu+ssh:///system", False),
        ("qemu+tcp://hv1/system", False),
        ("qemu://hv1/system", False),
    ],
)
def test_is_local_uri(uri, local):
    assert is_local_uri(uri) is local


def test_a_volume_of_the_test_driver_is_no_file_of_this_host():
    """test:///default's pool is a directory pool, but its volumes are not files here."""
    conn = libvirt.open("test:///default")
    try:
        pool = conn.storagePoolLookupByName("default-pool")
        vol = pool.createXML(volume_xml("iaastest-fast.raw", 1024, "raw"), 0)
        assert local_volume_file(conn, pool, vol) is None
    finally:
        conn.close()
