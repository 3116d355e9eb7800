# -*- coding: utf-8 -*-
"""kvm_vm: 10 diskless TCG VMs in one looped task, first converge and no-change
re-run, side by side with the same loop of ansible.builtin.ping (the floor of
Ansible's own cost per loop item).

    python tests/benchmarks/bench_vm_loop.py [--quick] [--count N] [--repeat R]

Target: the re-run costs at most 1.2 x the ping loop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vmbench


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant (10 VMs, 3 repeats)")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7, help="runs of each no-change playbook (median)")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    playbooks = vmbench.Playbooks()
    try:
        fig = vmbench.measure_loop(playbooks, args.count, repeat, "iaastest-bench-loop")
    finally:
        playbooks.cleanup()
    n = fig["count"]
    print(
        "kvm_vm loop of %d diskless %s VMs (whole ansible-playbook runs; task = run - empty playbook %.2fs)"
        % (n, vmbench.DOMAIN_TYPE, fig["startup"])
    )
    print("  %-34s %8s %8s %10s" % ("", "run s", "task s", "task/item"))
    for label, key in (
        ("first converge (define + start)", "converge"),
        ("re-run, no change", "rerun"),
        ("ansible.builtin.ping, same loop", "ping"),
    ):
        print("  %-34s %8.2f %8.2f %9.3fs" % (label, fig[key], fig[key + "_task"], fig[key + "_task"] / n))
    ratio = fig["rerun_task"] / fig["ping_task"] if fig["ping_task"] > 0 else float("inf")
    whole = fig["rerun"] / fig["ping"]
    print(
        "  re-run / ping: %.2f (task time), %.2f (whole runs); target <= 1.2: %s"
        % (ratio, whole, "met" if ratio <= 1.2 else "NOT met")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
