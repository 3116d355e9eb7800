# -*- coding: utf-8 -*-
"""kvm_network with a running guest on the network (one guest boot).

1. DHCP reservations, DNS hosts and a new DHCP range are applied while an ICMP
   echo series (every 0.2 s) and an SSH session run across the changes from
   inside the lab namespace: every echo comes back, the session prints every
   line, the bridge is never recreated.
2. The guest resolves the names the network serves: DHCP clients by the host
   name they sent, DNS hosts, reservations.
3. A subnet change is refused while the guest runs (the message names it), then
   applied with force: the network restarts, the guest's interface is put back
   on the bridge and the guest is reachable again at its new address.

Subnets: 192.168.156.0/24, then 192.168.157.0/24.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import LAB_NETNS, lab_run, ssh_command, wait_for_ssh
from tests.integration.nettools import kvm_network, kvm_network_info, link, nat_spec, networks, ports

__all__ = ["networks"]  # a fixture

pytestmark = [pytest.mark.lab, pytest.mark.guest]

NETPROBE = str(Path(__file__).with_name("netprobe.py"))


def spec_for(name, bridge, third, reservations=(), dns_hosts=(), start=100, end=199):
    # dnsmasq's shortest lease: the guest follows a forced subnet change within it
    return nat_spec(name, bridge, third, reservations, dns_hosts, start, end, lease_time="2m")


def start_probes(guest, ip, seconds):
    """An ICMP echo series and an SSH session that prints a line every 0.25 s, both in the background."""
    count = int(seconds / 0.2)
    ping = subprocess.Popen(
        ["ip", "netns", "exec", LAB_NETNS, sys.executable, NETPROBE, ip, "--count", str(count), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ticks = int(seconds / 0.25)
    script = "for i in $(seq 1 %d); do echo tick $i; sleep 0.25; done" % ticks
    ssh = subprocess.Popen(
        ["ip", "netns", "exec", LAB_NETNS, *ssh_command(guest.key, ip, script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return ping, ssh, count, ticks


def resolve(guest, name):
    """The IPv4 addresses ``name`` resolves to inside the guest (its resolver is the network's dnsmasq)."""
    res = guest.ssh("getent ahostsv4 %s || true" % name)
    return sorted({line.split()[0] for line in res.stdout.splitlines() if line.strip()})


def test_live_changes_keep_the_guest_connected_then_force_moves_it(lab_conn, networks, guest_factory, unique_name):  # noqa: PLR0915 - one guest through every live change, checked after each
    name, bridge = networks()
    base = spec_for(name, bridge, 156)
    assert kvm_network(base).changed

    guest_name = unique_name("netg")
    guest = guest_factory(guest_name, network=name)
    ip = guest.wait_for_ip()
    guest.wait_for_ssh()
    mac = kvm_network_info(name)["leases"][0]["mac"]
    # The host name a guest sent with its DHCP request resolves for every guest of the
    # network (the guest's own /etc/hosts does not hold it).
    assert guest_name not in guest.ssh("cat /etc/hosts").stdout
    assert resolve(guest, guest_name) == [ip]
    assert resolve(guest, "%s.lab.test" % guest_name) == [ip]
    ifindex = link(bridge)["ifindex"]
    taps = ports(bridge)
    assert len(taps) == 1

    # 1. live changes under an echo series and an SSH session
    reservations = [
        dict(mac=mac, ip=ip, name="pinned"),
        dict(mac="52:54:00:15:60:02", ip="192.168.156.20", name="gpu2"),
    ]
    dns_hosts = [dict(ip="192.168.156.5", hostnames=["registry", "registry.lab.test"])]
    with_hosts = spec_for(name, bridge, 156, reservations, dns_hosts)
    with_range = spec_for(name, bridge, 156, reservations, dns_hosts, start=120, end=180)
    ping, ssh, count, ticks = start_probes(guest, ip, seconds=16)
    time.sleep(4)
    first = kvm_network(with_hosts)
    time.sleep(4)
    second = kvm_network(with_range)
    ping_out, ping_err = ping.communicate(timeout=60)
    ssh_out, ssh_err = ssh.communicate(timeout=60)

    assert first.changed and first["actions"] == ["defined", "updated live: ipv4.dhcp.hosts, dns.hosts"], first
    assert second.changed and second["actions"] == ["defined", "updated live: ipv4.dhcp.ranges"], second
    echoes = json.loads(ping_out)
    assert echoes["sent"] == count and echoes["received"] == count and echoes["lost"] == [], (echoes, ping_err)
    assert ssh.returncode == 0, ssh_err
    assert ssh_out.split("\n")[:-1] == ["tick %d" % i for i in range(1, ticks + 1)]
    assert link(bridge)["ifindex"] == ifindex and ports(bridge) == taps
    print(
        "\nlive update: %d/%d echoes back (max %.1f ms), SSH session printed %d/%d lines"
        % (echoes["received"], echoes["sent"], echoes["max_rtt_ms"], len(ssh_out.split("\n")) - 1, ticks)
    )
    assert not kvm_network(with_range).changed
    assert not kvm_network(with_range, check_mode=True).changed

    # 2. names served by the network's dnsmasq, as the guest resolves them: DNS hosts added
    # live, and a reservation's name once the guest renewed its lease (within half of it)
    assert resolve(guest, "registry") == ["192.168.156.5"]
    assert resolve(guest, "registry.lab.test") == ["192.168.156.5"]
    deadline = time.monotonic() + 90
    while resolve(guest, "pinned.lab.test") != [ip] and time.monotonic() < deadline:
        time.sleep(5)
    assert resolve(guest, "pinned.lab.test") == [ip]

    # 3. a subnet change: refused while the guest runs, then forced
    new_ip = "192.168.157.50"
    moved = spec_for(name, bridge, 157, [dict(mac=mac, ip=new_ip, name="pinned")], start=120, end=180)
    net = lab_conn.networkLookupByName(name)
    definitions = (net.XMLDesc(0), net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    would = ["defined", "restarted", "reattached " + guest_name]
    for check_mode in (False, True):
        refused = kvm_network(moved, check_mode=check_mode, fails=True)
        assert refused["restart_required"] is True, refused
        assert guest_name in refused["msg"] and "force: true" in refused["msg"] and "ipv4.address" in refused["msg"]
        assert refused["changed"] is False and refused["actions"] == would, refused
        # neither the running nor the persistent definition holds the change
        assert (net.XMLDesc(0), net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)) == definitions
    facts = kvm_network_info(name)
    assert facts["ipv4"]["address"] == "192.168.156.1" and facts["restart_required"] is False
    assert facts["guests"] == [guest_name]
    assert guest.ssh("true").returncode == 0  # still reachable at its old address

    started = time.monotonic()
    forced = kvm_network(dict(moved, force=True))
    assert forced.changed and not forced.failed, forced
    assert forced["actions"] == would
    assert forced["reattached"] == [guest_name] and forced["restart_required"] is False
    assert ports(bridge) == taps  # the guest's tap is back on the (new) bridge
    seconds = wait_for_ssh(guest.key, new_ip, timeout=300)
    guest.ip = new_ip
    addr = guest.ssh("ip -4 -o addr show scope global").stdout
    assert new_ip + "/24" in addr and "192.168.156." not in addr
    assert lab_run(["ip", "-j", "-4", "addr", "show", bridge]).stdout.count("192.168.157.1") == 1
    print("forced subnet change: guest reachable at %s after %.0fs" % (new_ip, time.monotonic() - started))
    # its new lease came from the reservation, whose name the network's DNS now serves
    assert resolve(guest, "pinned.lab.test") == [new_ip]
    assert seconds <= 300
    assert not kvm_network(dict(moved, force=True)).changed
    assert kvm_network_info(name)["restart_required"] is False

    # removing a network that a running guest uses is refused too
    absent = kvm_network(dict(name=name, state="absent"), fails=True)
    assert absent.failed and guest_name in absent["msg"]
    assert lab_conn.networkLookupByName(name).isActive()
