# -*- coding: utf-8 -*-
"""Verdict lines of the benchmarks: each target prints ``target <what>: met``
or ``NOT met``; the full run (scripts/bench.sh) exits non-zero when one was
missed, the CI-sized run (``--quick``) prints the same lines and never fails
on timing (its machines are shared and noisy)."""

from __future__ import annotations


class Targets:
    def __init__(self, quick):
        self.quick = quick
        self.missed = []

    def check(self, label, value, target, met, fmt="%.2f"):
        """Print ``label: value; target <target>: met`` and remember a miss."""
        print(("  %s: " + fmt + "; target %s: %s") % (label, value, target, "met" if met else "NOT met"), flush=True)
        if not met:
            self.missed.append(label)
        return met

    def exit_code(self):
        if not self.missed:
            return 0
        print("  targets missed: %s%s" % ("; ".join(self.missed), " (--quick: not a failure)" if self.quick else ""))
        return 0 if self.quick else 1
