# -*- coding: utf-8 -*-
"""Fan-out across hypervisors: the same diskless VMs (define + start) spread
over 1, 2 and 4 hypervisors of the lab's fleet, converged by one playbook run
with forks >= the number of hypervisors, then run again (no change). Prints
the wall times and their ratio to the one-hypervisor run: with 4 hypervisors the
run should take at most 1.2x the time on 1 (the fan-out itself adds no cost;
these 2 cores cannot show the speed-up that separate servers give).

    python tests/benchmarks/bench_fleet.py [--quick] [--vms 20] [--hosts 1,2,4]

Needs the fleet (scripts/lab.sh fleet start 4, then playbooks/site.yml -i
inventories/lab-fleet). --quick (CI) spreads 8 VMs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "collections"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from tests.fleet.fleetlab import Fleet, FleetError, remove_vms  # noqa: E402

PREFIX = "iaastest-bf-"
PLAYBOOK = """- name: Diskless VMs, each hypervisor its share
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Diskless VMs
      iaas.kvm.kvm_vm:
        name: "{{ item }}"
        state: running
        domain_type: qemu
        vcpus: 1
        memory: 64
      loop: "{{ bench_vms[inventory_hostname] | default([]) }}"
"""


def spread(count, hosts):
    """``{host: [names]}``: ``count`` VMs dealt round-robin to ``hosts``."""
    share = {host: [] for host in hosts}
    for i in range(count):
        host = hosts[i % len(hosts)]
        share[host].append("%s%s-%02d" % (PREFIX, host, i))
    return share


def clean(fleet, hosts):
    for host in hosts:
        conn = fleet.connect(host)
        try:
            remove_vms(conn, [d.name() for d in conn.listAllDomains(0) if d.name().startswith(PREFIX)])
        finally:
            conn.close()


def measure(fleet, playbook, count, hosts):
    share = spread(count, hosts)
    limit = ",".join(hosts)
    forks = max(len(hosts), 5)
    first = fleet.playbook(playbook, extra_vars=dict(bench_vms=share), forks=forks, limit=limit)
    if first.returncode != 0:
        raise SystemExit("the converge on %s failed:\n%s" % (limit, first.tail()))
    again = fleet.playbook(playbook, extra_vars=dict(bench_vms=share), forks=forks, limit=limit)
    if again.returncode != 0 or any(again.changed(h) for h in hosts):
        raise SystemExit("the re-run on %s failed or changed something:\n%s" % (limit, again.tail()))
    return dict(hosts=len(hosts), converge=first.seconds, rerun=again.seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant: 8 VMs")
    parser.add_argument("--vms", type=int, default=20, help="number of diskless VMs")
    parser.add_argument("--hosts", default="1,2,4", help="comma-separated numbers of hypervisors")
    args = parser.parse_args()
    count = 8 if args.quick else args.vms
    sizes = [int(n) for n in args.hosts.split(",")]
    try:
        fleet = Fleet()
    except FleetError as exc:
        raise SystemExit(str(exc)) from None
    if fleet.size < max(sizes):
        raise SystemExit("the benchmark needs %d hypervisors: scripts/lab.sh fleet start %d" % (max(sizes), max(sizes)))
    with tempfile.TemporaryDirectory(prefix="iaastest-bench-fleet-") as scratch:
        playbook = Path(scratch) / "fleet.yml"
        playbook.write_text(PLAYBOOK)
        rows = []
        for size in sizes:
            hosts = fleet.hosts[:size]
            clean(fleet, fleet.hosts[: max(sizes)])
            try:
                rows.append(measure(fleet, playbook, count, hosts))
            finally:
                clean(fleet, hosts)
    base = rows[0]
    print("%d diskless VMs spread over hypervisors of the lab's fleet (one playbook run, forks >= hypervisors)" % count)
    print("  %11s %12s %10s %15s %13s" % ("hypervisors", "converge s", "re-run s", "converge ratio", "re-run ratio"))
    for row in rows:
        print(
            "  %11d %12.1f %10.1f %15.2f %13.2f"
            % (
                row["hosts"],
                row["converge"],
                row["rerun"],
                row["converge"] / base["converge"],
                row["rerun"] / base["rerun"],
            )
        )
    last = rows[-1]
    print(
        "  on %d hypervisors / on %d: converge %.2f, re-run %.2f (at most 1.2 expected)"
        % (last["hosts"], base["hosts"], last["converge"] / base["converge"], last["rerun"] / base["rerun"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
