# -*- coding: utf-8 -*-
"""kvm_vm across a libvirtd restart between two tasks.

Restarting libvirtd closes every open libvirt connection, including the
session-wide ones of tests/integration, so this runs in a pytest session of its
own, after the integration tests:

    pytest -q -m lab tests/faults

It restarts libvirtd once, through the lab helper (scripts/lab.sh restart), as
briefly as the helper allows: other users of the lab share the daemon.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import libvirt
import pytest

from tests.integration.conftest import LAB_URI, REPO
from tests.integration.vmtools import Made, diskless, kvm_vm

pytestmark = [pytest.mark.lab]


def open_lab():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        return libvirt.open(LAB_URI)
    except libvirt.libvirtError as exc:
        pytest.fail("the lab's libvirtd does not answer at %s: %s" % (LAB_URI, exc), pytrace=False)


def test_libvirtd_restarted_between_two_tasks():
    conn = open_lab()
    made = Made(conn)
    name = made.domain("iaastest-restartd-%s" % uuid.uuid4().hex[:6])
    try:
        args = diskless(name, state="running")
        first = kvm_vm(args)
        assert first.changed and not first.failed, first.get("msg")
        conn.close()
        subprocess.run([str(REPO / "scripts" / "lab.sh"), "restart"], check=True, capture_output=True, timeout=120)
        # The next task opens a new connection and converges as if nothing happened.
        started = time.monotonic()
        again = kvm_vm(args)
        took = time.monotonic() - started
        assert not again.failed, again.get("msg")
        assert not again.changed, again["actions"]
        assert again["vm"]["state"] == "running" and again["vm"]["uuid"] == first["vm"]["uuid"]
        changed = kvm_vm(dict(args, memory=96))
        assert changed.changed and changed["restart_required"]
        print("\nfirst task after the restart: %.0f ms" % (took * 1000))
    finally:
        made.conn = open_lab()
        made.remove()
        made.conn.close()
