# -*- coding: utf-8 -*-
"""kvm_vm at scale: time per VM of one looped task converging N diskless TCG
VMs (define + start) and of its no-change re-run, for growing N. The time per VM
should stay flat: no step of the module grows with the number of VMs.

    python tests/benchmarks/bench_vm_scale.py [--quick] [--counts 10,50]

--quick (CI) measures 5 and 10 VMs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vmbench


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant: 5 and 10 VMs")
    parser.add_argument("--counts", default="10,50", help="comma-separated numbers of VMs")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each no-change playbook (median)")
    args = parser.parse_args()
    counts = [5, 10] if args.quick else [int(c) for c in args.counts.split(",")]
    repeat = 1 if args.quick else args.repeat
    playbooks = vmbench.Playbooks()
    rows = []
    try:
        for count in counts:
            rows.append(vmbench.measure_loop(playbooks, count, repeat, "iaastest-bench-scale"))
    finally:
        playbooks.cleanup()
    print("kvm_vm loop, time per VM (task time: the run minus an empty playbook)")
    print("  %6s %14s %14s %14s" % ("VMs", "converge s/VM", "re-run s/VM", "ping s/item"))
    for row in rows:
        n = row["count"]
        print("  %6d %14.3f %14.3f %14.3f" % (n, row["converge_task"] / n, row["rerun_task"] / n, row["ping_task"] / n))
    first, last = rows[0], rows[-1]
    for key, label in (("converge_task", "converge"), ("rerun_task", "re-run")):
        growth = (last[key] / last["count"]) / (first[key] / first["count"])
        print("  %s per VM at %d VMs / at %d VMs: %.2f" % (label, last["count"], first["count"], growth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
