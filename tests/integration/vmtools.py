# -*- coding: utf-8 -*-
"""Helpers for the kvm_vm lab tests: disks and seeds made with plain
libvirt-python (so these tests do not depend on kvm_volume or
cloudinit_seed), the module run against the lab, and clean-up."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import libvirt

from tests.conftest import run_module
from tests.integration import cleanup
from tests.integration.conftest import DOMAIN_TYPE, LAB_URI

CONSOLE_DIR = Path("/var/log/libvirt/qemu")


def kvm_vm(args, check_mode=False, diff=False, fails=False):
    """Run iaas.kvm.kvm_vm against the lab."""
    return run_module("kvm_vm", dict(args, uri=LAB_URI), check_mode=check_mode, diff=diff, fails=fails)


class Made:
    """What a test made (domains, volumes, files), removed by ``remove()``."""

    def __init__(self, conn):
        self.conn = conn
        self.domains = []
        self.volumes = []
        self.files = []

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.remove()

    def domain(self, name):
        self.domains.append(name)
        return name

    def console(self, name):
        path = str(CONSOLE_DIR / ("%s-console.log" % name))
        self.files.append(path)
        return path

    def remove(self):
        for name in self.domains:
            with contextlib.suppress(libvirt.libvirtError):
                cleanup.remove_domain(self.conn.lookupByName(name))
        for vol in reversed(self.volumes):
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
        # libvirtd's own log of each domain's QEMU stays behind an undefine.
        for path in self.files + [str(CONSOLE_DIR / ("%s.log" % name)) for name in self.domains]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def lookup_domain(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None


def wait_inactive(dom, timeout=20):
    deadline = time.monotonic() + timeout
    while dom.isActive() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not dom.isActive()


def qemu_pid(name):
    return int(Path("/run/libvirt/qemu/%s.pid" % name).read_text().strip())


def diskless(name, **extra):
    """The arguments of a small diskless VM that boots to its firmware (it ignores ACPI)."""
    args = dict(name=name, memory=64, vcpus=1, domain_type=DOMAIN_TYPE)
    args.update(extra)
    return args
