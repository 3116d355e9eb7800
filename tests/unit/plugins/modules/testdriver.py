# -*- coding: utf-8 -*-
"""libvirt's test driver for module tests: one shared in-memory hypervisor,
emptied of what a test made when the test ends."""

from __future__ import annotations

import contextlib

import libvirt

TEST_URI = "test:///default"
POOL = "default-pool"


@contextlib.contextmanager
def emptied_test_driver():
    """A connection to ``test:///default``; on exit, every domain but the driver's
    own ``test`` and every volume of its pool are removed (the driver's state
    outlives a closed connection while libvirt objects still refer to it)."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(TEST_URI)
    try:
        yield conn
    finally:
        for dom in conn.listAllDomains(0):
            if dom.name() != "test":
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        for vol in conn.storagePoolLookupByName(POOL).listAllVolumes(0):
            vol.delete(0)
        conn.close()
