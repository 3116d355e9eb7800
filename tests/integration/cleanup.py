# -*- coding: utf-8 -*-
"""Remove every libvirt object a test created (names starting with the test prefix).

Run as a script before and after the integration stage; also used by the
fixtures. It never touches an object without the prefix.
"""

from __future__ import annotations

import contextlib
import os
import sys
import xml.etree.ElementTree as ET

import libvirt

PREFIX = os.environ.get("IAAS_KVM_TEST_PREFIX", "iaastest-")


def _quiet():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def remove_domain(dom):
    if dom.isActive():
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
    if dom.isPersistent():
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0)
        )
        try:
            dom.undefineFlags(flags)
        except libvirt.libvirtError:
            dom.undefine()


def clean(conn, prefix=PREFIX):
    removed = []
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            remove_domain(dom)
            removed.append("domain " + dom.name())
    for net in conn.listAllNetworks(0):
        if net.name().startswith(prefix):
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()
            removed.append("network " + net.name())
    for pool in conn.listAllStoragePools(0):
        if not pool.isActive():
            if pool.name().startswith(prefix):
                pool.undefine()
                removed.append("pool " + pool.name())
            continue
        pool.refresh(0)
        # Overlays before the volumes they are built on.
        vols = [v for v in pool.listAllVolumes(0) if v.name().startswith(prefix)]
        while vols:
            backing = set()
            for vol in vols:
                tree = ET.fromstring(vol.XMLDesc(0))
                path = tree.findtext("./backingStore/path")
                if path:
                    backing.add(path)
            leaves = [v for v in vols if v.path() not in backing] or vols
            for vol in leaves:
                vol.delete(0)
                removed.append("volume %s/%s" % (pool.name(), vol.name()))
            vols = [v for v in vols if v not in leaves]
        if pool.name().startswith(prefix):
            pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.delete(0)
            pool.undefine()
            removed.append("pool " + pool.name())
    return removed


def main():
    _quiet()
    uri = os.environ.get("IAAS_KVM_TEST_URI", "qemu:///system")
    conn = libvirt.open(uri)
    for line in clean(conn):
        print("removed " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
