# -*- coding: utf-8 -*-
"""kvm_network and kvm_network_info against the lab's libvirtd (no guests).

Bridges, addresses and dnsmasq live in the lab namespace; every check of them
looks there (``ip -n iaas-lab``). Subnets: 192.168.150.0-192.168.155.255.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import libvirt
import pytest

from tests.conftest import run_module
from tests.integration.conftest import LAB_URI, lab_run
from tests.integration.nettools import addresses, dnsmasq_pid, in_root_namespace, kvm_network, link, nat_spec, networks
from tests.network_cases import BAD_NETWORK_INPUTS

__all__ = ["networks"]  # a fixture

pytestmark = [pytest.mark.lab]


def lab_spec(name, bridge, third, **extra):
    """A NAT network with a reservation (gpu1) and a DNS host (registry)."""
    return nat_spec(
        name,
        bridge,
        third,
        reservations=[dict(mac="52:54:00:15:00:01", ip="192.168.%d.10" % third, name="gpu1")],
        dns_hosts=[dict(ip="192.168.%d.5" % third, hostnames=["registry"])],
        **extra,
    )


def test_nat_network_check_apply_again_check_absent(lab_conn, networks):
    name, bridge = networks()
    spec = lab_spec(name, bridge, 150)

    check = kvm_network(spec, check_mode=True, diff=True)
    assert check.changed and not check.failed, check
    assert check["diff"]["after"]["ipv4"]["network"] == "192.168.150.0/24"
    assert link(bridge) is None
    with pytest.raises(libvirt.libvirtError):
        lab_conn.networkLookupByName(name)

    applied = kvm_network(spec, diff=True)
    assert applied.changed and not applied.failed, applied
    net = lab_conn.networkLookupByName(name)
    assert net.isActive() and net.isPersistent() and net.autostart()
    # libvirtd made the bridge inside the lab namespace, never in the machine's own
    assert link(bridge) is not None and not in_root_namespace(bridge)
    assert addresses(bridge) == ["192.168.150.1/24"]
    facts = applied["network"]
    assert facts["uuid"] == net.UUIDString() and facts["mac"]
    assert facts["ipv4"]["dhcp"]["lease_time"] == 600
    conf = Path("/var/lib/libvirt/dnsmasq/%s.conf" % name).read_text()
    assert "dhcp-range=192.168.150.100,192.168.150.199,255.255.255.0,10m" in conf
    assert "domain=lab.test" in conf

    again = kvm_network(spec, diff=True)
    assert not again.changed and not again.failed, again
    assert again["diff"]["before"] == again["diff"]["after"]
    assert not kvm_network(spec, check_mode=True).changed

    info = run_module("kvm_network_info", dict(uri=LAB_URI, name=name))
    (entry,) = info["networks"]
    assert entry["bridge"] == bridge and entry["active"] and entry["guests"] == [] and entry["leases"] == []
    assert entry["ipv4"]["dhcp"]["hosts"] == [dict(mac="52:54:00:15:00:01", ip="192.168.150.10", name="gpu1")]
    assert entry["restart_required"] is False

    absent = dict(name=name, state="absent")
    gone_check = kvm_network(absent, check_mode=True, diff=True)
    assert gone_check.changed and gone_check["actions"] == ["stopped", "undefined"]
    assert lab_conn.networkLookupByName(name).isActive()
    gone = kvm_network(absent)
    assert gone.changed and not gone.failed
    with pytest.raises(libvirt.libvirtError):
        lab_conn.networkLookupByName(name)
    assert link(bridge) is None
    assert not kvm_network(absent).changed
    assert not kvm_network(absent, check_mode=True).changed


def test_reservations_dns_hosts_and_range_change_without_restarting_the_bridge(lab_conn, networks):
    name, bridge = networks()
    spec = lab_spec(name, bridge, 151)
    assert kvm_network(spec).changed
    ifindex, pid = link(bridge)["ifindex"], dnsmasq_pid(name)
    assert pid

    hosts = copy.deepcopy(spec)
    hosts["ipv4"]["dhcp"]["hosts"] = [
        dict(mac="52:54:00:15:00:01", ip="192.168.151.11", name="gpu1"),
        dict(mac="52:54:00:15:00:02", ip="192.168.151.12", name="gpu2"),
    ]
    hosts["dns"]["hosts"] = [dict(ip="192.168.151.6", hostnames=["cache", "registry"])]
    result = kvm_network(hosts, diff=True)
    assert result.changed and not result.failed, result
    assert result["actions"] == ["defined", "updated live: ipv4.dhcp.hosts, dns.hosts"]
    # the same bridge and the same dnsmasq (it only reloaded its host files)
    assert link(bridge)["ifindex"] == ifindex and dnsmasq_pid(name) == pid
    live_hosts = Path("/var/lib/libvirt/dnsmasq/%s.hostsfile" % name).read_text()
    assert "52:54:00:15:00:02,192.168.151.12,gpu2" in live_hosts and "192.168.151.10" not in live_hosts
    assert "192.168.151.6" in Path("/var/lib/libvirt/dnsmasq/%s.addnhosts" % name).read_text()
    inactive = lab_conn.networkLookupByName(name).XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    assert "192.168.151.12" in inactive and "192.168.151.6" in inactive
    assert not kvm_network(hosts).changed
    assert not kvm_network(hosts, check_mode=True).changed

    ranged = copy.deepcopy(hosts)
    ranged["ipv4"]["dhcp"].update(start="192.168.151.150", end="192.168.151.250", lease_time="1h")
    result = kvm_network(ranged)
    assert result["actions"] == ["defined", "updated live: ipv4.dhcp.ranges"], result
    # a new range restarts dnsmasq, not the bridge
    assert link(bridge)["ifindex"] == ifindex
    conf = Path("/var/lib/libvirt/dnsmasq/%s.conf" % name).read_text()
    assert "dhcp-range=192.168.151.150,192.168.151.250,255.255.255.0,1h" in conf
    assert not kvm_network(ranged).changed


def test_subnet_change_without_guests_restarts_the_network(lab_conn, networks):
    name, bridge = networks()
    spec = lab_spec(name, bridge, 154)
    kvm_network(spec)
    moved = lab_spec(name, bridge, 155, mtu=9000)
    check = kvm_network(moved, check_mode=True)
    assert check.changed and check["actions"] == ["defined", "restarted"]
    assert addresses(bridge) == ["192.168.154.1/24"]
    result = kvm_network(moved)
    assert result.changed and not result.failed, result
    assert result["actions"] == ["defined", "restarted"] and result["restart_required"] is False
    assert addresses(bridge) == ["192.168.155.1/24"] and link(bridge)["mtu"] == 9000
    assert not kvm_network(moved).changed
    assert not kvm_network(moved, check_mode=True).changed


def test_route_isolated_open_and_bridge_modes(lab_conn, networks):
    host_name, host_bridge = networks()
    # The host bridge for mode bridge: made by libvirtd (an isolated network) in the lab namespace.
    isolated = dict(name=host_name, mode="isolated", bridge=host_bridge, mtu=9000)
    cases = [
        (isolated, None),
        (dict(mode="route", ipv4=dict(address="192.168.152.1", prefix=24)), "192.168.152.1/24"),
        (dict(mode="open", ipv4=dict(address="192.168.153.1", prefix=25)), "192.168.153.1/25"),
    ]
    for extra, address in cases:
        if extra is isolated:
            spec = isolated
        else:
            name, bridge = networks()
            spec = dict(extra, name=name, bridge=bridge)
        created = kvm_network(spec)
        assert created.changed and not created.failed, created
        assert created["network"]["mode"] == spec["mode"]
        assert link(spec["bridge"]) is not None and not in_root_namespace(spec["bridge"])
        if address:
            assert addresses(spec["bridge"]) == [address]
        assert not kvm_network(spec).changed
        assert not kvm_network(spec, check_mode=True).changed
    assert link(host_bridge)["mtu"] == 9000

    name, _unused = networks()
    bridged = dict(name=name, mode="bridge", bridge=host_bridge)
    created = kvm_network(bridged)
    assert created.changed and not created.failed, created
    net = lab_conn.networkLookupByName(name)
    assert net.isActive() and net.bridgeName() == host_bridge
    assert "<forward mode='bridge'/>" in net.XMLDesc(0)
    assert not kvm_network(bridged).changed
    assert not kvm_network(bridged, check_mode=True).changed


# The list (tests/network_cases.py); in the lab, virbr0 is the bridge of the lab network.
BAD = BAD_NETWORK_INPUTS


@pytest.mark.parametrize("extra, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_one_sentence_and_leaves_no_trace(lab_conn, networks, extra, message):
    name, _bridge = networks()
    for check_mode in (True, False):
        result = kvm_network(dict(extra, name=name), check_mode=check_mode, fails=True)
        assert result.failed and not result.changed, result
        assert message in result["msg"]
        assert "\n" not in result["msg"]
        with pytest.raises(libvirt.libvirtError):
            lab_conn.networkLookupByName(name)
    # nothing of this name in the namespace either
    for bridge in ("iaastnobr0", "iaastest-bridge0"):
        assert link(bridge) is None


def test_mode_bridge_looks_where_libvirtd_runs(lab_conn, networks):
    """The bridge check asks libvirtd (in the lab namespace), not this process's /sys/class/net."""
    name, _bridge = networks()
    lab_names = {item["ifname"] for item in json.loads(lab_run(["ip", "-j", "link", "show"]).stdout)}
    ours = sorted(set(os.listdir("/sys/class/net")) - lab_names)
    assert ours, "every interface of this namespace also exists in the lab namespace"
    result = kvm_network(dict(name=name, mode="bridge", bridge=ours[0]), fails=True)
    assert result.failed and "the hypervisor has no interface named %s." % ours[0] in result["msg"], result
    # and an interface that exists there but is no bridge
    result = kvm_network(dict(name=name, mode="bridge", bridge="lo"), fails=True)
    assert result.failed and "the hypervisor's interface lo is of type" in result["msg"], result
    with pytest.raises(libvirt.libvirtError):
        lab_conn.networkLookupByName(name)
