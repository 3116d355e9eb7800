# -*- coding: utf-8 -*-
"""kvm_vm when things go wrong underneath it: the guest's QEMU process killed.
(libvirtd restarted between two tasks is tests/faults/test_vm_libvirtd_restart.py,
run in a session of its own.)"""

from __future__ import annotations

import os
import signal
import uuid

import libvirt
import pytest

from tests.integration.vmtools import Made, diskless, kvm_vm, qemu_pid, wait_inactive

pytestmark = [pytest.mark.lab]


@pytest.fixture
def made(lab_conn):
    with Made(lab_conn) as things:
        yield things


def test_killed_qemu_is_started_again_and_reported(lab_conn, made):
    name = made.domain("iaastest-killed-%s" % uuid.uuid4().hex[:6])
    args = diskless(name, state="running")
    assert kvm_vm(args)["actions"] == ["defined", "started"]
    dom = lab_conn.lookupByName(name)
    os.kill(qemu_pid(name), signal.SIGKILL)
    assert wait_inactive(dom), "libvirtd did not notice that QEMU died"
    assert dom.state()[1] == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
    result = kvm_vm(args)
    assert not result.failed, result.get("msg")
    assert result.changed and result["actions"] == ["started"]
    assert any("crashed or its QEMU process was killed; started it again" in str(w) for w in result["warnings"])
    assert dom.isActive()
    assert not kvm_vm(args).changed
