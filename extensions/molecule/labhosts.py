# -*- coding: utf-8 -*-
"""What the scenarios' verifiers read: their vars/main.yml, libvirt (read-only), guests' addresses."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import yaml

EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", "."))


def load_scenario():
    """The scenario's vars/main.yml: the plain values its playbooks use too."""
    return yaml.safe_load((SCENARIO / "vars" / "main.yml").read_text())


def domain_xml(conn, name):
    return ET.fromstring(conn.lookupByName(name).XMLDesc(0))


def leased_addresses(conn, name):
    """``{mac: [IPv4, ...]}`` of a running domain, from its networks' DHCP leases."""
    dom = conn.lookupByName(name)
    ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
    return {
        iface["hwaddr"]: [a["addr"] for a in iface["addrs"] or [] if a["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4]
        for iface in ifaces.values()
    }


def leased_ip(conn, name):
    """The one IPv4 address leased to a domain with one interface."""
    addresses = [ip for ips in leased_addresses(conn, name).values() for ip in ips]
    assert len(addresses) == 1, "%s: expected one leased IPv4 address, libvirt has %s" % (name, addresses)
    return addresses[0]


def guest_addresses(host):
    """``{mac: [IPv4, ...]}`` of a guest's interfaces with a global address, as the guest sees them."""
    links = json.loads(host.check_output("ip -j addr show scope global"))
    return {
        link["address"]: [a["local"] for a in link["addr_info"] if a.get("family") == "inet"]
        for link in links
        if any(a.get("family") == "inet" for a in link["addr_info"])
    }
