# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage helpers shared by kvm_pool, kvm_volume, cloudinit_seed and kvm_vm:
pool and volume lookups, volume XML, and uploads through the libvirt stream
API (so they work against a remote hypervisor URI too)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import json
import os
import stat
import struct
import time

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    domain_disk_sources,
    domains_with_trees,
    error_code,
    error_message,
    etree,
    is_local_uri,
    is_not_found,
    libvirt,
    lookup,
    parse_xml,
)

# 1 MiB measured fastest for stream uploads (4 MiB took twice as long for 200 MiB).
UPLOAD_CHUNK = 1024 * 1024


def get_pool(conn, name, must_be_active=True):
    """The pool ``name`` (refreshed), or a one-sentence LibvirtModuleError."""
    pool = lookup(conn.storagePoolLookupByName, name)
    if pool is None:
        raise LibvirtModuleError("The storage pool %r does not exist." % name)
    if must_be_active:
        if not pool.isActive():
            raise LibvirtModuleError("The storage pool %r is not active." % name)
        try:
            refresh_pool(pool)
        except libvirt.libvirtError as exc:
            raise LibvirtModuleError("Cannot refresh storage pool %r: %s" % (name, error_message(exc))) from exc
    return pool


def refresh_pool(pool, attempts=50, delay=0.2):
    """Refresh ``pool``, so that files made outside libvirt show up; True when it was.

    libvirt refuses while a volume of the pool is being built or uploaded
    ("has asynchronous jobs running"), as happens when tasks run in parallel on
    one hypervisor. Then wait a little for the other job and, if it still runs,
    go on with libvirt's own list, which already holds every volume libvirt made.
    Other errors are raised.
    """
    for _attempt in range(attempts):
        try:
            pool.refresh(0)
            return True
        except libvirt.libvirtError as exc:
            if "asynchronous jobs" not in (exc.get_error_message() or ""):
                raise
            time.sleep(delay)
    return False


def pool_target_path(pool):
    return parse_xml(pool.XMLDesc(0)).findtext("./target/path")


def get_volume(pool, name):
    """The volume ``name`` of ``pool`` or None."""
    return lookup(pool.storageVolLookupByName, name)


def volume_facts(vol):
    """Path, capacity, allocation, format and backing chain of a volume."""
    tree = parse_xml(vol.XMLDesc(0))
    _vtype, capacity, allocation = vol.info()
    backing = []
    node = tree.find("./backingStore")
    if node is not None and node.findtext("./path"):
        backing.append(
            dict(
                path=node.findtext("./path"),
                format=node.find("./format").get("type") if node.find("./format") is not None else None,
            )
        )
    fmt_node = tree.find("./target/format")
    return dict(
        name=vol.name(),
        path=vol.path(),
        capacity=int(capacity),
        allocation=int(allocation),
        format=fmt_node.get("type") if fmt_node is not None else None,
        backing_store=backing,
    )


def volume_xml(name, capacity, fmt="qcow2", backing_path=None, backing_format=None, mode="0644"):
    """Build a <volume> definition with lxml."""
    vol = etree.Element("volume")
    etree.SubElement(vol, "name").text = name
    etree.SubElement(vol, "capacity", unit="bytes").text = str(int(capacity))
    etree.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = etree.SubElement(vol, "target")
    etree.SubElement(target, "format", type=fmt)
    perms = etree.SubElement(target, "permissions")
    etree.SubElement(perms, "mode").text = mode
    if backing_path:
        backing = etree.SubElement(vol, "backingStore")
        etree.SubElement(backing, "path").text = backing_path
        etree.SubElement(backing, "format", type=backing_format or "qcow2")
    return etree.tostring(vol, encoding="unicode")


def _timestamp(ns):
    """A file time in nanoseconds as libvirt writes it in a volume's <timestamps>."""
    seconds, fraction = divmod(ns, 10**9)
    return "%d.%09d" % (seconds, fraction) if fraction else "%d" % seconds


def local_volume_file(conn, pool, vol):
    """The path of ``vol`` when this process can write the volume's file itself:
    a volume of a directory pool of the libvirtd on this machine (a URI without
    a host), whose file here is the one libvirt describes (same size and
    modification and change times, to the nanosecond). None otherwise: then the
    stream API is the way in."""
    if not is_local_uri(conn.getURI()) or parse_xml(pool.XMLDesc(0)).get("type") != "dir":
        return None
    tree = parse_xml(vol.XMLDesc(0))
    path = tree.findtext("./target/path")
    stamps = tree.find("./target/timestamps")
    if not path or stamps is None:
        return None
    try:
        found = os.lstat(path)
    except OSError:
        return None
    same = (
        stat.S_ISREG(found.st_mode)
        and tree.findtext("./capacity") == str(found.st_size)
        and stamps.findtext("./mtime") == _timestamp(found.st_mtime_ns)
        and stamps.findtext("./ctime") == _timestamp(found.st_ctime_ns)
    )
    return path if same else None


def upload_stream(conn, vol, reader, length, offset=0):
    """Upload ``length`` bytes from ``reader`` (a callable returning up to n bytes)
    into ``vol`` through virStorageVolUpload. Aborts the stream on any error.

    With ``length=None`` everything ``reader`` returns until it returns ``b""``
    is uploaded (a source of unknown size); the number of bytes is returned."""
    stream = conn.newStream(0)
    vol.upload(stream, offset, length or 0, 0)
    sent_total = 0
    try:
        while length is None or sent_total < length:
            chunk = reader(UPLOAD_CHUNK if length is None else min(UPLOAD_CHUNK, length - sent_total))
            if not chunk:
                if length is None:
                    break
                raise LibvirtModuleError(
                    "The source ended after %d of %d bytes while uploading to %s." % (sent_total, length, vol.name())
                )
            sent = 0
            while sent < len(chunk):
                sent += stream.send(chunk[sent:])
            sent_total += len(chunk)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return sent_total


def upload_bytes(conn, pool, name, data, fmt="raw", progress=None):
    """Create (or overwrite) volume ``name`` in ``pool`` with exactly ``data``.

    Used for small payloads such as cloud-init seeds; returns the volume.
    ``progress()``, when given, is called after each chunk is sent.
    """
    vol = get_volume(pool, name)
    if vol is not None and vol.info()[1] != len(data):
        # A raw volume of another size is replaced; a QEMU that has it open keeps the old inode.
        vol.delete(0)
        vol = None
    if vol is None:
        vol = pool.createXML(volume_xml(name, len(data), fmt=fmt), 0)
    view = memoryview(data)
    position = [0]

    def reader(size):
        chunk = bytes(view[position[0] : position[0] + size])
        position[0] += len(chunk)
        if progress is not None and chunk:
            progress()
        return chunk

    upload_stream(conn, vol, reader, len(data))
    return vol


def download_stream(conn, vol, consume, length=0):
    """Pass a volume's content (its first ``length`` bytes, or all of it with
    0) to ``consume`` chunk by chunk through virStorageVolDownload."""
    stream = conn.newStream(0)
    vol.download(stream, 0, length, 0)
    try:
        while True:
            chunk = stream.recv(UPLOAD_CHUNK)
            if chunk in (-2, None) or not chunk:
                break
            consume(chunk)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def copy_volume_content(src_conn, src_vol, dest_conn, dest_vol):
    """Copy the bytes of ``src_vol`` (the file as it is: a qcow2 overlay stays an overlay)
    into ``dest_vol`` of another hypervisor, through both streams; return the bytes copied.
    ``dest_vol`` should be empty (a raw volume of size 0): upload writes over, not after."""
    upload = dest_conn.newStream(0)
    dest_vol.upload(upload, 0, 0, 0)
    copied = [0]

    def send(chunk):
        sent = 0
        while sent < len(chunk):
            sent += upload.send(chunk[sent:])
        copied[0] += len(chunk)

    try:
        download_stream(src_conn, src_vol, send)
        upload.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            upload.abort()
        raise
    return copied[0]


def download_bytes(conn, vol, limit=64 * 1024 * 1024):
    """Read a (small) volume's content through virStorageVolDownload."""
    length = vol.info()[1]
    if length > limit:
        raise LibvirtModuleError("The volume %s is larger than %d bytes." % (vol.name(), limit))
    parts = []
    download_stream(conn, vol, parts.append, length)
    return b"".join(parts)


def download_sha256(conn, vol):
    """SHA-256 (hex) of a volume's whole content, read through the stream API."""
    digest = hashlib.sha256()
    download_stream(conn, vol, digest.update)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------


def pool_facts(pool):
    """Name, type, path, state and space of a pool, as kvm_pool returns them."""
    tree = parse_xml(pool.XMLDesc(0))
    active = bool(pool.isActive())
    _state, capacity, allocation, available = pool.info()
    return dict(
        name=pool.name(),
        uuid=pool.UUIDString(),
        type=tree.get("type"),
        path=tree.findtext("./target/path"),
        active=active,
        persistent=bool(pool.isPersistent()),
        autostart=bool(pool.autostart()),
        capacity=int(capacity) if active else None,
        allocation=int(allocation) if active else None,
        available=int(available) if active else None,
        volume_count=pool.numOfVolumes() if active else None,
    )


def backing_path(vol):
    """The path of the file a volume is an overlay of, or None."""
    return parse_xml(vol.XMLDesc(0)).findtext("./backingStore/path") or None


def overlays_first(volumes):
    """``volumes`` ordered so that an overlay comes before the volume it is built on."""
    by_path = {vol.path(): vol for vol in volumes}
    parent = {path: backing_path(vol) for path, vol in by_path.items()}
    depth = {}

    def depth_of(path, seen=()):
        if path not in depth:
            base = parent.get(path)
            depth[path] = 0 if base not in by_path or base in seen else depth_of(base, (*seen, path)) + 1
        return depth[path]

    return [by_path[p] for p in sorted(by_path, key=lambda p: (-depth_of(p), p))]


# ---------------------------------------------------------------------------
# Volumes: backing chains, who builds on a volume, image headers
# ---------------------------------------------------------------------------


def backing_chain(conn, vol):
    """The files ``vol`` is built on, nearest first: path, format, and the
    volume and pool where the file is a volume of an active pool (else None)."""
    chain = []
    seen = {vol.path()}
    node = parse_xml(vol.XMLDesc(0)).find("./backingStore")
    while node is not None and node.findtext("./path"):
        path = node.findtext("./path")
        fmt = node.find("./format")
        base = lookup(conn.storageVolLookupByPath, path)
        chain.append(
            dict(
                path=path,
                format=fmt.get("type") if fmt is not None else None,
                volume=base.name() if base is not None else None,
                pool=base.storagePoolLookupByVolume().name() if base is not None else None,
            )
        )
        if base is None or path in seen:
            break
        seen.add(path)
        node = parse_xml(base.XMLDesc(0)).find("./backingStore")
    return chain


def _gone(exc):
    """True when a libvirt error says the object went away while it was read
    (another client removed a domain or volume, or stopped a pool)."""
    return is_not_found(exc) or error_code(exc) == getattr(libvirt, "VIR_ERR_OPERATION_INVALID", -1)


def volumes_backed_by(conn, path):
    """``pool/volume`` names of the volumes (in active pools) whose backing file is ``path``."""
    users = []
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        try:
            volumes = pool.listAllVolumes(0)
        except libvirt.libvirtError as exc:
            if not _gone(exc):
                raise
            continue
        for vol in volumes:
            try:
                if vol.path() != path and backing_path(vol) == path:
                    users.append("%s/%s" % (pool.name(), vol.name()))
            except libvirt.libvirtError as exc:
                if not _gone(exc):
                    raise
    return sorted(users)


def running_disk(conn, path, pool_name=None, volume_name=None):
    """``(domain, target dev)`` of a running domain with a disk on the volume, or ``(None, None)``."""
    for name, trees in domains_with_trees(conn, running_only=True, live_only=True):
        for disk in trees[0].findall("./devices/disk"):
            source, target = disk.find("./source"), disk.find("./target")
            if source is None or target is None:
                continue
            by_path = path in (source.get("file"), source.get("dev"))
            by_name = volume_name is not None and (source.get("pool"), source.get("volume")) == (pool_name, volume_name)
            if by_path or by_name:
                dom = lookup(conn.lookupByName, name)
                if dom is not None:
                    return dom, target.get("dev")
    return None, None


def disk_users(conn):
    """Who uses which disk, for many volumes at once: a dict from a disk's path,
    and from its ``(pool, volume)``, to the names of the domains (defined or
    running) with a disk on it."""
    users = {}
    for name, trees in domains_with_trees(conn, running_only=False, live_only=False):
        for tree in trees:
            for src_path, src_pool, src_volume in domain_disk_sources(tree):
                if src_path:
                    users.setdefault(src_path, set()).add(name)
                if src_pool and src_volume:
                    users.setdefault((src_pool, src_volume), set()).add(name)
    return users


# Magic numbers of the image formats QEMU would interpret (offset, bytes, format).
_IMAGE_MAGICS = (
    (0, b"QFI\xfb", "qcow2"),
    (0, b"QED\x00", "qed"),
    (0, b"KDMV", "vmdk"),
    (0, b"# Disk DescriptorFile", "vmdk"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"conectix", "vpc"),
    (0, b"LUKS\xba\xbe", "luks"),
    (0, b"WithoutFreeSpace", "parallels"),
    (0, b"WithouFreSpacExt", "parallels"),
    (0x40, b"\x7f\x10\xda\xbe", "vdi"),
)

# qcow2 incompatible feature bits that make an image unfit to import.
_QCOW2_CORRUPT = 1 << 1
_QCOW2_EXTERNAL_DATA_FILE = 1 << 2


def probe_image(head, length=None):
    """What the first bytes of an image say about it.

    Returns a dict: ``format`` (``qcow2``, ``raw`` or another image format
    QEMU knows), ``virtual_size`` (the disk size a guest sees: the qcow2 header's
    size, or ``length`` for raw), and ``problem``: None, or a sentence fragment
    saying why the image must not be imported as it is (a qcow2 image with a
    backing file or an external data file refers to other files of the host).
    """
    fmt = "raw"
    for offset, magic, name in _IMAGE_MAGICS:
        if head[offset : offset + len(magic)] == magic:
            fmt = name
            break
    info = dict(format=fmt, virtual_size=length if fmt == "raw" else None, problem=None)
    if fmt != "qcow2":
        return info
    if len(head) < 72:
        info["problem"] = "its qcow2 header is truncated"
        return info
    version, backing_offset = struct.unpack(">IQ", head[4:16])
    info["virtual_size"] = struct.unpack(">Q", head[24:32])[0]
    incompatible = struct.unpack(">Q", head[72:80])[0] if version >= 3 and len(head) >= 80 else 0
    if version < 2:
        info.update(format="qcow", problem="it is a QCOW version 1 image")
    elif backing_offset:
        info["problem"] = "it has a backing file (convert it to a standalone image with qemu-img convert)"
    elif incompatible & _QCOW2_EXTERNAL_DATA_FILE:
        info["problem"] = "it keeps its data in an external data file"
    elif incompatible & _QCOW2_CORRUPT:
        info["problem"] = "its header marks it as corrupt"
    return info


def format_family(fmt):
    """How QEMU reads a volume of pool format ``fmt``: ISO images and unknown
    content are read as raw."""
    return "raw" if fmt in (None, "", "raw", "iso", "none", "auto") else fmt


def volume_details(conn, vol):
    """volume_facts plus the pool's name and the whole backing chain."""
    facts = volume_facts(vol)
    facts.pop("backing_store", None)
    facts["pool"] = vol.storagePoolLookupByVolume().name()
    facts["backing_chain"] = backing_chain(conn, vol)
    return facts


# ---------------------------------------------------------------------------
# Bookkeeping volumes kept beside a volume in its pool: the import record (what
# it was imported from, written last) and the marker of a seed being written
# ---------------------------------------------------------------------------

IMPORT_RECORD_SUFFIX = ".iaas-import.json"
IMPORT_RECORD_LIMIT = 64 * 1024
WRITING_SUFFIX = ".iaas-writing"
# The record of a VM moving in (kvm_vm_migrate): the volumes made for it on the destination.
MIGRATING_SUFFIX = ".iaas-migrating"


def import_record_name(name):
    return name + IMPORT_RECORD_SUFFIX


def is_bookkeeping_volume(name):
    """True for an import record, a writing marker or a migration record (listings hide them)."""
    return name.endswith((IMPORT_RECORD_SUFFIX, WRITING_SUFFIX, MIGRATING_SUFFIX))


def read_import_record(conn, pool, name):
    """The import record of volume ``name`` (a dict), or None when it has none.

    A record that cannot be read back as JSON is returned as
    ``{"state": "unreadable"}``."""
    vol = get_volume(pool, import_record_name(name))
    if vol is None:
        return None
    try:
        record = json.loads(download_bytes(conn, vol, IMPORT_RECORD_LIMIT).decode("utf-8"))
    except (LibvirtModuleError, ValueError):
        return dict(state="unreadable")
    return record if isinstance(record, dict) else dict(state="unreadable")


def write_import_record(conn, pool, name, record):
    data = json.dumps(record, sort_keys=True, indent=1).encode("utf-8") + b"\n"
    upload_bytes(conn, pool, import_record_name(name), data)


def delete_import_record(pool, name):
    """Delete the record of volume ``name``; True when there was one."""
    vol = get_volume(pool, import_record_name(name))
    if vol is None:
        return False
    vol.delete(0)
    return True
