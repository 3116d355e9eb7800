# -*- coding: utf-8 -*-
"""playbooks/site.yml over SSH on every hypervisor of the fleet.

The fleet stage ran it once before these tests (the first run, which started
libvirtd on each host through the hypervisor role's no-systemd path and pushed
the base image from the controller); here it runs again and changes nothing,
and the image it pushed is checked in each host's private cache."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.fleet.fleetlab import REPO

pytestmark = [pytest.mark.fleet]

IMAGE_LINK = "/var/lib/iaas-kvm/images/debian-12-lab.qcow2"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_site_again_changes_nothing_on_any_hypervisor(fleet):
    run = fleet.playbook(REPO / "playbooks" / "site.yml")
    print("site.yml on %d hypervisors, no-change run: %.1f s" % (fleet.size, run.seconds))
    assert run.returncode == 0, run.tail()
    for host in fleet.hosts:
        assert run.ok(host), run.tail()
        assert run.changed(host) == 0, run.tail()


def test_the_image_from_the_controller_is_in_each_private_cache(fleet, fleet_conn):
    """image_source controller: the controller's file, byte for byte, in every host's own /var/cache/iaas-kvm."""
    cached = {}
    for host in fleet.hosts:
        out = fleet.ssh(host, "f=$(readlink -f %s); echo $f; stat -c '%%d:%%i' $f; sha256sum $f" % IMAGE_LINK).stdout
        path, ident, digest = out.split()[0], out.split()[1], out.split()[2]
        assert path.startswith("/var/cache/iaas-kvm/images/"), path
        cached[host] = (path, ident, digest)
    paths = {path for path, _ident, _digest in cached.values()}
    assert len(paths) == 1, cached
    (path,) = paths
    # The controller (this machine) holds the file at the same path: the one that was pushed.
    controller = os.stat(path)
    want = sha256(path)
    for host, (_path, ident, digest) in cached.items():
        assert digest == want, host
        # Another file than the controller's, and than the other hosts': a private copy.
        assert ident != "%d:%d" % (controller.st_dev, controller.st_ino), host
    assert len({ident for _path, ident, _digest in cached.values()}) == fleet.size
    for host in fleet.hosts:
        pool = fleet_conn(host).storagePoolLookupByName("default")
        pool.refresh(0)
        volume = pool.storageVolLookupByName("debian-12-lab.qcow2")
        assert volume.path() == "/var/lib/libvirt/images/debian-12-lab.qcow2"
