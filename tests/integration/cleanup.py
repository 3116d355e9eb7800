# -*- coding: utf-8 -*-
"""Remove every libvirt object a test created (names starting with the test prefix).

The integration tests' sweep fixture runs it before and after the session
(IAAS_KVM_LAB_SWEEP=1), the VM benchmarks after their runs. It never touches
an object without the prefix.
"""

from __future__ import annotations

import contextlib
import os

import libvirt

from ansible_collections.iaas.kvm.plugins.module_utils._storage import overlays_first

PREFIX = os.environ.get("IAAS_KVM_TEST_PREFIX", "iaastest-")


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
        for vol in overlays_first([v for v in pool.listAllVolumes(0) if v.name().startswith(prefix)]):
            vol.delete(0)
            removed.append("volume %s/%s" % (pool.name(), vol.name()))
        if pool.name().startswith(prefix):
            pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.delete(0)
            pool.undefine()
            removed.append("pool " + pool.name())
    return removed
