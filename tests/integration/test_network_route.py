# -*- coding: utf-8 -*-
"""Two route-mode networks on one hypervisor: a guest on one reaches a guest on
the other by its address, with no NAT between them (two guest boots, in parallel).

Subnets: 192.168.158.0/24 and 192.168.159.0/24.
"""

from __future__ import annotations

import pytest

from tests.integration.nettools import kvm_network, networks

__all__ = ["networks"]  # a fixture

pytestmark = [pytest.mark.lab, pytest.mark.guest]


def route_spec(name, bridge, third):
    return dict(
        name=name,
        mode="route",
        bridge=bridge,
        ipv4=dict(
            address="192.168.%d.1" % third,
            prefix=24,
            dhcp=dict(start="192.168.%d.100" % third, end="192.168.%d.199" % third),
        ),
    )


def test_guests_on_two_route_networks_reach_each_other_by_address(networks, guest_factory, unique_name):
    (net_a, bridge_a), (net_b, bridge_b) = networks(), networks()
    for name, bridge, third in ((net_a, bridge_a, 158), (net_b, bridge_b, 159)):
        result = kvm_network(route_spec(name, bridge, third))
        assert result.changed and not result.failed, result
    guest_a = guest_factory(unique_name("rta"), network=net_a, vcpus=1)
    guest_b = guest_factory(unique_name("rtb"), network=net_b, vcpus=1)
    for guest in (guest_a, guest_b):
        guest.wait_for_ssh()
    assert guest_a.ip.startswith("192.168.158.") and guest_b.ip.startswith("192.168.159.")

    # A reads the SSH banner of B by B's address, and B of A.
    for source, target in ((guest_a, guest_b), (guest_b, guest_a)):
        banner = source.ssh("timeout 10 bash -c 'exec 3<>/dev/tcp/%s/22; head -c 8 <&3'" % target.ip)
        assert banner.stdout.startswith("SSH-2.0"), banner
    # B sees A's connection coming from A's own address: routed, not masqueraded.
    guest_a.ssh("nohup bash -c 'exec 3<>/dev/tcp/%s/22; sleep 20' >/dev/null 2>&1 & sleep 2" % guest_b.ip)
    peers = guest_b.ssh("ss -Htn state established '( sport = :22 )'").stdout
    assert guest_a.ip + ":" in peers, peers
