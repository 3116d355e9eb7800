# -*- coding: utf-8 -*-
"""Fixtures of the tests against the lab's fleet: simulated hypervisors hv1...hvN,
each in its own namespaces, reached over SSH (see tests/fleet/fleetlab.py).

The tests use the fleet that is running and never start their own: the
``fleet`` stage of scripts/test.sh starts it once (``scripts/lab.sh fleet start
3``) and runs ``playbooks/site.yml -i inventories/lab-fleet`` on it first. When
the fleet is missing, a host is down or its libvirtd does not answer, the tests
fail and say what to run (they never skip).

Fixtures for any fleet test (inventory, live migration, ...):

- ``fleet``: the :class:`~tests.fleet.fleetlab.Fleet` (``hosts``, ``inventory``,
  ``key``, ``ssh_config``, ``ssh(host, cmd)``, ``console(host, *argv)``,
  ``libvirt_uri(host)``, ``ssh_uri(host)``, ``playbook(...)``);
- ``fleet_conn(host)``: a libvirt connection to a host's libvirtd, kept for the session;
- ``vm_inventory(vms)``: an inventory file of VM hosts (group ``vms``) in the test's tmp_path.
"""

from __future__ import annotations

import contextlib

import libvirt
import pytest

from tests.fleet.fleetlab import Fleet, FleetError, write_vm_inventory


@pytest.fixture(scope="session")
def fleet():
    try:
        running = Fleet()
    except FleetError as exc:
        pytest.fail(str(exc), pytrace=False)
    rc, status = running.status()
    if rc != 0:
        pytest.fail(
            "the lab fleet is not up (scripts/lab.sh fleet start %d):\n%s" % (running.size, status), pytrace=False
        )
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    for host in running.hosts:
        try:
            with contextlib.closing(libvirt.openReadOnly(running.libvirt_uri(host))) as conn:
                conn.getHostname()
        except libvirt.libvirtError as exc:
            pytest.fail(
                "libvirtd of %s does not answer (%s): run ansible-playbook -i inventories/lab-fleet playbooks/site.yml"
                % (host, exc.get_error_message()),
                pytrace=False,
            )
    return running


@pytest.fixture(scope="session")
def fleet_conn(fleet):
    """``fleet_conn(host)``: a read-write libvirt connection to ``host``, one per host for the session.
    A test that restarts a host's libvirtd calls ``fleet_conn.reset(host)`` afterwards."""
    conns = {}

    class Connections:
        def __call__(self, host):
            if host not in conns:
                conns[host] = fleet.connect(host)
            return conns[host]

        def reset(self, host):
            conn = conns.pop(host, None)
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()

    yield Connections()
    for conn in conns.values():
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


@pytest.fixture
def vm_inventory(tmp_path):
    """``vm_inventory(vms, name='vms.yml')``: write an inventory of VM hosts and return its path."""

    def write(vms, name="vms.yml"):
        return write_vm_inventory(tmp_path / name, vms)

    return write
