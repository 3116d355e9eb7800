# -*- coding: utf-8 -*-
"""How long kvm_network takes against the lab's libvirtd, by what it has to do.

Runs the module in-process (its real main(), without Ansible's transport) on a
test network with N DHCP reservations and prints one line per step:

    python tests/benchmarks/bench_network.py            # N = 200
    python tests/benchmarks/bench_network.py --quick    # N = 25 (CI)

The network is iaastest-bench-<random> on 192.168.159.0/24 inside the lab
namespace; it is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "collections")]

import libvirt  # noqa: E402

from tests.conftest import run_module  # noqa: E402
from tests.integration.nettools import remove_network  # noqa: E402

URI = "qemu:///system"


def spec(name, bridge, reservations, lease="1h", third=159):
    hosts = [
        dict(mac="52:54:00:%02x:%02x:%02x" % (0x15, i // 256, i % 256), ip="192.168.%d.%d" % (third, 2 + i))
        for i in range(reservations)
    ]
    return dict(
        uri=URI,
        name=name,
        bridge=bridge,
        ipv4=dict(
            address="192.168.%d.1" % third,
            prefix=24,
            dhcp=dict(start="192.168.%d.253" % third, end="192.168.%d.254" % third, lease_time=lease, hosts=hosts),
        ),
    )


def timed(label, args, repeat=1, check_mode=False, expect_changed=None):
    times = []
    for _run in range(repeat):
        started = time.perf_counter()
        result = run_module("kvm_network", args, check_mode=check_mode)
        times.append(time.perf_counter() - started)
        if result.failed:
            raise SystemExit("%s failed: %s" % (label, result["msg"]))
        if expect_changed is not None and result.changed != expect_changed:
            raise SystemExit("%s: changed=%s, expected %s" % (label, result.changed, expect_changed))
    suffix = "  (median of %d)" % repeat if repeat > 1 else ""
    print("%-58s %8.1f ms%s" % (label, statistics.median(times) * 1000, suffix), flush=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="25 reservations instead of 200")
    args = parser.parse_args(argv)
    n = 25 if args.quick else 200
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    tag = uuid.uuid4().hex[:6]
    name, bridge = "iaastest-bench-" + tag, "iaastb" + tag
    print("kvm_network against %s, a NAT network with %d DHCP reservations" % (URI, n))
    try:
        timed("create (define, autostart, start)", spec(name, bridge, n), expect_changed=True)
        timed("converged run, nothing to do", spec(name, bridge, n), repeat=5, expect_changed=False)
        timed("converged run in check mode", spec(name, bridge, n), repeat=5, check_mode=True, expect_changed=False)
        timed(
            "add 10 reservations live (virNetworkUpdate, no restart)", spec(name, bridge, n + 10), expect_changed=True
        )
        timed("remove them again live", spec(name, bridge, n), expect_changed=True)
        timed(
            "new lease time live (dnsmasq restarts, bridge stays)",
            spec(name, bridge, n, lease="2h"),
            expect_changed=True,
        )
        timed(
            "new subnet, no guests (redefine and restart)",
            spec(name, bridge, n, lease="2h", third=158),
            expect_changed=True,
        )
        started = time.perf_counter()
        run_module("kvm_network_info", dict(uri=URI))
        print("%-58s %8.1f ms" % ("kvm_network_info, all networks", (time.perf_counter() - started) * 1000))
        timed("absent (stop, undefine)", dict(uri=URI, name=name, state="absent"), expect_changed=True)
    finally:
        remove_network(conn, name)
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
