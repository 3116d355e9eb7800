# -*- coding: utf-8 -*-
"""kvm_network_host through its real main(), against libvirt's test driver
(test:///default), which keeps one definition per network and applies
virNetworkUpdate to it. That the entries reach the running network and the
persistent definition of a real libvirtd, and survive many parallel tasks, is
checked on the lab's fleet (tests/fleet/test_concurrency.py)."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from ansible_collections.iaas.kvm.plugins.module_utils._network import parse_network
from tests.unit.plugins.modules.testdriver import TEST_URI as URI
from tests.unit.plugins.modules.testdriver import emptied_test_driver

MAC1 = "52:54:00:00:01:01"
MAC2 = "52:54:00:00:01:02"


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


def define(conn, name, body, active=True):
    net = conn.networkDefineXML("<network><name>%s</name>%s</network>" % (name, body))
    net.setAutostart(1)
    if active:
        net.create()
    return net


NAT = (
    "<forward mode='nat'/><ip address='192.168.152.1' prefix='24'>"
    "<dhcp><range start='192.168.152.100' end='192.168.152.199'/></dhcp></ip>"
)


@pytest.fixture
def network(conn):
    """A running NAT network with DHCP and no entries; removed afterwards."""
    names = []

    def make(body=NAT, active=True):
        name = "iaastest-nh-%s" % uuid.uuid4().hex[:6]
        names.append(name)
        define(conn, name, body, active)
        return name

    yield make
    for name in names:
        try:
            net = conn.networkLookupByName(name)
        except libvirt.libvirtError:
            continue
        if net.isActive():
            net.destroy()
        net.undefine()


def entries(conn, name):
    spec = parse_network(parse_xml(conn.networkLookupByName(name).XMLDesc(0)))
    dhcp = (spec["ipv4"] or {}).get("dhcp") or {}
    return dhcp.get("hosts") or [], spec["dns"]["hosts"]


def run(run_module, check_mode=False, diff=False, fails=False, **args):
    return run_module("kvm_network_host", dict(uri=URI, **args), check_mode=check_mode, diff=diff, fails=fails)


def test_add_check_apply_again_check(conn, network, run_module):
    name = network()
    args = dict(network=name, mac=MAC1, ip="192.168.152.10", hostname="web-1")
    check = run(run_module, check_mode=True, diff=True, **args)
    assert not check.failed and check.changed, check
    assert check["actions"] == [
        "added reservation 52:54:00:00:01:01 192.168.152.10 web-1 (live, persistent)",
        "added DNS record 192.168.152.10 web-1 (live, persistent)",
    ]
    assert check["diff"] == dict(
        before=dict(reservation=None, dns_host=None),
        after=dict(
            reservation=dict(mac=MAC1, ip="192.168.152.10", name="web-1"),
            dns_host=dict(ip="192.168.152.10", hostnames=["web-1"]),
        ),
    )
    assert entries(conn, name) == ([], [])  # check mode wrote nothing

    result = run(run_module, diff=True, **args)
    assert not result.failed and result.changed, result
    assert result["actions"] == check["actions"]
    assert result["reservation"] == check["diff"]["after"]["reservation"]
    assert result["dns_host"] == check["diff"]["after"]["dns_host"]
    assert entries(conn, name) == (
        [dict(mac=MAC1, ip="192.168.152.10", name="web-1")],
        [dict(ip="192.168.152.10", hostnames=["web-1"])],
    )

    again = run(run_module, **args)
    assert not again.failed and not again.changed, again
    assert again["actions"] == []
    check = run(run_module, check_mode=True, diff=True, **args)
    assert not check.failed and not check.changed, check
    assert check["diff"]["before"] == check["diff"]["after"]


def test_a_changed_entry_is_modified_in_place_and_its_dns_record_replaced(conn, network, run_module):
    name = network()
    first = run(run_module, network=name, mac=MAC1, ip="192.168.152.10", hostname="web-1")
    assert not first.failed and first.changed
    other = run(run_module, network=name, mac=MAC2, ip="192.168.152.20", hostname="db-1")
    assert not other.failed and other.changed

    moved = dict(network=name, mac=MAC1, ip="192.168.152.11", hostname="web-1", dns_names=["web-1", "www"])
    result = run(run_module, **moved)
    assert not result.failed and result.changed, result
    assert result["actions"] == [
        "modified reservation 52:54:00:00:01:01 192.168.152.10 web-1 to 52:54:00:00:01:01 192.168.152.11 web-1"
        " (live, persistent)",
        "deleted DNS record 192.168.152.10 web-1 (live, persistent)",
        "added DNS record 192.168.152.11 web-1,www (live, persistent)",
    ]
    reservations, dns_hosts = entries(conn, name)
    assert sorted(h["ip"] for h in reservations) == ["192.168.152.11", "192.168.152.20"]
    # The record of the MAC's old address went with it; the other VM's stays.
    assert dns_hosts == [
        dict(ip="192.168.152.11", hostnames=["web-1", "www"]),
        dict(ip="192.168.152.20", hostnames=["db-1"]),
    ]

    only_www = dict(moved)
    only_www["dns_names"] = ["www"]
    renamed = run(run_module, **only_www)
    assert not renamed.failed and renamed.changed, renamed
    assert renamed["actions"] == [
        "deleted DNS record 192.168.152.11 web-1,www (live, persistent)",
        "added DNS record 192.168.152.11 www (live, persistent)",
    ]
    assert not run(run_module, **only_www).changed


def test_dns_only_and_absent(conn, network, run_module):
    name = network()
    record = run(run_module, network=name, ip="192.168.152.5", dns_names=["registry"])
    assert not record.failed and record.changed, record
    assert record["reservation"] is None
    assert entries(conn, name) == ([], [dict(ip="192.168.152.5", hostnames=["registry"])])

    made = run(run_module, network=name, mac=MAC1, ip="192.168.152.10", hostname="web-1")
    assert not made.failed and made.changed
    # Without hostname and dns_names the DNS record of an address is left alone.
    kept = run(run_module, network=name, mac=MAC2, ip="192.168.152.5")
    assert not kept.failed and kept.changed, kept
    assert kept["actions"] == ["added reservation 52:54:00:00:01:02 192.168.152.5 (live, persistent)"]
    assert kept["dns_host"] == dict(ip="192.168.152.5", hostnames=["registry"])

    check = run(run_module, check_mode=True, network=name, mac=MAC1, state="absent")
    assert not check.failed and check.changed, check
    assert check["actions"] == [
        "deleted reservation 52:54:00:00:01:01 192.168.152.10 web-1 (live, persistent)",
        "deleted DNS record 192.168.152.10 web-1 (live, persistent)",
    ]
    assert len(entries(conn, name)[0]) == 2
    gone = run(run_module, network=name, mac=MAC1, state="absent")
    assert not gone.failed and gone.changed, gone
    assert gone["reservation"] is None and gone["dns_host"] is None
    reservations, dns_hosts = entries(conn, name)
    assert [h["mac"] for h in reservations] == [MAC2]
    assert dns_hosts == [dict(ip="192.168.152.5", hostnames=["registry"])]
    again = run(run_module, network=name, mac=MAC1, state="absent")
    assert not again.failed and not again.changed, again

    by_ip = run(run_module, network=name, ip="192.168.152.5", state="absent")
    assert not by_ip.failed and by_ip.changed, by_ip
    assert entries(conn, name) == ([], [])


def test_many_entries_one_at_a_time_keep_each_other(conn, network, run_module):
    name = network()
    for i in range(1, 11):
        result = run(
            run_module,
            network=name,
            mac="52:54:00:00:02:%02x" % i,
            ip="192.168.152.%d" % (10 + i),
            hostname="vm-%d" % i,
        )
        assert not result.failed and result.changed, result
    reservations, dns_hosts = entries(conn, name)
    assert sorted(h["name"] for h in reservations) == sorted("vm-%d" % i for i in range(1, 11))
    assert sorted(h["hostnames"][0] for h in dns_hosts) == sorted("vm-%d" % i for i in range(1, 11))


def test_an_inactive_network_gets_the_entry_in_its_persistent_definition(conn, network, run_module):
    name = network(active=False)
    result = run(run_module, network=name, mac=MAC1, ip="192.168.152.10", hostname="web-1")
    assert not result.failed and result.changed, result
    assert result["actions"][0].endswith("(persistent)")
    assert entries(conn, name)[0] == [dict(mac=MAC1, ip="192.168.152.10", name="web-1")]
    assert not run(run_module, network=name, mac=MAC1, ip="192.168.152.10", hostname="web-1").changed


def test_kvm_network_leaves_the_entries_alone_unless_it_is_given_the_lists(conn, network, run_module):
    name = network()
    added = run(run_module, network=name, mac=MAC1, ip="192.168.152.10", hostname="web-1")
    assert not added.failed and added.changed
    spec = dict(
        uri=URI,
        name=name,
        mode="nat",
        ipv4=dict(address="192.168.152.1", prefix=24, dhcp=dict(start="192.168.152.100", end="192.168.152.199")),
    )
    # Omitted lists are not managed: the network is converged as it is.
    for check_mode in (True, False):
        same = run_module("kvm_network", spec, check_mode=check_mode, diff=True)
        assert not same.failed and not same.changed, same
        assert same["network"]["ipv4"]["dhcp"]["hosts"] == [dict(mac=MAC1, ip="192.168.152.10", name="web-1")]
    assert len(entries(conn, name)[0]) == 1
    assert len(entries(conn, name)[1]) == 1
    # Empty lists mean none: kvm_network removes them.
    spec["ipv4"]["dhcp"]["hosts"] = []
    spec["dns"] = dict(hosts=[])
    cleared = run_module("kvm_network", spec)
    assert not cleared.failed and cleared.changed, cleared
    assert entries(conn, name) == ([], [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(mac=MAC2, ip="192.168.152.10", hostname="other"), "already reserved for 52:54:00:00:01:01"),
        (dict(mac=MAC2, ip="192.168.152.11", hostname="web-1"), "already belongs to the reservation"),
        (dict(mac=MAC2, ip="192.168.152.11", dns_names=["web-1"]), "already belongs to 192.168.152.10"),
        (dict(mac=MAC2, ip="192.168.153.11"), "outside network"),
        (dict(mac=MAC2, ip="192.168.152.1"), "own, network or broadcast address"),
        (dict(mac=MAC2, ip="192.168.152.255"), "own, network or broadcast address"),
        (dict(mac="01:00:5e:00:00:01", ip="192.168.152.11"), "multicast MAC address"),
        (dict(mac="not-a-mac", ip="192.168.152.11"), "is not a MAC address"),
        (dict(mac=MAC2, ip="192.168.152.300"), "is not an IPv4 address"),
        (dict(mac=MAC2, ip="192.168.152.11", hostname="bad_name"), "is not a valid host name"),
        (dict(ip="192.168.152.11"), "Nothing to manage"),
    ],
)
@pytest.mark.parametrize("check_mode", [False, True])
def test_conflicts_and_bad_input_are_refused_without_a_change(conn, network, run_module, args, message, check_mode):
    name = network()
    first = run(run_module, network=name, mac=MAC1, ip="192.168.152.10", hostname="web-1")
    assert not first.failed and first.changed
    before = entries(conn, name)
    refused = run(run_module, check_mode=check_mode, fails=True, network=name, **args)
    assert refused.failed, refused  # a refusal is expected
    assert message in refused["msg"], refused["msg"]
    assert refused["msg"].count(". ") == 0 and refused["msg"].endswith(".")
    assert not refused.changed and refused["actions"] == []
    assert entries(conn, name) == before


@pytest.mark.parametrize(
    ("body", "args", "message"),
    [
        ("<forward mode='bridge'/><bridge name='iaastnhbr'/>", dict(mac=MAC1, ip="192.168.152.10"), "serves no DHCP"),
        ("<forward mode='bridge'/><bridge name='iaastnhbr'/>", dict(ip="192.168.152.10", dns_names=["a"]), "no IPv4"),
        ("<ip address='192.168.152.1' prefix='24'/>", dict(mac=MAC1, ip="192.168.152.10"), "serves no DHCP"),
    ],
)
def test_networks_without_dhcp_or_dns_refuse_entries(conn, network, run_module, body, args, message):
    name = network(body)
    refused = run(run_module, fails=True, network=name, **args)
    assert refused.failed and message in refused["msg"], refused  # a refusal is expected
    assert not refused.changed


def test_a_missing_network_and_missing_options_are_refused(network, run_module):
    missing = run(run_module, fails=True, network="iaastest-nh-missing", mac=MAC1, ip="192.168.152.10")
    assert missing.failed and "does not exist" in missing["msg"], missing  # a failure is expected
    no_ip = run(run_module, fails=True, network=network(), mac=MAC1)
    assert no_ip.failed and "ip" in no_ip["msg"], no_ip  # state present needs ip
    nothing = run(run_module, network="iaastest-nh-missing", mac=MAC1, state="absent", diff=True)
    assert not nothing.failed and not nothing.changed, nothing  # no network, no entry to remove
    assert nothing["diff"]["before"] == nothing["diff"]["after"]
    absent = run(run_module, fails=True, network=network(), state="absent")
    assert absent.failed and "mac, ip" in absent["msg"], absent  # absent needs mac or ip
