# -*- coding: utf-8 -*-
"""The network spec <-> XML code, with every round trip going through libvirt's
test driver: the XML we build is defined there, read back, and parsed."""

from __future__ import annotations

import copy
import ipaddress
import itertools
import uuid

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError, parse_xml, to_xml
from ansible_collections.iaas.kvm.plugins.module_utils._network import (
    LIVE_FIELDS,
    apply_spec,
    differing_fields,
    fill_unmanaged,
    flatten,
    keep_identity,
    needs_restart,
    new_network_tree,
    normalise_mac,
    parse_lease_time,
    parse_network,
    validate_bridge_name,
    validate_spec,
    xml_spec,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network_live import (
    apply_live_updates,
    live_update_ops,
)

TEST_URI = "test:///default"
_counter = itertools.count()


@pytest.fixture(scope="module")
def conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open(TEST_URI)
    yield connection
    connection.close()


def unique(prefix="iaastest-net"):
    return "%s-%s-%d" % (prefix, uuid.uuid4().hex[:6], next(_counter))


def define_and_read(conn, tree, start=False):
    """Define ``tree`` in the test driver and return (network, the XML it reads back, parsed)."""
    net = conn.networkDefineXML(to_xml(tree))
    if start:
        net.create()
    return net, parse_network(parse_xml(net.XMLDesc(0)))


def remove(net):
    if net.isActive():
        net.destroy()
    net.undefine()


def compared(parsed, spec):
    """The fields of ``parsed`` and ``spec`` a round trip must keep (a bridge name only when the spec names one)."""
    with_bridge = bool(spec.get("bridge"))
    return flatten(parsed, with_bridge=with_bridge), flatten(spec, with_bridge=with_bridge)


# ---------------------------------------------------------------------------
# Strategies: module options that validate_spec accepts
# ---------------------------------------------------------------------------

LABEL = st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z")
HOSTNAME = st.builds(".".join, st.lists(LABEL, min_size=1, max_size=3))
MAC = st.builds(lambda b: "52:54:00:%02x:%02x:%02x" % tuple(b), st.lists(st.integers(0, 255), min_size=3, max_size=3))
LEASE = st.one_of(
    st.none(),
    st.just(0),
    st.integers(120, 10**6),
    st.integers(2, 600).map(lambda m: "%dm" % m),
    st.integers(1, 48).map(lambda h: "%dh" % h),
)


@st.composite
def subnets(draw):
    third = draw(st.integers(150, 159))
    prefix = draw(st.integers(24, 28))
    return draw(st.sampled_from(list(ipaddress.IPv4Network("192.168.%d.0/24" % third).subnets(prefix - 24))))


@st.composite
def dhcp_params(draw, subnet, address, taken=()):
    """A DHCP range beside ``address`` and reservations on addresses not in ``taken``."""
    free = [ip for ip in subnet.hosts() if ip != address and str(ip) not in taken]
    low, high = [ip for ip in free if ip < address], [ip for ip in free if ip > address]
    side = draw(st.sampled_from([s for s in (low, high) if s]))
    start, end = sorted(draw(st.lists(st.sampled_from(side), min_size=2, max_size=2)))
    rest = draw(st.lists(st.sampled_from(free), max_size=min(len(free), 8), unique=True))
    macs = draw(st.lists(MAC, min_size=len(rest), max_size=len(rest), unique=True))
    names = draw(st.lists(LABEL, min_size=len(rest), max_size=len(rest), unique=True))
    reservations = []
    for ip, mac, name in zip(rest, macs, names):
        entry = dict(mac=mac, ip=str(ip))
        if draw(st.booleans()):
            entry["name"] = name
        reservations.append(entry)
    return dict(start=str(start), end=str(end), lease_time=draw(LEASE), hosts=reservations)


@st.composite
def ipv4_params(draw, with_dhcp=None):
    subnet = draw(subnets())
    address = draw(st.sampled_from(list(subnet.hosts())))
    params = dict(address=str(address), prefix=subnet.prefixlen, dhcp=None)
    if with_dhcp is True or (with_dhcp is None and draw(st.booleans())):
        params["dhcp"] = draw(dhcp_params(subnet, address))
    return params


@st.composite
def dns_params(draw):
    ips = draw(
        st.lists(st.integers(1, 250).map(lambda i: "192.168.158.%d" % i), max_size=4, unique=True)
        | st.lists(st.integers(1, 250).map(lambda i: "fd00:15::%x" % i), max_size=2, unique=True)
    )
    names = draw(st.lists(HOSTNAME, min_size=3 * len(ips), max_size=3 * len(ips), unique_by=str.lower))
    hosts = [dict(ip=ip, hostnames=names[3 * i : 3 * i + draw(st.integers(1, 3))]) for i, ip in enumerate(ips)]
    forwarders = draw(st.lists(st.integers(1, 250).map(lambda i: "192.168.159.%d" % i), max_size=3, unique=True))
    return dict(hosts=hosts, forwarders=forwarders)


@st.composite
def network_params(draw):
    mode = draw(st.sampled_from(["nat", "route", "isolated", "open", "bridge"]))
    bridge = draw(st.none() | st.from_regex(r"\Aiaast[a-z0-9]{1,10}\Z"))
    if mode == "bridge":
        return dict(mode=mode, bridge=bridge or "iaastbr0")
    ipv4 = draw(ipv4_params()) if mode != "isolated" or draw(st.booleans()) else None
    params = dict(mode=mode, bridge=bridge, mtu=draw(st.none() | st.integers(68, 65535)))
    if ipv4 is not None:
        params.update(ipv4=ipv4, domain=draw(st.none() | HOSTNAME), dns=draw(dns_params()))
    return params


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------
# Round trips through libvirt
# ---------------------------------------------------------------------------


@SETTINGS
@given(params=network_params())
def test_spec_to_xml_to_spec_through_libvirt(conn, params):
    """For any valid spec: build XML, define it in libvirt, read it back, parse: the spec again."""
    spec = validate_spec(params)
    net, parsed = define_and_read(conn, apply_spec(new_network_tree(unique()), spec))
    try:
        have, want = compared(parsed, spec)
        assert have == want
        assert differing_fields(parsed, spec) == []
    finally:
        remove(net)


@SETTINGS
@given(first=network_params(), second=network_params())
def test_editing_an_existing_definition_converges(conn, first, second):
    """Applying spec B to the definition libvirt made from spec A gives B, with A's UUID."""
    spec_a, spec_b = validate_spec(first), validate_spec(second)
    name = unique()
    net, parsed_a = define_and_read(conn, apply_spec(new_network_tree(name), spec_a))
    try:
        # as kvm_network does: host lists that B omits keep A's entries
        spec_b = fill_unmanaged(spec_b, parsed_a)
        tree_b = apply_spec(parse_xml(net.XMLDesc(0)), spec_b)
        net_b, parsed_b = define_and_read(conn, tree_b)
        assert net_b.UUIDString() == parsed_a["uuid"]
        have, want = compared(parsed_b, spec_b)
        assert have == want
        # applying the same spec again changes nothing in the tree's parsed form
        again = parse_network(apply_spec(parse_xml(net_b.XMLDesc(0)), spec_b))
        assert compared(again, spec_b) == compared(parsed_b, spec_b)
    finally:
        remove(conn.networkLookupByName(name))


@SETTINGS
@given(data=st.data())
def test_live_updates_reach_the_desired_reservations_and_dns_hosts(conn, data):
    """virNetworkUpdate calls from live_update_ops turn a running network A into B's live fields."""
    ipv4 = data.draw(ipv4_params(with_dhcp=True))
    first = dict(mode="nat", ipv4=ipv4, dns=data.draw(dns_params()))
    # B: the same subnet; some of A's reservations kept (some renamed), new ones,
    # another range and lease time, other DNS hosts.
    subnet = ipaddress.IPv4Network("%s/%d" % (ipv4["address"], ipv4["prefix"]), strict=False)
    kept = [dict(h) for h in ipv4["dhcp"]["hosts"] if data.draw(st.booleans())]
    for host in kept:
        if data.draw(st.booleans()):
            host["name"] = data.draw(LABEL)
    dhcp_b = data.draw(dhcp_params(subnet, ipaddress.IPv4Address(ipv4["address"]), [h["ip"] for h in kept]))
    kept_macs = {h["mac"] for h in kept}
    dhcp_b["hosts"] = _unique_names(kept + [h for h in dhcp_b["hosts"] if h["mac"] not in kept_macs])
    second = copy.deepcopy(first)
    second["ipv4"]["dhcp"] = dhcp_b
    second["dns"]["hosts"] = data.draw(dns_params())["hosts"]
    spec_a, spec_b = validate_spec(first), validate_spec(second)
    net, live = define_and_read(conn, apply_spec(new_network_tree(unique()), spec_a), start=True)
    try:
        fields = differing_fields(live, spec_b)
        assert set(fields) <= set(LIVE_FIELDS)
        assert not needs_restart(live, spec_b, fields)
        apply_live_updates(net, live_update_ops(live, spec_b))
        after = parse_network(parse_xml(net.XMLDesc(0)))
        assert {k: flatten(after)[k] for k in LIVE_FIELDS} == {k: flatten(spec_b)[k] for k in LIVE_FIELDS}
        assert differing_fields(after, spec_b) == []
    finally:
        remove(net)


def _unique_names(hosts):
    seen = set()
    for host in hosts:
        if host.get("name") in seen:
            host.pop("name")
        elif host.get("name"):
            seen.add(host["name"])
    return hosts


def test_unmanaged_elements_survive_a_spec_edit(conn):
    xml = """<network>
      <name>%s</name>
      <forward mode='nat'><nat><port start='2000' end='3000'/></nat></forward>
      <bridge name='iaastkeep0' stp='off' delay='2'/>
      <dns><txt name='example' value='kept'/></dns>
      <ip address='192.168.150.1' netmask='255.255.255.0'>
        <tftp root='/srv/tftp'/>
        <dhcp><range start='192.168.150.100' end='192.168.150.150'/><bootp file='pxelinux.0'/></dhcp>
      </ip>
      <ip family='ipv6' address='fd00:150::1' prefix='64'/>
      <portgroup name='web' default='yes'/>
    </network>""" % unique()
    net = conn.networkDefineXML(xml)
    try:
        spec = validate_spec(
            dict(
                mode="nat",
                bridge="iaastkeep0",
                ipv4=dict(
                    address="192.168.151.1",
                    prefix=24,
                    dhcp=dict(
                        start="192.168.151.10",
                        end="192.168.151.20",
                        hosts=[dict(mac="52:54:00:00:00:01", ip="192.168.151.5")],
                    ),
                ),
                dns=dict(hosts=[dict(ip="192.168.151.5", hostnames=["a"])]),
            )
        )
        before = parse_network(parse_xml(net.XMLDesc(0)))
        tree = apply_spec(parse_xml(net.XMLDesc(0)), spec)
        net, parsed = define_and_read(conn, tree)
        have, want = compared(parsed, spec)
        assert have == want
        # what the spec does not manage is still there, unchanged
        assert parsed["other"] == before["other"]
        texts = to_xml(parse_xml(net.XMLDesc(0)))
        for kept in ("fd00:150::1", "portgroup", "txt", "tftp", "bootp", 'port start="2000"', 'stp="off"'):
            assert kept in texts
    finally:
        remove(net)


# ---------------------------------------------------------------------------
# Parsing libvirt's own forms
# ---------------------------------------------------------------------------


def test_parse_reads_netmask_and_defaults():
    tree = parse_xml(
        """<network><name>n</name><forward/><bridge name='virbr9'/>
        <ip address='192.168.152.1' netmask='255.255.254.0'>
          <dhcp><range start='192.168.152.10' end='192.168.152.20'><lease expiry='1' unit='hours'/></range>
          <host mac='52:54:00:AA:BB:CC' ip='192.168.152.5'/></dhcp></ip>
        <ip family='ipv6' address='fd00::1' prefix='64'/></network>"""
    )
    spec = parse_network(tree)
    assert spec["mode"] == "nat"  # <forward/> without mode is NAT
    assert spec["ipv4"]["prefix"] == 23
    assert spec["ipv4"]["dhcp"]["ranges"] == [dict(start="192.168.152.10", end="192.168.152.20", lease_time=3600)]
    assert spec["ipv4"]["dhcp"]["hosts"] == [dict(mac="52:54:00:aa:bb:cc", ip="192.168.152.5", name=None)]
    assert spec["other"][0]["attrs"]["family"] == "ipv6"


def test_parse_isolated_without_addresses():
    spec = parse_network(parse_xml("<network><name>n</name><bridge name='b'/></network>"))
    assert spec["mode"] == "isolated"
    assert spec["ipv4"] is None
    assert spec["dns"] == dict(hosts=[], forwarders=[])


def test_xml_spec_names_and_identity():
    tree, spec = xml_spec("<network><forward mode='route'/><ip address='192.168.153.1' prefix='24'/></network>", "n1")
    assert tree.findtext("name") == "n1"
    assert spec["mode"] == "route"
    with pytest.raises(LibvirtModuleError, match="defines network 'other', but name is 'n1'"):
        xml_spec("<network><name>other</name></network>", "n1")
    with pytest.raises(LibvirtModuleError, match="not well-formed"):
        xml_spec("<network>", "n1")
    with pytest.raises(LibvirtModuleError, match="must hold a <network>"):
        xml_spec("<domain/>", "n1")
    kept = keep_identity(tree, dict(uuid="2fd1f7ba-0acc-4430-a13b-468c94abcff2", mac="52:54:00:01:02:03", bridge="b1"))
    assert kept.findtext("uuid") == "2fd1f7ba-0acc-4430-a13b-468c94abcff2"
    assert kept.find("mac").get("address") == "52:54:00:01:02:03"
    assert kept.find("bridge").get("name") == "b1"


def test_restart_classification():
    base = validate_spec(
        dict(ipv4=dict(address="192.168.150.1", prefix=24, dhcp=dict(start="192.168.150.10", end="192.168.150.20")))
    )
    hosts = copy.deepcopy(base)
    hosts["ipv4"]["dhcp"]["hosts"] = [dict(mac="52:54:00:00:00:01", ip="192.168.150.5", name=None)]
    assert differing_fields(base, hosts) == ["ipv4.dhcp.hosts"]
    assert not needs_restart(base, hosts, ["ipv4.dhcp.hosts"])
    lease = copy.deepcopy(base)
    lease["ipv4"]["dhcp"]["ranges"][0]["lease_time"] = 600
    assert not needs_restart(base, lease, differing_fields(base, lease))
    no_dhcp = copy.deepcopy(base)
    no_dhcp["ipv4"]["dhcp"] = None
    assert needs_restart(base, no_dhcp, differing_fields(base, no_dhcp))
    moved = validate_spec(
        dict(ipv4=dict(address="192.168.151.1", prefix=24, dhcp=dict(start="192.168.151.10", end="192.168.151.20")))
    )
    assert needs_restart(base, moved, differing_fields(base, moved))


# ---------------------------------------------------------------------------
# Validation: one clear sentence per bad input
# ---------------------------------------------------------------------------


def _nat(**dhcp):
    params = dict(mode="nat", ipv4=dict(address="192.168.150.1", prefix=24, dhcp=None))
    if dhcp:
        params["ipv4"]["dhcp"] = dict(dict(start="192.168.150.100", end="192.168.150.200"), **dhcp)
    return params


def _with(params, **changes):
    params = copy.deepcopy(params)
    params.update(changes)
    return params


def _ipv4(**changes):
    params = _nat()
    params["ipv4"].update(changes)
    return params


RES = dict(mac="52:54:00:00:00:01", ip="192.168.150.10")
BAD = [
    ("range start outside", _nat(start="192.168.151.100"), "The DHCP range start 192.168.151.100 is outside"),
    ("range end outside", _nat(end="192.168.151.5"), "The DHCP range end 192.168.151.5 is outside the subnet"),
    ("range reversed", _nat(start="192.168.150.200", end="192.168.150.100"), "comes after its end"),
    ("range holds own address", _nat(start="192.168.150.1"), "contains the network's own address"),
    ("range start not an address", _nat(start="192.168.150"), "is not an IPv4 address"),
    (
        "reservation outside",
        _nat(hosts=[dict(RES, ip="192.168.160.10")]),
        "reservation address 192.168.160.10 is outside",
    ),
    ("reservation is own address", _nat(hosts=[dict(RES, ip="192.168.150.1")]), "is the network's own address"),
    ("reservation is broadcast", _nat(hosts=[dict(RES, ip="192.168.150.255")]), "network or broadcast address"),
    (
        "duplicate MAC",
        _nat(hosts=[RES, dict(RES, ip="192.168.150.11")]),
        "have the same mac 52:54:00:00:00:01",
    ),
    (
        "duplicate MAC, other spelling",
        _nat(hosts=[RES, dict(mac="52-54-00-00-00-01", ip="192.168.150.11")]),
        "have the same mac",
    ),
    (
        "duplicate IP",
        _nat(hosts=[RES, dict(mac="52:54:00:00:00:02", ip="192.168.150.10")]),
        "have the same ip 192.168.150.10",
    ),
    (
        "duplicate name",
        _nat(hosts=[dict(RES, name="a"), dict(mac="52:54:00:00:00:02", ip="192.168.150.11", name="A")]),
        "have the same name a",
    ),
    ("invalid MAC", _nat(hosts=[dict(RES, mac="52:54:00:00:01")]), "is not a MAC address"),
    ("invalid MAC hex", _nat(hosts=[dict(RES, mac="52:54:00:00:00:zz")]), "is not a MAC address"),
    ("multicast MAC", _nat(hosts=[dict(RES, mac="01:00:5e:00:00:01")]), "is a multicast MAC address"),
    ("bad reservation name", _nat(hosts=[dict(RES, name="a_b")]), "is not a valid reservation name"),
    ("prefix 33", _ipv4(prefix=33), "ipv4.prefix 33 is not a prefix length between 0 and 32"),
    ("prefix negative", _ipv4(prefix=-1), "is not a prefix length"),
    ("address is network address", _ipv4(address="192.168.150.0"), "is the network or broadcast address"),
    ("address not IPv4", _ipv4(address="fd00::1"), "ipv4.address 'fd00::1' is not an IPv4 address"),
    ("unknown mode", _with(_nat(), mode="macvtap"), "mode 'macvtap' is not one of nat, route, isolated, open, bridge"),
    (
        "bridge name 16 chars",
        _with(_nat(), bridge="iaastbridgename1"),
        "is 16 characters long; Linux allows at most 15",
    ),
    ("bridge name with slash", _with(_nat(), bridge="iaast/x"), "must not contain '/'"),
    ("bridge mode without bridge", dict(mode="bridge"), "mode bridge needs bridge"),
    ("bridge mode with ipv4", _with(_nat(), mode="bridge", bridge="br0"), "mode bridge connects guests"),
    ("bridge mode with mtu", dict(mode="bridge", bridge="br0", mtu=9000), "mtu cannot be set with mode bridge"),
    ("nat without ipv4", dict(mode="nat"), "mode nat needs ipv4"),
    ("route without ipv4", dict(mode="route"), "mode route needs ipv4"),
    ("dns without ipv4", dict(mode="isolated", dns=dict(forwarders=["192.168.150.2"])), "dns and domain need ipv4"),
    ("mtu too small", _with(_nat(), mtu=10), "mtu 10 is not between 68 and 65535"),
    ("lease too short", _nat(lease_time=60), "shorter than dnsmasq's minimum of 120 seconds"),
    ("lease nonsense", _nat(lease_time="soon"), "is not a number of seconds"),
    ("bad domain", _with(_nat(), domain="-bad-.example"), "is not a valid DNS domain"),
    (
        "dns host twice",
        _with(
            _nat(),
            dns=dict(hosts=[dict(ip="192.168.150.5", hostnames=["a"]), dict(ip="192.168.150.5", hostnames=["b"])]),
        ),
        "dns.hosts lists 192.168.150.5 twice",
    ),
    (
        "dns host without names",
        _with(_nat(), dns=dict(hosts=[dict(ip="192.168.150.5", hostnames=[])])),
        "needs at least one host name",
    ),
    (
        "forwarder not an IP",
        _with(_nat(), dns=dict(forwarders=["dns.example"])),
        "The DNS forwarder 'dns.example' is not an IP",
    ),
]


@pytest.mark.parametrize("params, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_validation_table(params, message):
    with pytest.raises(LibvirtModuleError) as info:
        validate_spec(params)
    text = str(info.value)
    assert message in text
    # one sentence: ends with a full stop, no line breaks
    assert text.endswith(".") and "\n" not in text


@pytest.mark.parametrize(
    "value, seconds",
    [(None, None), (120, 120), ("120", 120), ("2m", 120), ("1h", 3600), ("2d", 172800), ("infinite", 0), (0, 0)],
)
def test_lease_time_forms(value, seconds):
    assert parse_lease_time(value) == seconds


@pytest.mark.parametrize("value", [True, "1w", "-5", 119, "1.5h", 2**32])
def test_lease_time_rejects(value):
    with pytest.raises(LibvirtModuleError):
        parse_lease_time(value)


def test_mac_and_bridge_names():
    assert normalise_mac("52-54-00-AA-bb-0C") == "52:54:00:aa:bb:0c"
    assert validate_bridge_name("iaast123456789a") == "iaast123456789a"
    with pytest.raises(LibvirtModuleError, match="must not be empty"):
        validate_bridge_name("")
    with pytest.raises(LibvirtModuleError, match="white space"):
        validate_bridge_name("br 0")
