# -*- coding: utf-8 -*-
"""Fixtures for tests against the lab: a real libvirtd inside the network
namespace ``iaas-lab`` and real QEMU guests booted from the lab's base image.

The lab is required: when libvirtd does not answer or the base image is
missing, the tests fail (they never skip).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import libvirt
import pytest

from tests.integration import cleanup

REPO = Path(__file__).resolve().parents[2]
LAB_NETNS = os.environ.get("IAAS_KVM_LAB_NETNS", "iaas-lab")
LAB_URI = os.environ.get("IAAS_KVM_TEST_URI", "qemu:///system")
BASE_IMAGE = Path(os.environ.get("IAAS_KVM_TEST_IMAGE", REPO / "images" / "debian-12-lab.qcow2"))
# The domain type that serves ordinary guests here (the hypervisor role's fact).
DOMAIN_TYPE = os.environ.get("IAAS_KVM_DOMAIN_TYPE", "qemu")
LAB_NETWORK = os.environ.get("IAAS_KVM_LAB_NETWORK", "default")
GUEST_USER = "debian"
BOOT_TIMEOUT = int(os.environ.get("IAAS_KVM_BOOT_TIMEOUT", "300"))
PREFIX = cleanup.PREFIX


def lab_run(command, check=True, timeout=60, **kwargs):
    """Run ``command`` (a list or a shell string) inside the lab namespace."""
    if isinstance(command, str):
        command = ["sh", "-c", command]
    return subprocess.run(
        ["ip", "netns", "exec", LAB_NETNS, *command],
        check=check,
        timeout=timeout,
        capture_output=True,
        text=True,
        **kwargs,
    )


class SSHKey:
    def __init__(self, directory: Path):
        self.private = directory / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "iaastest", "-f", str(self.private)],
            check=True,
        )
        self.public = self.private.read_text() and (directory / "id_ed25519.pub").read_text().strip()


def ssh_command(key: SSHKey, ip: str, command: str, user: str = GUEST_USER, connect_timeout: int = 5):
    return [
        "ssh",
        "-i",
        str(key.private),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=%d" % connect_timeout,
        "%s@%s" % (user, ip),
        command,
    ]


def guest_ssh(key: SSHKey, ip: str, command: str, user: str = GUEST_USER, check=True, timeout=120):
    """Run ``command`` in the guest over SSH from inside the lab namespace."""
    return lab_run(ssh_command(key, ip, command, user), check=check, timeout=timeout)


def wait_for_ssh(key: SSHKey, ip: str, user: str = GUEST_USER, timeout: int = BOOT_TIMEOUT):
    """Wait until ``true`` runs over SSH; return the seconds it took."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        last = lab_run(ssh_command(key, ip, "true", user), check=False, timeout=30)
        if last.returncode == 0:
            return time.monotonic() - start
        time.sleep(2)
    raise AssertionError("no SSH to %s@%s within %ds: %s" % (user, ip, timeout, last.stderr.strip() if last else ""))


def wait_for_lease(conn, domain_name: str, timeout: int = BOOT_TIMEOUT):
    """Wait for a DHCP lease of the domain on its network; return the IPv4 address."""
    start = time.monotonic()
    dom = conn.lookupByName(domain_name)
    while time.monotonic() - start < timeout:
        try:
            ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
        except libvirt.libvirtError:
            ifaces = {}
        for iface in ifaces.values():
            for addr in iface.get("addrs") or []:
                if addr["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                    return addr["addr"]
        if not dom.isActive():
            raise AssertionError("domain %s stopped while waiting for its lease" % domain_name)
        time.sleep(1)
    raise AssertionError("domain %s got no DHCP lease within %ds" % (domain_name, timeout))


@pytest.fixture(scope="session")
def lab_conn():
    """A connection to the lab's libvirtd; fails the test when the lab is down."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(LAB_URI)
    except libvirt.libvirtError as exc:
        pytest.fail(
            "the lab's libvirtd does not answer at %s (%s); start it with scripts/lab.sh start"
            % (LAB_URI, exc.get_error_message()),
            pytrace=False,
        )
    started = time.monotonic()
    conn.getCapabilities()
    if time.monotonic() - started > 5:
        pytest.fail(
            "libvirtd needed %.0fs to answer: /dev/kvm is probably not group kvm 0660 (see docs/lab.md)"
            % (time.monotonic() - started),
            pytrace=False,
        )
    res = subprocess.run(["ip", "netns", "pids", LAB_NETNS], capture_output=True, text=True, check=False)
    if res.returncode != 0 or not res.stdout.strip():
        pytest.fail("network namespace %s has no processes: libvirtd must run inside it" % LAB_NETNS, pytrace=False)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def lab_network(lab_conn):
    """The lab's NAT network (192.168.122.0/24), active, inside the namespace."""
    try:
        net = lab_conn.networkLookupByName(LAB_NETWORK)
    except libvirt.libvirtError:
        pytest.fail("the lab network %r is not defined; run the set-up" % LAB_NETWORK, pytrace=False)
    if not net.isActive():
        pytest.fail("the lab network %r is not active; run the set-up" % LAB_NETWORK, pytrace=False)
    bridge = net.bridgeName()
    root_ns = subprocess.run(["ip", "-br", "link", "show", bridge], capture_output=True, text=True, check=False)
    if root_ns.returncode == 0 and root_ns.stdout.strip():
        pytest.fail("bridge %s exists in the machine's own namespace" % bridge, pytrace=False)
    return net


@pytest.fixture(scope="session")
def default_pool(lab_conn):
    try:
        pool = lab_conn.storagePoolLookupByName("default")
    except libvirt.libvirtError:
        pytest.fail("the storage pool 'default' is not defined; run the set-up", pytrace=False)
    if not pool.isActive():
        pytest.fail("the storage pool 'default' is not active; run the set-up", pytrace=False)
    pool.refresh(0)
    return pool


@pytest.fixture(scope="session")
def base_image():
    """The lab's base image (a Debian 12 cloud image built by roles/image)."""
    if not BASE_IMAGE.exists():
        pytest.fail("base image %s is missing; run the set-up (scripts/setup.sh)" % BASE_IMAGE, pytrace=False)
    return BASE_IMAGE.resolve()


@pytest.fixture(scope="session")
def base_volume(lab_conn, default_pool, base_image):
    """The base image as volume ``iaastest-base.qcow2`` of pool ``default`` (shared, read-only)."""
    return ensure_base_volume(default_pool, base_image)


def ensure_base_volume(pool, image=BASE_IMAGE):
    """The volume ``iaastest-base.qcow2`` of ``pool``, copied from ``image`` when missing."""
    name = PREFIX + "base.qcow2"
    try:
        vol = pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        target = Path(default_pool_path(pool)) / name
        tmp = target.with_name(name + ".part")
        shutil.copyfile(image, tmp)
        os.chmod(tmp, 0o644)
        tmp.rename(target)
        pool.refresh(0)
        vol = pool.storageVolLookupByName(name)
    return vol


def default_pool_path(pool):
    from xml.etree import ElementTree as ET

    return ET.fromstring(pool.XMLDesc(0)).findtext("./target/path")


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory):
    return SSHKey(tmp_path_factory.mktemp("ssh"))


@pytest.fixture
def unique_name():
    """``unique_name('vm')`` gives ``iaastest-vm-1a2b3c``; everything made with it is cleaned up."""

    def make(kind: str) -> str:
        return "%s%s-%s" % (PREFIX, kind, uuid.uuid4().hex[:6])

    return make


@pytest.fixture(scope="session", autouse=True)
def sweep_lab_objects():
    """With IAAS_KVM_LAB_SWEEP=1 (the test pipeline sets it), remove every
    test object before and after the session: leftovers of an earlier run that
    was killed. Without it, each test removes only what it made itself."""
    if os.environ.get("IAAS_KVM_LAB_SWEEP") != "1":
        yield
        return
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(LAB_URI)
    except libvirt.libvirtError:
        yield
        return
    cleanup.clean(conn)
    yield
    cleanup.clean(conn)
    conn.close()


def shell_join(command):
    return " ".join(shlex.quote(c) for c in command)


@pytest.fixture
def guest_factory(lab_conn, base_volume, ssh_key):
    """``guest_factory(name, network=..., ...)`` boots a guest (see guests.boot_guest);
    every guest it made is removed when the test ends, also when it fails."""
    from tests.integration.guests import boot_guest

    made = []

    def make(name, **kwargs):
        guest = boot_guest(lab_conn, name, ssh_key, base_volume, **kwargs)
        made.append(guest)
        return guest

    yield make
    for guest in made:
        guest.destroy()
