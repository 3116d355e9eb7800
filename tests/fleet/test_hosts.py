# -*- coding: utf-8 -*-
"""Each simulated hypervisor is a host of its own: over SSH it reports its own
hostname, host UUID (its private libvirtd.conf's host_uuid) and domains, and
sees none of the other hosts' domains, networks, images or daemons."""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = [pytest.mark.fleet]

# What a host says about itself, in one SSH call: its libvirtd (through libvirt-python on the
# host), its libvirtd.conf, the identity of the directories it should have of its own, its addresses.
IDENTITY = """
import json, libvirt, os, re, socket, subprocess
import xml.etree.ElementTree as ET
conn = libvirt.openReadOnly("qemu:///system")
caps = ET.fromstring(conn.getCapabilities())
conf = open("/etc/libvirt/libvirtd.conf").read()
print(json.dumps(dict(
    hostname=socket.gethostname(),
    libvirt_hostname=conn.getHostname(),
    host_uuid=caps.findtext("./host/uuid"),
    configured_uuid=re.findall(r'^host_uuid\\s*=\\s*"([^"]+)"', conf, re.M),
    domains=sorted(d.name() for d in conn.listAllDomains(0)),
    dirs={p: "%d:%d" % (os.stat(p).st_dev, os.stat(p).st_ino) for p in __DIRS__},
    addresses=subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout,
)))
"""
PRIVATE_DIRS = ["/etc/libvirt", "/var/lib/libvirt", "/var/cache/iaas-kvm", "/run", "/root"]

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


def test_each_hypervisor_reports_its_own_identity_state_and_domains_over_ssh(fleet, marker_domains):
    machine = {path: "%d:%d" % (os.stat(path).st_dev, os.stat(path).st_ino) for path in PRIVATE_DIRS}
    seen = {}
    for host in fleet.hosts:
        facts = fleet.python(host, IDENTITY.replace("__DIRS__", repr(PRIVATE_DIRS)))
        assert facts["hostname"] == host
        assert facts["libvirt_hostname"] == host
        # The host UUID is the one of the host's own /etc/libvirt/libvirtd.conf.
        assert facts["configured_uuid"] == [facts["host_uuid"]], facts
        # Its own marker, and none of the others' (test domains of other tests may exist too).
        markers = [d for d in facts["domains"] if d in marker_domains.values()]
        assert markers == [marker_domains[host]], facts["domains"]
        # Directories of its own, not the machine's.
        for path in PRIVATE_DIRS:
            assert facts["dirs"][path] != machine[path], (host, path)
        assert "%s/24" % fleet.address(host) in facts["addresses"]
        assert "%s/24" % fleet.guest_net_address(host) in facts["addresses"]
        # The host's own NAT network (the same subnet on every host) lives in its own namespace.
        assert "192.168.122.1/24" in facts["addresses"]
        seen[host] = facts
    for key in ("host_uuid",):
        values = [facts[key] for facts in seen.values()]
        assert len(set(values)) == len(values), values
    for path in PRIVATE_DIRS:
        idents = {facts["dirs"][path] for facts in seen.values()}
        assert len(idents) == fleet.size, (path, idents)


def test_hypervisors_reach_each_other_over_qemu_ssh(fleet):
    """What live migration between hypervisors needs: qemu+ssh:// as root, with the hosts' own keys."""
    for source, target in zip(fleet.hosts, fleet.hosts[1:] + fleet.hosts[:1]):
        out = fleet.ssh(source, "virsh -c qemu+ssh://root@%s/system hostname" % target).stdout
        assert out.strip() == target
