# -*- coding: utf-8 -*-
"""Helpers of the network tests: test networks that clean up after themselves,
kvm_network runs against the lab, and looks at bridges inside the lab namespace."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from pathlib import Path

import libvirt
import pytest

from tests.conftest import run_module
from tests.integration.conftest import LAB_URI, lab_run


def remove_network(conn, name):
    """Stop and undefine network ``name`` when it exists (test objects only)."""
    assert name.startswith("iaastest-")
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()


@pytest.fixture
def networks(lab_conn, lab_network):
    """``networks()`` gives a fresh ``(name, bridge)``; all are removed when the test ends."""
    made = []

    def make():
        tag = uuid.uuid4().hex[:6]
        name, bridge = "iaastest-net-" + tag, "iaast" + tag
        made.append(name)
        return name, bridge

    yield make
    for name in made:
        remove_network(lab_conn, name)


def kvm_network(args, check_mode=False, diff=False, fails=False):
    return run_module("kvm_network", dict(dict(uri=LAB_URI), **args), check_mode=check_mode, diff=diff, fails=fails)


def kvm_network_info(name):
    (facts,) = run_module("kvm_network_info", dict(uri=LAB_URI, name=name))["networks"]
    return facts


def link(name):
    """``ip -j link`` of ``name`` inside the lab namespace, or None."""
    res = lab_run(["ip", "-j", "link", "show", name], check=False)
    return json.loads(res.stdout)[0] if res.returncode == 0 and res.stdout.strip() else None


def ports(bridge):
    """Names of the interfaces on ``bridge`` (the guests' taps)."""
    res = lab_run(["ip", "-j", "link", "show", "master", bridge], check=True)
    return sorted(item["ifname"] for item in json.loads(res.stdout or "[]"))


def addresses(name):
    res = lab_run(["ip", "-j", "-4", "addr", "show", name], check=True)
    return ["%s/%s" % (a["local"], a["prefixlen"]) for a in json.loads(res.stdout)[0]["addr_info"]]


def in_root_namespace(name):
    res = subprocess.run(["ip", "link", "show", name], capture_output=True, text=True, check=False)
    return res.returncode == 0


def dnsmasq_pid(name):
    path = Path("/run/libvirt/network/%s.pid" % name)
    return int(path.read_text().strip()) if path.exists() else None


def nat_spec(name, bridge, third, reservations=(), dns_hosts=(), start=100, end=199, lease_time="10m", **extra):
    """kvm_network options of a NAT network on 192.168.<third>.0/24 with domain lab.test."""
    spec = dict(
        name=name,
        mode="nat",
        bridge=bridge,
        domain="lab.test",
        ipv4=dict(
            address="192.168.%d.1" % third,
            prefix=24,
            dhcp=dict(
                start="192.168.%d.%d" % (third, start),
                end="192.168.%d.%d" % (third, end),
                lease_time=lease_time,
                hosts=list(reservations),
            ),
        ),
        dns=dict(hosts=list(dns_hosts)),
    )
    spec.update(extra)
    return spec
