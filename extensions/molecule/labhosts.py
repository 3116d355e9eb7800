# -*- coding: utf-8 -*-
"""What the scenarios' verifiers read: their vars/main.yml, libvirt (read-only), guests' addresses."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import testinfra
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


@contextlib.contextmanager
def ssh_hosts(ssh_config, sockets, address=lambda name: name):
    """``get(name)``: a testinfra host over SSH to ``address(name)`` with ``ssh_config``.

    Each host gets one SSH master connection (its control socket in the
    directory ``sockets``), closed when the context ends.
    """
    hosts = {}

    def get(name):
        if name not in hosts:
            target = address(name)
            hosts[name] = (
                target,
                testinfra.get_host(
                    "ssh://%s" % target,
                    ssh_config=str(ssh_config),
                    controlpath=str(Path(sockets) / target),
                    controlpersist=300,
                    timeout=30,
                ),
            )
        return hosts[name][1]

    try:
        yield get
    finally:
        for target, _host in hosts.values():
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(
                    [
                        "ssh",
                        "-F",
                        str(ssh_config),
                        "-o",
                        "ControlPath=%s" % (Path(sockets) / target),
                        "-O",
                        "exit",
                        target,
                    ],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
