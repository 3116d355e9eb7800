# -*- coding: utf-8 -*-
"""The lab smoke test: a real guest from an overlay of the base image and a
NoCloud seed, reached over SSH from inside the lab namespace."""

from __future__ import annotations

import subprocess
import time

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.guest]


def test_guest_boots_from_overlay_and_seed(lab_conn, lab_network, base_volume, guest_factory, unique_name):
    name = unique_name("smoke")
    started = time.monotonic()
    guest = guest_factory(name, network=lab_network.name())
    ip = guest.wait_for_ip()
    lease_s = time.monotonic() - started
    guest.wait_for_ssh()
    ssh_s = time.monotonic() - started

    status = guest.ssh("cloud-init status --wait", timeout=300)
    assert "status: done" in status.stdout, status.stdout + status.stderr
    assert guest.ssh("hostname").stdout.strip() == name
    # growpart + resize2fs grew the 2 GiB image's root filesystem to the 4 GiB overlay.
    root_size = int(guest.ssh("df -B1 --output=size / | tail -n 1").stdout)
    assert root_size > 3.5 * 1024**3, root_size
    # The image carries the guest agent (kvm_vm's wait_for_ip asks it for addresses).
    assert guest.ssh("sudo systemctl is-active qemu-guest-agent").stdout.strip() == "active"
    # The overlay is a linked clone: its backing file is the base volume.
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", guest.volumes[0].path()], check=True, capture_output=True, text=True
    ).stdout
    assert base_volume.path() in info
    # The bridge of the lab network lives only inside the lab namespace.
    bridge = lab_network.bridgeName()
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True, check=False).returncode != 0
    print("\nsmoke: %s at %s, lease after %.0fs, SSH after %.0fs" % (name, ip, lease_s, ssh_s))
