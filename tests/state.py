# -*- coding: utf-8 -*-
"""Snapshots of what a module could change, for tests that prove a refusal
(or a check-mode run) changed nothing: compare a snapshot taken before with one
taken after.

``libvirt_state`` lists every domain, network, pool and volume of a connection
with both definitions (live and persistent), autostart and volume sizes;
``files_state`` lists a directory tree with each file's mode and SHA-256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import libvirt


def _xml(obj, flags=0):
    try:
        return obj.XMLDesc(flags)
    except libvirt.libvirtError as exc:
        if flags and exc.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            # libvirt's test driver keeps one definition of a network and knows no INACTIVE flag
            return "(this driver shows no separate persistent definition)"
        return "error: %s" % exc.get_error_message()


def _autostart(obj):
    try:
        return bool(obj.autostart())
    except libvirt.libvirtError:
        return None


def _domain(dom):
    active = bool(dom.isActive())
    return dict(
        active=active,
        state=dom.state()[0],
        persistent=bool(dom.isPersistent()),
        autostart=_autostart(dom),
        live=_xml(dom) if active else None,
        inactive=_xml(dom, libvirt.VIR_DOMAIN_XML_INACTIVE) if dom.isPersistent() else None,
    )


def _network(net):
    active = bool(net.isActive())
    return dict(
        active=active,
        persistent=bool(net.isPersistent()),
        autostart=_autostart(net),
        live=_xml(net) if active else None,
        inactive=_xml(net, libvirt.VIR_NETWORK_XML_INACTIVE) if net.isPersistent() else None,
    )


def _volumes(pool):
    if not pool.isActive():
        return {}
    pool.refresh(0)
    result = {}
    for vol in pool.listAllVolumes(0):
        kind, capacity, allocation = vol.info()
        result[vol.name()] = dict(path=vol.path(), type=kind, capacity=capacity, allocation=allocation)
    return result


def libvirt_state(conn, prefix=None):
    """Domains, networks, pools and their volumes of ``conn`` (only names that
    start with ``prefix`` when given; volumes of every pool are listed)."""

    def wanted(name):
        return prefix is None or name.startswith(prefix)

    return dict(
        domains={d.name(): _domain(d) for d in conn.listAllDomains(0) if wanted(d.name())},
        networks={n.name(): _network(n) for n in conn.listAllNetworks(0) if wanted(n.name())},
        pools={
            p.name(): dict(active=bool(p.isActive()), autostart=_autostart(p), xml=_xml(p), volumes=_volumes(p))
            for p in conn.listAllStoragePools(0)
            if wanted(p.name()) or p.isActive()
        },
    )


def files_state(root):
    """Every entry under ``root``: files with mode and SHA-256, links with
    their target, directories with their mode."""
    root = Path(root)
    result = {}
    if not root.exists():
        return result
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            if path.is_symlink():
                result[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                result[rel] = ("dir", oct(info.st_mode & 0o7777))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
                result[rel] = ("file", oct(info.st_mode & 0o7777), digest)
    return result
