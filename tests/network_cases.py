# -*- coding: utf-8 -*-
"""The bad inputs of kvm_network, shared by the unit tests
(libvirt's test driver) and the lab tests: each must fail with one clear
sentence and leave no trace. Every case is ``(id, options, message)``; the
options lack ``name`` and ``uri``."""

from __future__ import annotations


def _dhcp(**dhcp):
    return dict(
        ipv4=dict(address="192.168.150.1", dhcp=dict(dict(start="192.168.150.100", end="192.168.150.199"), **dhcp))
    )


BAD_NETWORK_INPUTS = [
    (
        "DHCP range outside the subnet",
        dict(ipv4=dict(address="192.168.150.1", dhcp=dict(start="192.168.151.10", end="192.168.151.20"))),
        "The DHCP range start 192.168.151.10 is outside the subnet 192.168.150.0/24.",
    ),
    (
        "reservation IP outside the subnet",
        _dhcp(hosts=[dict(mac="52:54:00:00:00:01", ip="192.168.155.10")]),
        "The reservation address 192.168.155.10 is outside the subnet 192.168.150.0/24.",
    ),
    (
        "duplicate MAC",
        _dhcp(
            hosts=[
                dict(mac="52:54:00:00:00:01", ip="192.168.150.10"),
                dict(mac="52:54:00:00:00:01", ip="192.168.150.11"),
            ]
        ),
        "The reservations ipv4.dhcp.hosts[0] and ipv4.dhcp.hosts[1] have the same mac 52:54:00:00:00:01.",
    ),
    (
        "invalid MAC",
        _dhcp(hosts=[dict(mac="52:54:00:zz", ip="192.168.150.10")]),
        "'52:54:00:zz' is not a MAC address such as 52:54:00:12:34:56.",
    ),
    (
        "prefix 33",
        dict(ipv4=dict(address="192.168.150.1", prefix=33)),
        "ipv4.prefix 33 is not a prefix length between 0 and 32.",
    ),
    ("unknown mode", dict(mode="macvtap", ipv4=dict(address="192.168.150.1")), "value of mode must be one of"),
    (
        "bridge name over 15 characters",
        dict(bridge="iaastest-bridge0", ipv4=dict(address="192.168.150.1")),
        "The bridge name 'iaastest-bridge0' is 16 characters long; Linux allows at most 15.",
    ),
    (
        "mode bridge without an existing bridge",
        dict(mode="bridge", bridge="iaastnobr0"),
        "mode bridge needs an existing host bridge, but the hypervisor has no interface named iaastnobr0.",
    ),
    (
        "a libvirt bridge that another network uses",
        dict(bridge="virbr0", ipv4=dict(address="192.168.150.1")),
        "The bridge name virbr0 is already used by network default.",
    ),
]
