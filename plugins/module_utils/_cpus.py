# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU lists in the form the kernel and libvirt write them (``0-3,8-11``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def parse_cpus(text):
    """``[0, 1, 2, 5]`` for ``0-2,5``."""
    cpus = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        first, _sep, last = part.strip().partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return sorted(set(cpus))


def format_cpus(cpus):
    """``0-2,5`` for ``[0, 1, 2, 5]``."""
    ranges = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in ranges)
