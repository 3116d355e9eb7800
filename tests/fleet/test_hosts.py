# -*- coding: utf-8 -*-
"""Each simulated hypervisor is a host of its own: over SSH it reports its own
hostname, host UUID (its private libvirtd.conf's host_uuid) and domains, and
sees none of the other hosts' domains, networks, images or daemons."""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = [pytest.mark.fleet]

# What a host says about itself through its own libvirtd (libvirt-python on the host, over SSH).
IDENTITY = """
import json, libvirt, socket
import xml.etree.ElementTree as ET
conn = libvirt.openReadOnly("qemu:///system")
caps = ET.fromstring(conn.getCapabilities())
print(json.dumps(dict(
    hostname=socket.gethostname(),
    libvirt_hostname=conn.getHostname(),
    host_uuid=caps.findtext("./host/uuid"),
    domains=sorted(d.name() for d in conn.listAllDomains(0)),
    bridges=sorted(n.bridgeName() for n in conn.listAllNetworks(0) if n.isActive() and n.bridgeName()),
)))
"""

MARKER_DOMAIN = (
    "<domain type='qemu'><name>%s</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os></domain>"
)


@pytest.fixture
def marker_domains(fleet, fleet_conn):
    """One defined (never started) domain per host, named after it."""
    tag = uuid.uuid4().hex[:6]
    names = {host: "iaastest-id-%s-%s" % (host, tag) for host in fleet.hosts}
    for host, name in names.items():
        fleet_conn(host).defineXML(MARKER_DOMAIN % name)
    yield names
    for host, name in names.items():
        fleet_conn(host).lookupByName(name).undefine()


def test_the_fleet_has_hosts_to_compare(fleet):
    assert fleet.size >= 2, "the fleet tests need at least two hypervisors"


def test_each_hypervisor_reports_its_own_identity_and_domains_over_ssh(fleet, marker_domains):
    seen = {}
    for host in fleet.hosts:
        facts = fleet.python(host, IDENTITY)
        assert facts["hostname"] == host
        assert facts["libvirt_hostname"] == host
        # The host UUID comes from the host's own /etc/libvirt/libvirtd.conf.
        conf = fleet.ssh(host, "grep -E '^host_uuid' /etc/libvirt/libvirtd.conf").stdout
        assert conf.split('"')[1] == facts["host_uuid"], conf
        # Its own marker, and none of the others' (test domains of other tests may exist too).
        markers = [d for d in facts["domains"] if d in marker_domains.values()]
        assert markers == [marker_domains[host]], facts["domains"]
        seen[host] = facts
    uuids = [facts["host_uuid"] for facts in seen.values()]
    assert len(set(uuids)) == len(uuids), uuids


def test_each_hypervisor_has_private_state_and_network(fleet):
    machine = {path: os.stat(path) for path in ("/etc/libvirt", "/var/lib/libvirt", "/var/cache/iaas-kvm", "/run")}
    inodes = {}
    for host in fleet.hosts:
        out = fleet.ssh(
            host, "stat -L -c '%n %d:%i' /etc/libvirt /var/lib/libvirt /var/cache/iaas-kvm /run; ip -o -4 addr show"
        ).stdout
        lines = out.splitlines()
        for line in lines[:4]:
            path, ident = line.split()
            st = machine[path]
            # Not the machine's directory: a private one of this host.
            assert ident != "%d:%d" % (st.st_dev, st.st_ino), (host, path)
            inodes.setdefault(path, set()).add(ident)
        addresses = " ".join(lines[4:])
        assert "%s/24" % fleet.address(host) in addresses
        assert "%s/24" % fleet.guest_net_address(host) in addresses
        # The host's own NAT network (the same subnet on every host) lives in its own namespace.
        assert "192.168.122.1/24" in addresses
    for path, idents in inodes.items():
        assert len(idents) == fleet.size, (path, idents)


def test_hypervisors_reach_each_other_over_qemu_ssh(fleet):
    """What live migration between hypervisors needs: qemu+ssh:// as root, with the hosts' own keys."""
    for source, target in zip(fleet.hosts, fleet.hosts[1:] + fleet.hosts[:1]):
        out = fleet.ssh(source, "virsh -c qemu+ssh://root@%s/system hostname" % target).stdout
        assert out.strip() == target
