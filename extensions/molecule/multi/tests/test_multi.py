# -*- coding: utf-8 -*-
"""Three guests on two route-mode networks, verified from inside the guests:
the guests of network A resolve and reach each other by name through A's DNS,
the guest of network B holds its reserved address and is reached from A by
that address, routed (it sees A's guests' own addresses, no NAT)."""

from __future__ import annotations

import ipaddress
import time
import xml.etree.ElementTree as ET

import pytest
from labhosts import guest_addresses, leased_addresses, leased_ip, load_scenario

SCENARIO = load_scenario()
NETWORKS = {network["name"]: network for network in SCENARIO["networks"]}
GUESTS = [guest["name"] for guest in SCENARIO["guests"]]
NETWORK_OF = {guest["name"]: NETWORKS[guest["network"]] for guest in SCENARIO["guests"]}
RESERVED = [
    (host["name"], host["mac"], host["ip"])
    for network in SCENARIO["networks"]
    for host in network["ipv4"]["dhcp"].get("hosts", [])
]
# Pairs of guests on one network with a DNS domain, and from a guest to a reserved guest on another network.
SAME_NETWORK = [
    (source, target)
    for source in GUESTS
    for target in GUESTS
    if source != target and NETWORK_OF[source] is NETWORK_OF[target] and "domain" in NETWORK_OF[source]
]
ACROSS_NETWORKS = [
    (source, target, ip)
    for source in GUESTS
    for target, _mac, ip in RESERVED
    if NETWORK_OF[source] is not NETWORK_OF[target]
]


def ssh_banner(host, address):
    """The first bytes that the SSH server at ``address`` (a name or an IP) sends to ``host``."""
    return host.check_output("timeout 10 bash -c 'exec 3<>/dev/tcp/%s/22; head -c 7 <&3'" % address)


def test_the_scenario_covers_both_cases():
    assert SAME_NETWORK and ACROSS_NETWORKS


@pytest.mark.parametrize("network", SCENARIO["networks"], ids=lambda network: network["name"])
def test_networks_are_route_mode_as_declared(conn, network):
    xml = ET.fromstring(conn.networkLookupByName(network["name"]).XMLDesc(0))
    assert xml.find("forward").get("mode") == "route"
    assert xml.find("bridge").get("name") == network["bridge"]
    assert xml.find("ip").get("address") == network["ipv4"]["address"]
    assert (xml.find("domain").get("name") if xml.find("domain") is not None else None) == network.get("domain")


@pytest.mark.parametrize("name", GUESTS)
def test_guest_holds_the_address_its_network_leased(conn, guest, name):
    network = NETWORK_OF[name]
    leases = leased_addresses(conn, name)
    assert guest_addresses(guest(name)) == leases
    ((ip,),) = leases.values()
    subnet = ipaddress.ip_network("%s/%d" % (network["ipv4"]["address"], network["ipv4"]["prefix"]), strict=False)
    assert ipaddress.ip_address(ip) in subnet
    assert guest(name).check_output("hostname") == name


@pytest.mark.parametrize(("name", "mac", "ip"), RESERVED)
def test_reservation_gives_the_fixed_address_by_mac(conn, guest, name, mac, ip):
    assert leased_addresses(conn, name) == {mac: [ip]}
    assert guest_addresses(guest(name)) == {mac: [ip]}


@pytest.mark.parametrize(("source", "target"), SAME_NETWORK)
def test_guests_of_a_network_resolve_and_reach_each_other_by_name(conn, guest, source, target):
    host = guest(source)
    target_ip = leased_ip(conn, target)
    domain = NETWORK_OF[source]["domain"]
    for name in (target, "%s.%s" % (target, domain)):
        answer = host.check_output("getent ahostsv4 %s | awk '{print $1}' | sort -u", name)
        assert answer.split() == [target_ip], name
    # The guest's own /etc/hosts does not hold the name: the network's DNS answered.
    assert target not in host.file("/etc/hosts").content_string
    assert ssh_banner(host, target) == "SSH-2.0"


@pytest.mark.parametrize(("source", "target", "ip"), ACROSS_NETWORKS)
def test_guest_reaches_the_other_network_by_address_without_nat(conn, guest, source, target, ip):
    host = guest(source)
    assert ssh_banner(host, ip) == "SSH-2.0"
    # Hold a connection open from the source, and find it on the target coming from the
    # source's own address: the networks route to each other, nothing rewrites addresses.
    source_ip = leased_ip(conn, source)
    host.run("nohup bash -c 'exec 3<>/dev/tcp/%s/22; sleep 30' >/dev/null 2>&1 &" % ip)
    deadline = time.monotonic() + 20
    peers = ""
    while source_ip + ":" not in peers and time.monotonic() < deadline:
        peers = guest(target).check_output("ss -Htn state established '( sport = :22 )'")
        time.sleep(1)
    assert source_ip + ":" in peers, peers
