# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage helpers shared by kvm_pool, kvm_volume, cloudinit_seed and kvm_vm:
pool and volume lookups, volume XML, and uploads through the libvirt stream
API (so they work against a remote hypervisor URI too)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import re

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    error_message,
    etree,
    libvirt,
    lookup,
    parse_xml,
)

# Volume and pool names: a file name in the pool's directory, nothing more.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,254}$")

UPLOAD_CHUNK = 4 * 1024 * 1024


def validate_name(name, what="volume name"):
    """Raise LibvirtModuleError unless ``name`` is a safe pool or volume name."""
    if not isinstance(name, str) or not name:
        raise LibvirtModuleError("The %s must not be empty." % what)
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split("."):
        raise LibvirtModuleError("The %s %r must not contain path separators or '..'." % (what, name))
    if ".." in name:
        raise LibvirtModuleError("The %s %r must not contain '..'." % (what, name))
    if not _NAME_RE.match(name):
        raise LibvirtModuleError(
            "The %s %r may hold only letters, digits and _ . + : @ - (up to 255 characters, "
            "not starting with a dot or dash)." % (what, name)
        )
    return name


def get_pool(conn, name, must_be_active=True):
    """The pool ``name`` (refreshed), or a one-sentence LibvirtModuleError."""
    pool = lookup(conn.storagePoolLookupByName, name)
    if pool is None:
        raise LibvirtModuleError("The storage pool %r does not exist." % name)
    if must_be_active:
        if not pool.isActive():
            raise LibvirtModuleError("The storage pool %r is not active." % name)
        try:
            pool.refresh(0)
        except libvirt.libvirtError as exc:
            raise LibvirtModuleError("Cannot refresh storage pool %r: %s" % (name, error_message(exc))) from exc
    return pool


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


def upload_stream(conn, vol, reader, length, offset=0):
    """Upload ``length`` bytes from ``reader`` (a callable returning up to n bytes)
    into ``vol`` through virStorageVolUpload. Aborts the stream on any error."""
    stream = conn.newStream(0)
    vol.upload(stream, offset, length, 0)
    try:
        remaining = length
        while remaining > 0:
            chunk = reader(min(UPLOAD_CHUNK, remaining))
            if not chunk:
                raise LibvirtModuleError(
                    "The source ended after %d of %d bytes while uploading to %s."
                    % (length - remaining, length, vol.name())
                )
            sent = 0
            while sent < len(chunk):
                sent += stream.send(chunk[sent:])
            remaining -= len(chunk)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def upload_bytes(conn, pool, name, data, fmt="raw"):
    """Create (or overwrite) volume ``name`` in ``pool`` with exactly ``data``.

    Used for small payloads such as cloud-init seeds; returns the volume.
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
        return chunk

    upload_stream(conn, vol, reader, len(data))
    return vol


def download_bytes(conn, vol, limit=64 * 1024 * 1024):
    """Read a (small) volume's content through virStorageVolDownload."""
    length = vol.info()[1]
    if length > limit:
        raise LibvirtModuleError("The volume %s is larger than %d bytes." % (vol.name(), limit))
    stream = conn.newStream(0)
    vol.download(stream, 0, length, 0)
    parts = []
    try:
        while True:
            chunk = stream.recv(UPLOAD_CHUNK)
            if chunk in (-2, None) or not chunk:
                break
            parts.append(chunk)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return b"".join(parts)


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
