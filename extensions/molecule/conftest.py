# -*- coding: utf-8 -*-
"""Fixtures of the Molecule scenarios' testinfra verifiers.

Molecule runs the verifier on the hypervisor (this machine) with the scenario's
environment (``MOLECULE_EPHEMERAL_DIRECTORY``, ``MOLECULE_SCENARIO_DIRECTORY``).
The hypervisor is inspected through libvirt-python and testinfra's local
backend; guests through testinfra's SSH backend with the ssh_config that the
converge wrote (its ProxyCommand runs ``nc`` inside the lab's network namespace,
so no packet to a guest leaves the namespace). A guest is always addressed by
the IPv4 address that libvirt leased to it, never by what the converge
recorded, so a test that reaches the guest also proves the lease.
"""

from __future__ import annotations

import contextlib
import os

import libvirt
import pytest
import testinfra
from labhosts import EPHEMERAL, leased_ip, load_scenario, ssh_hosts

URI = os.environ.get("IAAS_KVM_TEST_URI", "qemu:///system")
SSH_CONFIG = EPHEMERAL / "ssh_config"
PUBLIC_KEY = EPHEMERAL / "id_ed25519.pub"


@pytest.fixture(scope="session")
def scenario():
    return load_scenario()


@pytest.fixture(scope="session")
def conn():
    """A read-only connection to the lab's libvirtd."""
    with contextlib.closing(libvirt.openReadOnly(URI)) as connection:
        yield connection


@pytest.fixture(scope="session")
def hypervisor():
    return testinfra.get_host("local://")


@pytest.fixture(scope="session")
def public_key():
    return PUBLIC_KEY.read_text().strip()


@pytest.fixture(scope="session")
def guest(conn, tmp_path_factory):
    """``guest(name)``: a testinfra host for the guest, over SSH to its leased address.

    Each guest gets one SSH master connection (its own control socket in a
    directory of this session), closed when the session ends.
    """
    assert SSH_CONFIG.is_file(), "the converge writes %s" % SSH_CONFIG
    with ssh_hosts(SSH_CONFIG, tmp_path_factory.mktemp("ssh"), address=lambda name: leased_ip(conn, name)) as get:
        yield get
