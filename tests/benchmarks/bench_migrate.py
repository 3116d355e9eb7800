# -*- coding: utf-8 -*-
"""Live migration of a 1 GiB guest between two hypervisors of the lab's fleet with
iaas.kvm.kvm_vm_migrate: for each move, the module's wall time, the migration's
time and the downtime libvirt reports, and the memory and disk bytes sent.

    python tests/benchmarks/bench_migrate.py [--quick] [--runs 4]

Full size (scripts/bench.sh migrate): a Debian guest with 1 GiB of memory is
booted on hv1 (playbooks/vms.yml, the segment datacentre), 400 MiB of its memory
filled with random data (a file in /dev/shm), then moved hv1 -> hv2 -> hv1 ...
with its overlay disk. --quick (the fleet stage): a diskless VM with 1 GiB of
memory that no guest has touched (mostly zero pages, so a lower bound), moved
twice. Needs the fleet (scripts/lab.sh fleet start 3, playbooks/site.yml -i
inventories/lab-fleet); guests run under TCG here, so the figures are those of
software emulation over a veth switch.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "collections"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from tests.fleet.fleetlab import GUEST_NET, Fleet, FleetError, remove_vms, write_vm_inventory  # noqa: E402

NAME = "iaastest-bm-1g"
MAC = "52:54:00:19:01:31"
ADDRESS = "%s.131" % GUEST_NET
# /dev/shm holds half of the guest's memory.
FILL_MIB = 400


def boot_guest(fleet, tmp):
    inventory = write_vm_inventory(
        Path(tmp) / "vms.yml",
        {
            NAME: dict(
                vm_host="hv1",
                vm_vcpus=1,
                vm_memory="1GiB",
                vm_disk_size="3GiB",
                vm_network="datacentre",
                vm_mac=MAC,
                vm_network_config=dict(
                    version=2,
                    ethernets=dict(datacentre=dict(match=dict(macaddress=MAC), addresses=["%s/24" % ADDRESS])),
                ),
            )
        },
    )
    run = fleet.playbook(REPO / "playbooks" / "vms.yml", inventories=[inventory], extra_vars=dict(vms_file=""))
    if run.returncode != 0:
        raise SystemExit("vms.yml could not boot %s:\n%s" % (NAME, run.tail()))
    print("booted %s (1 GiB) on hv1 in %.1f s" % (NAME, run.seconds))
    ssh = [
        "ssh",
        "-o",
        "ProxyCommand=ssh -F %s -W %%h:%%p hv3" % fleet.ssh_config,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-i",
        str(Path.home() / ".ssh" / "iaas-kvm"),
        "debian@%s" % ADDRESS,
        "head -c %dM /dev/urandom > /dev/shm/iaastest-fill && free -m | sed -n 2p" % FILL_MIB,
    ]
    proc = subprocess.run(ssh, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit("could not fill the guest's memory: %s" % proc.stderr)
    print("filled %d MiB of its memory: %s" % (FILL_MIB, proc.stdout.strip()))


def define_diskless(fleet):
    result, _seconds = fleet.module(
        "hv1", "iaas.kvm.kvm_vm", dict(name=NAME, state="running", domain_type="qemu", vcpus=1, memory=1024)
    )
    if result.get("failed"):
        raise SystemExit("could not start %s: %s" % (NAME, result.get("msg")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a diskless 1 GiB VM, two moves (CI)")
    parser.add_argument("--runs", type=int, default=None, help="moves (default 4, 2 with --quick)")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 4)
    try:
        fleet = Fleet()
    except FleetError as exc:
        raise SystemExit(str(exc)) from exc
    if fleet.size < 3:
        raise SystemExit("the benchmark needs a fleet of 3 hypervisors (scripts/lab.sh fleet start 3)")
    for host in fleet.hosts:
        with contextlib.closing(fleet.connect(host)) as conn:
            remove_vms(conn, [NAME])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.quick:
                define_diskless(fleet)
            else:
                boot_guest(fleet, tmp)
            print(
                "%-10s %9s %11s %12s %14s %12s"
                % ("move", "module s", "migration s", "downtime ms", "memory MiB", "disk MiB")
            )
            hosts = ["hv1", "hv2"]
            for run in range(runs):
                source, dest = hosts[run % 2], hosts[(run + 1) % 2]
                started = time.monotonic()
                result, _seconds = fleet.module(
                    source,
                    "iaas.kvm.kvm_vm_migrate",
                    dict(
                        name=NAME,
                        dest_uri="qemu+ssh://root@%s/system" % dest,
                        migrate_uri="tcp://%s" % fleet.address(dest),
                        remove_source_volumes=True,
                    ),
                )
                seconds = time.monotonic() - started
                if result.get("failed") or result.get("mode") != "live":
                    raise SystemExit("the move %s -> %s failed: %s" % (source, dest, result.get("msg")))
                stats = result["job_stats"]
                print(
                    "%-10s %9.1f %11.2f %12d %14.1f %12.1f"
                    % (
                        "%s->%s" % (source, dest),
                        seconds,
                        stats.get("time_elapsed", 0) / 1000.0,
                        stats.get("downtime", 0),
                        stats.get("memory_processed", 0) / 1048576.0,
                        stats.get("disk_processed", 0) / 1048576.0,
                    )
                )
    finally:
        for host in fleet.hosts:
            with contextlib.closing(fleet.connect(host)) as conn:
                remove_vms(conn, [NAME])


if __name__ == "__main__":
    main()
