# -*- coding: utf-8 -*-
"""kvm_vm at scale: time per VM of one looped task converging N diskless TCG
VMs (define + start, 32 MiB each) and of its no-change re-run, for growing N,
and what a re-run of the most VMs costs in memory: libvirtd's resident memory
before and after it, and the controller's (ansible-playbook's) peak against
the same re-run of the fewest VMs.

    python tests/benchmarks/bench_vm_scale.py [--quick] [--counts 10,100] [--memory 32]

The time per VM should stay flat: no step of the module grows with the number
of VMs on the host. N is lowered (and the line says so) when the machine has
not the memory for N running guests. --quick (CI) measures 5 and 10 VMs.

Targets: re-run and converge per VM at the most VMs at most 1.25 x the figure
at the fewest; libvirtd and the controller grow by at most 8 MiB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vmbench
from targets import Targets

# What one running diskless guest costs besides its memory (QEMU, measured ~40 MiB), and a margin kept free.
GUEST_OVERHEAD_MIB = 48
KEEP_FREE_MIB = 4096
LIBVIRTD_PIDFILE = "/run/libvirtd.pid"  # the lab's libvirtd (scripts/lab.sh)


def libvirtd_pid():
    with open(LIBVIRTD_PIDFILE) as handle:
        return int(handle.read().strip())


def available_mib():
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant: 5 and 10 VMs")
    parser.add_argument("--counts", default="10,100", help="comma-separated numbers of VMs")
    parser.add_argument("--memory", type=int, default=32, help="MiB per guest")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each no-change playbook (median)")
    args = parser.parse_args()
    counts = [5, 10] if args.quick else [int(c) for c in args.counts.split(",")]
    repeat = 1 if args.quick else args.repeat
    room = max(1, (available_mib() - KEEP_FREE_MIB) // (args.memory + GUEST_OVERHEAD_MIB))
    if max(counts) > room:
        print("  memory for %d running guests only: counts %s lowered" % (room, counts))
        counts = sorted({min(c, room) for c in counts})
    playbooks = vmbench.Playbooks()
    loop = playbooks.write("loop.yml", vmbench.LOOP_PLAYBOOK)
    rows = []
    memory = {}
    prefix = "iaastest-bench-scale"
    try:
        for count in counts:
            row = vmbench.measure_loop(playbooks, count, repeat, prefix, memory=args.memory, keep=True)
            rows.append(row)
            names = ["%s-%02d" % (prefix, i) for i in range(count)]
            variables = dict(names=names, uri=vmbench.URI, domain_type=vmbench.DOMAIN_TYPE, memory=args.memory)
            before = vmbench.rss_mib(libvirtd_pid())
            _took, out = playbooks.run(loop, variables)
            if vmbench.changed_count(out) != 0:
                raise SystemExit("the re-run reported a change:\n" + out[-3000:])
            after = vmbench.rss_mib(libvirtd_pid())
            memory[count] = dict(libvirtd_before=before, libvirtd_after=after, controller=playbooks.peak_rss_mib)
            vmbench.remove_domains(names)
    finally:
        vmbench.remove_domains(["%s-%02d" % (prefix, i) for i in range(max(counts))])
        playbooks.cleanup()

    targets = Targets(args.quick)
    print(
        "kvm_vm loop of diskless %s VMs, %d MiB each, running; time per VM (task time: the run minus an empty playbook)"
        % (vmbench.DOMAIN_TYPE, args.memory)
    )
    print("  %6s %14s %14s %14s" % ("VMs", "converge s/VM", "re-run s/VM", "ping s/item"))
    for row in rows:
        n = row["count"]
        print("  %6d %14.3f %14.3f %14.3f" % (n, row["converge_task"] / n, row["rerun_task"] / n, row["ping_task"] / n))
    first, last = rows[0], rows[-1]
    for key, label in (("rerun_task", "re-run"), ("converge_task", "converge")):
        growth = (last[key] / last["count"]) / (first[key] / first["count"])
        targets.check(
            "%s per VM at %d VMs / at %d VMs" % (label, last["count"], first["count"]),
            growth,
            "<= 1.25",
            growth <= 1.25,
        )
    print("memory over one no-change re-run (MiB)")
    for count, fig in memory.items():
        print(
            "  %4d VMs: libvirtd %.1f -> %.1f (%+.1f); ansible-playbook peak %.1f"
            % (
                count,
                fig["libvirtd_before"],
                fig["libvirtd_after"],
                fig["libvirtd_after"] - fig["libvirtd_before"],
                fig["controller"],
            )
        )
    big, small = memory[last["count"]], memory[first["count"]]
    grown = big["libvirtd_after"] - big["libvirtd_before"]
    targets.check("libvirtd growth over a re-run of %d VMs" % last["count"], grown, "<= 8 MiB", grown <= 8, "%+.1f MiB")
    more = big["controller"] - small["controller"]
    targets.check(
        "controller peak at %d VMs - at %d VMs" % (last["count"], first["count"]),
        more,
        "<= 8 MiB",
        more <= 8,
        "%+.1f MiB",
    )
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
