# -*- coding: utf-8 -*-
"""The fleet scenario, verified inside each guest (over SSH through its
hypervisor, as Ansible reached it) and on each hypervisor: every guest has its
name, finished cloud-init and holds its static address on the segment that
spans the hypervisors, on which it reaches the guests of the other hypervisors
directly (one layer-2 segment: their MACs are its neighbours); every
hypervisor runs its own VMs and none of the others'; and --check --diff on the
converged fleet changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import yaml
from labhosts import EPHEMERAL, SCENARIO, ssh_hosts

REPO = Path(__file__).resolve().parents[4]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fleet.fleetlab import Fleet, parse_recap  # noqa: E402

VMS = yaml.safe_load((SCENARIO / "inventory" / "vms.yml").read_text())["all"]["children"]["vms"]["hosts"]
GUESTS = {
    name: dict(
        hypervisor=spec["vm_host"],
        mac=spec["vm_mac"],
        ip=next(iter(spec["vm_network_config"]["ethernets"].values()))["addresses"][0].split("/")[0],
    )
    for name, spec in VMS.items()
    if not spec.get("vm_diskless")
}
HYPERVISORS = sorted({spec["vm_host"] for spec in VMS.values()})
ACROSS = [(a, b) for a in GUESTS for b in GUESTS if GUESTS[a]["hypervisor"] != GUESTS[b]["hypervisor"]]
GUEST_KEY = Path(os.environ.get("HOME", "/root")) / ".ssh" / "iaas-kvm"


@pytest.fixture(scope="session")
def fleet():
    return Fleet()


@pytest.fixture(scope="session")
def guest_ssh_config(fleet, tmp_path_factory):
    """SSH to each guest through its own hypervisor (guests of different hypervisors may share addresses)."""
    path = tmp_path_factory.mktemp("fleet-ssh") / "ssh_config"
    lines = []
    for name, guest in GUESTS.items():
        lines += [
            "Host %s" % name,
            "  HostName %s" % guest["ip"],
            "  ProxyCommand ssh -F %s -W %%h:%%p %s" % (fleet.ssh_config, guest["hypervisor"]),
        ]
    lines += [
        "Host iaastest-fl-*",
        "  User debian",
        "  IdentityFile %s" % GUEST_KEY,
        "  IdentitiesOnly yes",
        "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null",
        "  LogLevel ERROR",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def guest(guest_ssh_config, tmp_path_factory):
    with ssh_hosts(guest_ssh_config, tmp_path_factory.mktemp("fleet-cp")) as get:
        yield get


@pytest.fixture(scope="session")
def hypervisor(fleet):
    hosts = {}

    def get(name):
        if name not in hosts:
            hosts[name] = testinfra.get_host("ssh://%s" % name, ssh_config=str(fleet.ssh_config), timeout=30)
        return hosts[name]

    return get


def test_the_scenario_spans_three_hypervisors():
    assert len(HYPERVISORS) == 3 and len(GUESTS) == 3 and ACROSS


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_guest_has_its_name_finished_cloud_init_and_holds_its_address(guest, name):
    host = guest(name)
    assert host.check_output("hostname") == name
    assert host.check_output("cloud-init status") == "status: done"
    links = json.loads(host.check_output("ip -j addr show scope global"))
    held = {link["address"]: [a["local"] for a in link["addr_info"] if a.get("family") == "inet"] for link in links}
    assert held.get(GUESTS[name]["mac"]) == [GUESTS[name]["ip"]], held


@pytest.mark.parametrize(("source", "target"), ACROSS)
def test_guest_reaches_a_guest_of_another_hypervisor_on_the_shared_segment(guest, source, target):
    host = guest(source)
    ip = GUESTS[target]["ip"]
    banner = host.check_output("timeout 10 bash -c 'exec 3<>/dev/tcp/%s/22; head -c 7 <&3'" % ip)
    assert banner == "SSH-2.0"
    # No router between them: the target's own MAC is the source's neighbour for its address.
    neighbours = json.loads(host.check_output("ip -j neigh show %s" % ip))
    assert [n.get("lladdr") for n in neighbours] == [GUESTS[target]["mac"]], neighbours


@pytest.mark.parametrize("name", HYPERVISORS)
def test_each_hypervisor_runs_its_own_vms_only(hypervisor, name):
    host = hypervisor(name)
    assert host.check_output("hostname") == name
    assert host.process.filter(comm="libvirtd"), "libvirtd does not run on %s" % name
    running = set(host.check_output("virsh -q list --name").split())
    mine = {vm for vm, spec in VMS.items() if spec["vm_host"] == name}
    assert mine <= running, running
    assert not (set(VMS) - mine) & running, running
    # The guest's tap device sits on the host bridge br0, which joins the lab's switch.
    (guest_name,) = [vm for vm in mine if vm in GUESTS]
    tap = host.check_output("virsh -q domiflist %s" % guest_name).split()[0]
    assert host.check_output("basename $(readlink /sys/class/net/%s/master)" % tap) == "br0"


def test_check_diff_on_the_converged_fleet_changes_nothing():
    env = dict(os.environ, ANSIBLE_CONFIG=str(EPHEMERAL / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(EPHEMERAL / "inventory"),
            "-e",
            "vms_file=",
            "--check",
            "--diff",
            str(REPO / "playbooks" / "vms.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = parse_recap(proc.stdout)
    for name in [*VMS, *HYPERVISORS]:
        assert recap[name]["failed"] == 0 and recap[name]["unreachable"] == 0, proc.stdout[-4000:]
        assert recap[name]["changed"] == 0, proc.stdout[-4000:]
