# -*- coding: utf-8 -*-
"""kvm_network and kvm_network_info through their real main(), against
libvirt's test driver (test:///default). The test driver keeps its state while
one connection stays open, so the ``conn`` fixture holds one for the module's
runs."""

from __future__ import annotations

import copy
import uuid

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from ansible_collections.iaas.kvm.plugins.module_utils._network import parse_network
from tests.network_cases import BAD_NETWORK_INPUTS
from tests.state import libvirt_state

URI = "test:///default"


@pytest.fixture
def conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open(URI)
    yield connection
    connection.close()


def _remove(lookup, name, stop, remove):
    try:
        obj = lookup(name)
    except libvirt.libvirtError:
        return
    if stop and obj.isActive():
        obj.destroy()
    remove(obj)


@pytest.fixture
def made(conn):
    """Names of networks, domains and interfaces a test made; removed afterwards."""
    objects = dict(networks=[], domains=[], interfaces=[])
    yield objects
    for name in objects["domains"]:
        _remove(conn.lookupByName, name, True, lambda dom: dom.undefine())
    for name in objects["networks"]:
        _remove(conn.networkLookupByName, name, True, lambda net: net.isPersistent() and net.undefine())
    for name in objects["interfaces"]:
        _remove(conn.interfaceLookupByName, name, False, lambda iface: iface.undefine())


@pytest.fixture
def net_name(made):
    name = "iaastest-net-%s" % uuid.uuid4().hex[:6]
    made["networks"].append(name)
    return name


def nat_args(name, **extra):
    args = dict(
        uri=URI,
        name=name,
        bridge="iaast" + name[-6:],
        domain="lab.test",
        ipv4=dict(
            address="192.168.150.1",
            prefix=24,
            dhcp=dict(
                start="192.168.150.100",
                end="192.168.150.199",
                lease_time="2m",
                hosts=[dict(mac="52:54:00:00:00:01", ip="192.168.150.10", name="gpu1")],
            ),
        ),
        dns=dict(hosts=[dict(ip="192.168.150.5", hostnames=["registry"])], forwarders=["192.168.150.2"]),
    )
    args.update(extra)
    return args


def network_names(conn):
    return sorted(n.name() for n in conn.listAllNetworks(0))


def parsed(conn, name):
    return parse_network(parse_xml(conn.networkLookupByName(name).XMLDesc(0)))


def start_guest(conn, made, network, name=None):
    """A running test-driver domain with an interface on ``network``."""
    name = name or "iaastest-dom-%s" % uuid.uuid4().hex[:6]
    made["domains"].append(name)
    dom = conn.defineXML(
        "<domain type='test'><name>%s</name><memory>1024</memory><os><type>hvm</type></os>"
        "<devices><interface type='network'><source network='%s'/>"
        "<mac address='52:54:00:00:00:01'/></interface></devices></domain>" % (name, network)
    )
    dom.create()
    return name


def test_create_check_apply_again_check(conn, net_name, run_module):
    args = nat_args(net_name)
    result = run_module("kvm_network", args, check_mode=True, diff=True)
    assert result.changed and not result.failed, result
    assert result["actions"] == ["defined", "autostart on", "started"]
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["ipv4"]["dhcp"]["hosts"][0]["mac"] == "52:54:00:00:00:01"
    assert net_name not in network_names(conn)

    result = run_module("kvm_network", args, diff=True)
    assert result.changed and not result.failed, result
    net = conn.networkLookupByName(net_name)
    assert net.isActive() and net.autostart()
    facts = result["network"]
    assert facts["bridge"] == args["bridge"]
    assert facts["ipv4"]["network"] == "192.168.150.0/24"
    assert facts["ipv4"]["dhcp"]["lease_time"] == 120
    assert facts["dns"] == dict(hosts=[dict(ip="192.168.150.5", hostnames=["registry"])], forwarders=["192.168.150.2"])
    assert facts["uuid"] == net.UUIDString()

    again = run_module("kvm_network", args)
    assert not again.changed and not again.failed, again
    assert again["actions"] == []
    check = run_module("kvm_network", args, check_mode=True, diff=True)
    assert not check.changed, check
    assert check["diff"]["before"] == check["diff"]["after"]


def test_reservations_and_dns_hosts_change_live(conn, net_name, run_module):
    args = nat_args(net_name)
    assert run_module("kvm_network", args).changed
    uuid_before = conn.networkLookupByName(net_name).UUIDString()
    changed = copy.deepcopy(args)
    changed["ipv4"]["dhcp"]["hosts"] = [
        dict(mac="52:54:00:00:00:01", ip="192.168.150.11", name="gpu1"),
        dict(mac="52:54:00:00:00:02", ip="192.168.150.12", name="gpu2"),
    ]
    changed["dns"]["hosts"] = [dict(ip="192.168.150.6", hostnames=["cache", "registry"])]
    changed["ipv4"]["dhcp"]["lease_time"] = "1h"

    check = run_module("kvm_network", changed, check_mode=True, diff=True)
    assert check.changed
    assert check["actions"] == ["defined", "updated live: ipv4.dhcp.ranges, ipv4.dhcp.hosts, dns.hosts"]
    assert parsed(conn, net_name)["ipv4"]["dhcp"]["hosts"][0]["ip"] == "192.168.150.10"  # check mode touched nothing
    assert check["diff"]["after"]["ipv4.dhcp.hosts"][1]["mac"] == "52:54:00:00:00:02"

    result = run_module("kvm_network", changed)
    assert result.changed and not result.failed, result
    assert "restarted" not in result["actions"]
    live = parsed(conn, net_name)
    assert live["ipv4"]["dhcp"]["hosts"] == [
        dict(mac="52:54:00:00:00:01", ip="192.168.150.11", name="gpu1"),
        dict(mac="52:54:00:00:00:02", ip="192.168.150.12", name="gpu2"),
    ]
    assert live["dns"]["hosts"] == [dict(ip="192.168.150.6", hostnames=["cache", "registry"])]
    assert live["ipv4"]["dhcp"]["ranges"][0]["lease_time"] == 3600
    assert conn.networkLookupByName(net_name).UUIDString() == uuid_before
    assert not run_module("kvm_network", changed).changed
    assert not run_module("kvm_network", changed, check_mode=True).changed


def test_restart_needing_change_without_guests_restarts(conn, net_name, run_module):
    args = nat_args(net_name)
    run_module("kvm_network", args)
    moved = nat_args(
        net_name,
        ipv4=dict(address="192.168.151.1", prefix=24, dhcp=dict(start="192.168.151.100", end="192.168.151.199")),
        dns=None,
    )
    check = run_module("kvm_network", moved, check_mode=True)
    assert check.changed and check["actions"] == ["defined", "restarted"]
    result = run_module("kvm_network", moved)
    assert result.changed and not result.failed, result
    assert result["actions"] == ["defined", "restarted"]
    assert result["restart_required"] is False
    assert conn.networkLookupByName(net_name).isActive()
    # The test driver forgets a new persistent definition of a running network
    # when it stops it (real libvirtd starts it with the new one), so what the
    # restart brought is checked in the lab (tests/integration/test_network.py).


REFUSALS = [
    pytest.param(
        dict(ipv4=dict(address="192.168.151.1", prefix=24)),
        ["defined", "restarted", "reattached {guest}"],
        True,
        "needs a restart to apply ipv4.address",
        id="subnet-change",
    ),
    pytest.param(dict(active=False), ["stopped"], False, "stop them first", id="stop"),
    pytest.param(dict(state="absent"), ["stopped", "undefined"], False, "stop them first", id="remove"),
]


@pytest.mark.parametrize("check_mode", [False, True], ids=["apply", "check"])
@pytest.mark.parametrize(("extra", "actions", "restart_required", "message"), REFUSALS)
def test_refusal_with_a_running_guest_changes_nothing(
    conn, net_name, made, run_module, extra, actions, restart_required, message, check_mode
):
    args = nat_args(net_name)
    run_module("kvm_network", args)
    guest = start_guest(conn, made, net_name)
    before = libvirt_state(conn)
    refused = run_module("kvm_network", dict(args, **extra), check_mode=check_mode, fails=True)
    assert message in refused["msg"] and guest in refused["msg"] and "force: true" in refused["msg"], refused
    assert refused["changed"] is False
    assert refused["actions"] == [a.format(guest=guest) for a in actions]
    assert refused["restart_required"] is restart_required
    # the persistent and the live definitions, the guest and everything else are as they were
    assert libvirt_state(conn) == before
    assert parsed(conn, net_name)["ipv4"]["address"] == "192.168.150.1"


def test_absent_and_active_false(conn, net_name, run_module):
    args = nat_args(net_name)
    run_module("kvm_network", args)
    stopped = run_module("kvm_network", dict(args, active=False, autostart=False))
    assert stopped.changed and stopped["actions"] == ["autostart off", "stopped"]
    assert not conn.networkLookupByName(net_name).isActive()
    assert not run_module("kvm_network", dict(args, active=False, autostart=False)).changed
    # a restart-needing change on a stopped network is only a new definition
    moved = run_module("kvm_network", dict(args, mtu=9000, active=False, autostart=False))
    assert moved["actions"] == ["defined"]
    assert parsed(conn, net_name)["mtu"] == 9000

    check = run_module("kvm_network", dict(uri=URI, name=net_name, state="absent"), check_mode=True, diff=True)
    assert check.changed and check["diff"]["after"] == {} and check["diff"]["before"]["name"] == net_name
    assert net_name in network_names(conn)
    gone = run_module("kvm_network", dict(uri=URI, name=net_name, state="absent"))
    assert gone.changed and gone["actions"] == ["undefined"]
    assert net_name not in network_names(conn)
    assert not run_module("kvm_network", dict(uri=URI, name=net_name, state="absent")).changed
    assert not run_module("kvm_network", dict(uri=URI, name=net_name, state="absent"), check_mode=True).changed


def test_absent_with_force_removes_a_network_in_use(conn, net_name, made, run_module):
    run_module("kvm_network", nat_args(net_name))
    start_guest(conn, made, net_name)
    result = run_module("kvm_network", dict(uri=URI, name=net_name, state="absent", force=True))
    assert result.changed and not result.failed, result
    assert net_name not in network_names(conn)


def test_modes_round_trip_through_the_module(conn, made, run_module):
    bridge = "iaastbr" + uuid.uuid4().hex[:6]
    conn.interfaceDefineXML("<interface type='bridge' name='%s'><bridge/></interface>" % bridge)
    made["interfaces"].append(bridge)
    specs = dict(
        route=dict(mode="route", ipv4=dict(address="192.168.152.1", prefix=24)),
        isolated=dict(mode="isolated", mtu=9000),
        open=dict(mode="open", ipv4=dict(address="192.168.153.1", prefix=25)),
        bridge=dict(mode="bridge", bridge=bridge),
    )
    for mode, spec in specs.items():
        name = "iaastest-%s-%s" % (mode, uuid.uuid4().hex[:4])
        made["networks"].append(name)
        args = dict(uri=URI, name=name, **spec)
        first = run_module("kvm_network", args)
        assert first.changed and not first.failed, first
        assert first["network"]["mode"] == mode
        assert parsed(conn, name)["mode"] == mode
        assert not run_module("kvm_network", args).changed
        assert not run_module("kvm_network", args, check_mode=True).changed


def test_mode_change_keeps_uuid_and_other_elements(conn, net_name, run_module):
    xml = (
        "<network><name>%s</name><forward mode='nat'/><bridge name='iaastx%s'/>"
        "<ip address='192.168.154.1' prefix='24'/><ip family='ipv6' address='fd00:154::1' prefix='64'/>"
        "<portgroup name='web'/></network>" % (net_name, net_name[-6:])
    )
    # Stopped networks: the test driver shows a running network's new definition only after a real restart.
    common = dict(uri=URI, name=net_name, active=False, autostart=False)
    created = run_module("kvm_network", dict(common, xml=xml))
    assert created.changed and not created.failed, created
    assert not run_module("kvm_network", dict(common, xml=xml)).changed
    uuid_before = conn.networkLookupByName(net_name).UUIDString()
    routed = dict(common, mode="route", ipv4=dict(address="192.168.154.1", prefix=24))
    result = run_module("kvm_network", routed)
    assert result.changed and result["actions"] == ["defined"], result
    assert parsed(conn, net_name)["mode"] == "route"
    text = conn.networkLookupByName(net_name).XMLDesc(0)
    assert "fd00:154::1" in text and "portgroup" in text
    assert conn.networkLookupByName(net_name).UUIDString() == uuid_before
    assert not run_module("kvm_network", routed).changed
    # the XML again: only the forward mode differs
    back = run_module("kvm_network", dict(common, xml=xml), diff=True)
    assert back.changed and back["diff"]["before"]["mode"] == "route" and back["diff"]["after"]["mode"] == "nat"
    assert parsed(conn, net_name)["mode"] == "nat"
    # an element outside the spec's fields counts too when the task gives xml
    changed_xml = xml.replace("fd00:154::1", "fd00:154::2")
    other = run_module("kvm_network", dict(common, xml=changed_xml), check_mode=True, diff=True)
    assert other.changed and other["actions"] == ["defined"], other
    before, after = other["diff"]["before"], other["diff"]["after"]
    assert [key for key in after if before.get(key) != after[key]] == ["other"]
    assert run_module("kvm_network", dict(common, xml=changed_xml)).changed
    assert "fd00:154::2" in conn.networkLookupByName(net_name).XMLDesc(0)
    assert not run_module("kvm_network", dict(common, xml=changed_xml)).changed


BAD = [
    *BAD_NETWORK_INPUTS,
    (
        "mode bridge on an interface that is not a bridge",
        dict(mode="bridge", bridge="eth1"),
        "the hypervisor's interface eth1 is of type ethernet",
    ),
    (
        "a libvirt bridge named like a host interface",
        dict(bridge="eth1", ipv4=dict(address="192.168.150.1")),
        "The hypervisor already has an interface named eth1",
    ),
    ("xml with another name", dict(xml="<network><name>other</name></network>"), "defines network 'other'"),
    ("xml and a spec option", dict(xml="<network/>", mtu=1500), "parameters are mutually exclusive: xml|mtu"),
    ("bad network name", dict(name="a/b", ipv4=dict(address="192.168.150.1")), "must not contain path separators"),
]


@pytest.mark.parametrize("extra, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
@pytest.mark.parametrize("check_mode", [False, True], ids=["apply", "check"])
def test_bad_input_fails_with_one_sentence_and_no_side_effect(conn, net_name, run_module, extra, message, check_mode):
    networks_before = network_names(conn)
    args = dict(dict(uri=URI, name=net_name), **extra)
    result = run_module("kvm_network", args, check_mode=check_mode, fails=True)
    assert result.failed, result
    assert message in result["msg"]
    assert result["msg"].count("\n") == 0
    assert not result.changed
    assert network_names(conn) == networks_before


def test_bad_input_on_an_existing_network_changes_nothing(conn, net_name, run_module):
    args = nat_args(net_name)
    run_module("kvm_network", args)
    xml_before = conn.networkLookupByName(net_name).XMLDesc(0)
    bad = copy.deepcopy(args)
    bad["ipv4"]["dhcp"]["hosts"].append(dict(mac="52:54:00:00:00:01", ip="192.168.150.11"))
    result = run_module("kvm_network", bad, fails=True)
    assert result.failed and "have the same mac" in result["msg"]
    assert conn.networkLookupByName(net_name).XMLDesc(0) == xml_before


def test_info_module(conn, net_name, run_module):
    run_module("kvm_network", nat_args(net_name))
    one = run_module("kvm_network_info", dict(uri=URI, name=net_name))
    assert not one.changed and not one.failed
    (facts,) = one["networks"]
    assert facts["name"] == net_name and facts["active"] and facts["persistent"]
    assert facts["ipv4"]["dhcp"]["hosts"] == [dict(mac="52:54:00:00:00:01", ip="192.168.150.10", name="gpu1")]
    assert facts["leases"] == []  # the test driver keeps no leases
    assert facts["restart_required"] is False
    every = run_module("kvm_network_info", dict(uri=URI))
    names = [n["name"] for n in every["networks"]]
    assert net_name in names and "default" in names and names == sorted(names)
    assert run_module("kvm_network_info", dict(uri=URI, name="iaastest-none"))["networks"] == []
