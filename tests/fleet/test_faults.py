# -*- coding: utf-8 -*-
"""A hypervisor that is down fails (or is unreachable) with a clear message
while the others converge; once it is back, a re-run converges it and changes
nothing on the others.

One diskless VM is declared per hypervisor (defined, not started). On the
second host sshd is stopped, on the third libvirtd is killed; playbooks/vms.yml
then converges the first host's VM only. The second host comes back with
``scripts/lab.sh fleet start``; the third is powered off first (all its
processes end, its namespaces and links stay, as between two CI runs), so the
same command boots it again from what is left, and playbooks/site.yml starts
its libvirtd. Then vms.yml converges the two missing VMs and changes nothing on
the first host."""

from __future__ import annotations

import subprocess

import pytest

from tests.fleet.fleetlab import LAB, REPO, remove_vms

pytestmark = [pytest.mark.fleet]

VMS = REPO / "playbooks" / "vms.yml"
SITE = REPO / "playbooks" / "site.yml"


# Started in a host's PID namespace with a private /run: "libvirtd" to a machine-wide process search.
DECOY_PID = "/var/lib/iaas-kvm/iaastest-decoy.pid"
DECOY = (
    "mkdir -p /var/lib/iaas-kvm/iaastest-decoy && cp /bin/sleep /var/lib/iaas-kvm/iaastest-decoy/libvirtd && "
    "setsid unshare --mount sh -c 'echo $$ > %s; mount -t tmpfs tmpfs /run; exec /var/lib/iaas-kvm/iaastest-decoy/libvirtd 600'"
    " </dev/null >/dev/null 2>&1 &" % DECOY_PID
)

REMOVE_DECOY = f"if [ -s {DECOY_PID} ]; then kill $(cat {DECOY_PID}) || true; fi; rm -rf {DECOY_PID} /var/lib/iaas-kvm/iaastest-decoy"


def vm_name(host):
    return "iaastest-ft-%s" % host


@pytest.fixture
def three_hosts(fleet, fleet_conn, vm_inventory):
    if fleet.size < 3:
        pytest.fail("the fault tests need a fleet of 3 hypervisors (scripts/lab.sh fleet start 3)", pytrace=False)
    healthy, no_ssh, no_libvirtd = fleet.hosts[:3]
    vms = {vm_name(h): dict(vm_host=h, vm_diskless=True, vm_state="present", vm_memory=64) for h in fleet.hosts[:3]}
    for host in fleet.hosts[:3]:
        remove_vms(fleet_conn(host), [vm_name(host)])
    yield healthy, no_ssh, no_libvirtd, vm_inventory(vms)
    # Whatever happened, leave every host up with its daemons (the next tests need them).
    subprocess.run([str(LAB), "fleet", "start", str(fleet.size)], check=True, capture_output=True, timeout=120)
    for host in fleet.hosts[:3]:
        fleet.ssh(host, REMOVE_DECOY, check=False)
        if fleet.ssh(host, "timeout 20 virsh -q -c qemu:///system version", check=False).returncode != 0:
            fleet.playbook(SITE, limit=host)
        fleet_conn.reset(host)
        remove_vms(fleet_conn(host), [vm_name(host)])


def test_a_host_down_fails_alone_and_converges_once_back(fleet, fleet_conn, three_hosts):
    healthy, no_ssh, no_libvirtd, inventory = three_hosts
    # The host's sshd and all its sessions (Ansible's persistent connections among them) end: the
    # processes named sshd in the host's own /proc (its PID namespace), by their pids.
    fleet.console(
        no_ssh, "sh", "-c", 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = sshd ] && kill "${p#/proc/}"; done; true'
    )
    fleet.console(no_libvirtd, "sh", "-c", "kill -KILL $(cat /run/libvirtd.pid)")
    fleet_conn.reset(no_libvirtd)

    broken = fleet.playbook(VMS, inventories=[inventory], extra_vars=dict(vms_file=""))
    print("vms.yml with %s unreachable and %s without libvirtd: %.1f s" % (no_ssh, no_libvirtd, broken.seconds))
    assert broken.returncode != 0
    # The healthy host and its VM converged.
    assert broken.ok(healthy) and broken.ok(vm_name(healthy)), broken.tail()
    assert broken.changed(vm_name(healthy)) == 1, broken.tail()
    assert fleet_conn(healthy).lookupByName(vm_name(healthy)).isPersistent()
    # The host without sshd is unreachable, and so is its VM (its tasks run there), saying why.
    assert broken.counts(no_ssh)["unreachable"] == 1, broken.tail()
    unreachable = [r for h, _d, kind, r in broken.failures() if h == no_ssh and kind == "UNREACHABLE"]
    assert unreachable and "Failed to connect to the host via ssh" in unreachable[0]["msg"], broken.tail()
    # Its VM is not converged, and says which hypervisor did not answer.
    assert broken.counts(vm_name(no_ssh))["failed"] == 1, broken.tail()
    waiting = [r for h, _d, kind, r in broken.failures() if h == vm_name(no_ssh) and kind == "FAILED"]
    assert waiting and waiting[0]["msg"].startswith(
        "The hypervisor %s of %s did not answer" % (no_ssh, vm_name(no_ssh))
    )
    # The host without libvirtd is reached; its VM's task fails with the module's sentence.
    assert broken.counts(no_libvirtd)["unreachable"] == 0, broken.tail()
    assert broken.counts(vm_name(no_libvirtd))["failed"] == 1, broken.tail()
    failed = [r for h, d, kind, r in broken.failures() if h == vm_name(no_libvirtd) and kind == "FAILED"]
    assert failed and failed[0]["msg"].startswith("Cannot connect to the hypervisor at qemu:///system: "), failed

    # Back: sshd again on one host; the other powered off and booted again from what is left.
    subprocess.run([str(LAB), "fleet", "stop", no_libvirtd], check=True, capture_output=True, timeout=60)
    started = subprocess.run(
        [str(LAB), "fleet", "start", str(fleet.size)], check=True, capture_output=True, text=True, timeout=120
    )
    assert "booted %s" % no_libvirtd in started.stderr and "started sshd of %s" % no_ssh in started.stderr
    # A process named libvirtd with a /run of its own (a container's daemon) runs on that host too:
    # it is not the host's libvirtd, which the hypervisor role must still start.
    fleet.console(no_libvirtd, "sh", "-c", DECOY)
    assert (
        fleet.ssh(no_libvirtd, "pgrep -x libvirtd").stdout.strip()
        == fleet.ssh(no_libvirtd, "cat %s" % DECOY_PID).stdout.strip()
    )
    site = fleet.playbook(SITE)
    print("site.yml after the faults: %.1f s" % site.seconds)
    assert site.returncode == 0, site.tail()
    assert site.changed(no_libvirtd) > 0, site.tail()  # its daemons started again
    for host in fleet.hosts:
        assert site.ok(host), site.tail()
        if host != no_libvirtd:
            assert site.changed(host) == 0, site.tail()
    fleet_conn.reset(no_libvirtd)
    assert fleet.ssh(no_libvirtd, "timeout 20 virsh -q -c qemu:///system hostname").stdout.strip() == no_libvirtd
    fleet.ssh(no_libvirtd, REMOVE_DECOY)

    again = fleet.playbook(VMS, inventories=[inventory], extra_vars=dict(vms_file=""))
    print("vms.yml once the hosts are back: %.1f s" % again.seconds)
    assert again.returncode == 0, again.tail()
    for host in (no_ssh, no_libvirtd):
        assert again.ok(vm_name(host)) and again.changed(vm_name(host)) == 1, again.tail()
        assert fleet_conn(host).lookupByName(vm_name(host)).isPersistent()
    for host in fleet.hosts:
        assert again.ok(host) and again.changed(host) == 0, again.tail()
    assert again.changed(vm_name(healthy)) == 0, again.tail()
