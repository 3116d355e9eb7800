# -*- coding: utf-8 -*-
"""place_vms: how long the placement filter takes for 1,000 VM requests onto 100
hypervisors (the CI variant places them once, the full run five times).

    python tests/benchmarks/bench_placement.py [--quick] [--repeat N] [--vms N] [--hosts N]

Target: under 1 s for 1,000 VMs onto 100 hypervisors.

The fleet: a quarter of the hypervisors are 8-GPU boxes (two NUMA nodes, 128
CPUs, 1 TiB), the rest 64-CPU, 512 GiB hosts; every host already runs a few
VMs, one GPU box in ten holds GPUs of stopped VMs, one host in twenty is
drained. The requests: one in ten asks for 1 to 4 GPUs (of a model or any),
one in five is in one of ten anti-affinity groups (20 VMs each), one in fifty is pinned to a
host, and the names of a few existing VMs come back (sticky). Seeded, so every
run places the same requests on the same facts. Only the filter's function is
timed (no Ansible templating around it).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_storage import summary, timed

from ansible_collections.iaas.kvm.plugins.filter.place_vms import place_vms
from tests.hostfacts import H100, L40S, domain, gpu_box, host

GIB = 1024


def fleet(count, rnd):
    hosts = {}
    for index in range(count):
        name = "hv%03d" % index
        if index % 4 == 0:
            model = H100 if index % 8 == 0 else L40S
            held = ["0000:%02x:00.0" % 0x18] if index % 40 == 0 else []
            domains = [domain("old-%03d-gpu" % index, vcpus=8, memory_mib=64 * GIB, running=False, gpus=held)]
            facts = gpu_box(name, model=model, domains=domains)
        else:
            domains = [
                domain("old-%03d-%d" % (index, n), vcpus=rnd.randint(1, 8), memory_mib=rnd.randint(1, 32) * GIB)
                for n in range(rnd.randint(0, 6))
            ]
            facts = host(name, cpus=64, memory_mib=512 * GIB, domains=domains)
        facts["drained"] = index % 20 == 19
        hosts[name] = facts
    return hosts


def requests_for(count, hosts, rnd):
    names = sorted(hosts)
    existing = sorted(d["name"] for f in hosts.values() for d in f["domains"])
    requests = []
    for index in range(count):
        entry = dict(name="vm-%04d" % index, vcpus=rnd.choice([1, 2, 4, 8]), memory=rnd.choice([1, 2, 4, 8, 16]) * GIB)
        if index % 10 == 0:
            entry["gpus"] = dict(count=rnd.randint(1, 4), model=rnd.choice([None, H100, L40S]))
            entry["memory"] = rnd.choice([32, 64, 128]) * GIB
        if index % 5 == 1:
            entry["anti_affinity"] = "group-%d" % (index // 5 % 10)
        if index % 50 == 3:
            entry["host"] = rnd.choice(names)
        requests.append(entry)
    for name in existing[: max(1, count // 100)]:
        requests.append(dict(name=name, memory=GIB))
    return requests


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant (one round)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=100)
    options = parser.parse_args()
    repeat = 1 if options.quick else options.repeat
    rnd = random.Random(20261201)
    count = options.hosts
    hosts = fleet(count, rnd)
    requests = requests_for(options.vms, hosts, rnd)
    times, result = [], None
    for _round in range(repeat):
        seconds, placement = timed(lambda: place_vms(requests, hosts, fail_unplaced=False))
        times.append(seconds)
        assert result is None or placement == result, "the same input gave another placement"
        result = placement
    placed = [p for p in result.values() if p["host"]]
    gpu_vms = [p for p in placed if p["gpus"]]
    print("place_vms benchmark: %d VM requests onto %d hypervisors" % (len(requests), count))
    print(
        "  placed %d (%d with GPUs, %d on one NUMA node with them, %d existing), unplaced %d"
        % (
            len(placed),
            len(gpu_vms),
            len([p for p in gpu_vms if p["numa_node"] is not None]),
            len([p for p in placed if p["existing"]]),
            len(result) - len(placed),
        )
    )
    print("  placement:  %s" % summary(times))
    print("  target: 1000 VMs onto 100 hypervisors < 1.000s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
