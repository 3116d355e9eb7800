# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt networks: the kvm_network spec, its XML and the way back.

``validate_spec`` turns the module's options into a normalised spec (or raises
one sentence), ``apply_spec`` edits a network tree (a new one or the existing
definition, so that elements the spec does not manage survive) until its
managed fields match, and ``parse_network`` reads those fields back from any
network XML. Comparing two parsed specs field by field (``differing_fields``)
is how kvm_network decides what changed, and ``needs_restart`` whether a
running network can take it live. Talking to libvirtd about running networks
is ``_network_live``'s job.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import ipaddress
import re

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    etree,
    parse_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_hostname

MODES = ("nat", "route", "isolated", "open", "bridge")
# The <forward mode=...> of each mode; an isolated network has no <forward>.
_FORWARD = {"nat": "nat", "route": "route", "open": "open", "bridge": "bridge"}

# Fields whose change needs the network to be restarted; every other managed
# field (DHCP ranges with DHCP on both sides, reservations, DNS hosts) changes
# live through virNetworkUpdate.
RESTART_FIELDS = ("mode", "bridge", "mtu", "domain", "ipv4.address", "ipv4.prefix", "dns.forwarders", "other")
LIVE_FIELDS = ("ipv4.dhcp.ranges", "ipv4.dhcp.hosts", "dns.hosts")

# dnsmasq never hands out a lease shorter than two minutes.
MIN_LEASE_SECONDS = 120
MAX_LEASE_SECONDS = 2**32 - 1
IFNAMSIZ = 16

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LEASE_RE = re.compile(r"^(\d+)\s*([smhd]?)$")
_LEASE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_XML_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600}


# ---------------------------------------------------------------------------
# Validation: module options -> normalised spec (or one sentence)
# ---------------------------------------------------------------------------


def _fail(msg):
    raise LibvirtModuleError(msg)


def validate_bridge_name(name):
    """A Linux interface name: 1-15 characters, no '/', ':' or white space."""
    if not name:
        _fail("The bridge name must not be empty.")
    if len(name) >= IFNAMSIZ:
        _fail("The bridge name %r is %d characters long; Linux allows at most %d." % (name, len(name), IFNAMSIZ - 1))
    if name in (".", "..") or re.search(r"[/:\s]", name):
        _fail("The bridge name %r must not contain '/', ':' or white space." % name)
    return name


def normalise_mac(mac):
    """``52:54:00:aa:bb:cc`` (lower case) or a one-sentence error."""
    text = str(mac).strip().lower().replace("-", ":")
    if not _MAC_RE.match(text):
        _fail("%r is not a MAC address such as 52:54:00:12:34:56." % (mac,))
    if int(text[:2], 16) & 1:
        _fail("%r is a multicast MAC address; a network interface needs a unicast one." % (mac,))
    return text


def parse_lease_time(value):
    """Seconds (0 is infinite) from ``3600``, ``'90m'``, ``'1h'`` or ``'infinite'``; None stays None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "infinite":
        return 0
    match = _LEASE_RE.match(text)
    if isinstance(value, bool) or not match:
        _fail("lease_time %r is not a number of seconds, a duration such as 30m or 12h, or 'infinite'." % (value,))
    seconds = int(match.group(1)) * _LEASE_UNITS[match.group(2)]
    if seconds == 0:
        return 0
    if seconds < MIN_LEASE_SECONDS:
        _fail("lease_time %r is shorter than dnsmasq's minimum of %d seconds." % (value, MIN_LEASE_SECONDS))
    if seconds > MAX_LEASE_SECONDS:
        _fail("lease_time %r is longer than %d seconds." % (value, MAX_LEASE_SECONDS))
    return seconds


def _ipv4(value, what):
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        _fail("%s %r is not an IPv4 address." % (what, value))


def _any_ip(value, what):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        _fail("%s %r is not an IP address." % (what, value))


def _host_address(addr, subnet, what):
    """``addr`` must be a usable address of ``subnet`` (not its network or broadcast address)."""
    if addr not in subnet:
        _fail("%s %s is outside the subnet %s." % (what, addr, subnet))
    if subnet.prefixlen <= 30 and addr in (subnet.network_address, subnet.broadcast_address):
        _fail("%s %s is the network or broadcast address of %s." % (what, addr, subnet))
    return addr


def _validate_ipv4(ipv4):
    if ipv4.get("address") is None:
        _fail("ipv4.address is required when ipv4 is set.")
    address = _ipv4(ipv4["address"], "ipv4.address")
    prefix = ipv4.get("prefix")
    if prefix is None:
        prefix = 24
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix <= 32:
        _fail("ipv4.prefix %r is not a prefix length between 0 and 32." % (prefix,))
    subnet = ipaddress.IPv4Network("%s/%d" % (address, prefix), strict=False)
    _host_address(address, subnet, "ipv4.address")
    result = dict(address=str(address), prefix=prefix, dhcp=None)
    dhcp = ipv4.get("dhcp")
    if dhcp is not None:
        result["dhcp"] = _validate_dhcp(dhcp, address, subnet)
    return result


def _validate_dhcp(dhcp, address, subnet):
    """The DHCP range and reservations of a network with ``address`` in ``subnet``."""
    start, end = dhcp.get("start"), dhcp.get("end")
    if start is None or end is None:
        _fail("ipv4.dhcp needs both start and end: the range of addresses that DHCP hands out.")
    start = _host_address(_ipv4(start, "ipv4.dhcp.start"), subnet, "The DHCP range start")
    end = _host_address(_ipv4(end, "ipv4.dhcp.end"), subnet, "The DHCP range end")
    if start > end:
        _fail("The DHCP range start %s comes after its end %s." % (start, end))
    if start <= address <= end:
        _fail("The DHCP range %s-%s contains the network's own address %s." % (start, end, address))
    ranges = [dict(start=str(start), end=str(end), lease_time=parse_lease_time(dhcp.get("lease_time")))]
    # hosts omitted (None): the reservations are not managed (see fill_unmanaged).
    if dhcp.get("hosts") is None:
        return dict(ranges=ranges, hosts=None)
    return dict(ranges=ranges, hosts=_sorted_hosts(_validate_reservations(dhcp["hosts"], address, subnet)))


def _validate_reservations(entries, address, subnet):
    """DHCP reservations, each with a MAC and an address in ``subnet``; no MAC, address or name twice."""
    hosts = []
    seen = dict(mac={}, ip={}, name={})
    for index, host in enumerate(entries):
        what = "ipv4.dhcp.hosts[%d]" % index
        if not host.get("mac"):
            _fail("%s needs a mac." % what)
        if not host.get("ip"):
            _fail("%s needs an ip." % what)
        mac = normalise_mac(host["mac"])
        ip = _host_address(_ipv4(host["ip"], "%s.ip" % what), subnet, "The reservation address")
        if ip == address:
            _fail("The reservation address %s is the network's own address." % ip)
        name = validate_hostname(host["name"], "reservation name") if host.get("name") else None
        for key, value in (("mac", mac), ("ip", str(ip)), ("name", name.lower() if name else None)):
            if value is None:
                continue
            if value in seen[key]:
                _fail("The reservations %s and %s have the same %s %s." % (seen[key][value], what, key, value))
            seen[key][value] = what
        hosts.append(dict(mac=mac, ip=str(ip), name=name))
    return hosts


def _validate_dns(dns):
    hosts = []
    seen = set()
    owner = {}
    for index, host in enumerate(dns.get("hosts") or []):
        what = "dns.hosts[%d]" % index
        ip = _any_ip(host.get("ip"), "%s.ip" % what)
        if str(ip) in seen:
            _fail("dns.hosts lists %s twice; give all its host names in one entry." % ip)
        seen.add(str(ip))
        names = host.get("hostnames") or []
        if not names:
            _fail("%s needs at least one host name." % what)
        names = sorted({validate_hostname(n) for n in names})
        for name in names:
            # libvirt identifies a DNS record by its address and by each of its names.
            if name.lower() in owner:
                _fail(
                    "dns.hosts gives the name %s to both %s and %s; a name may belong to one entry only."
                    % (name, owner[name.lower()], ip)
                )
            owner[name.lower()] = str(ip)
        hosts.append(dict(ip=str(ip), hostnames=names))
    forwarders = [str(_any_ip(addr, "The DNS forwarder")) for addr in dns.get("forwarders") or []]
    if len(set(forwarders)) != len(forwarders):
        _fail("dns.forwarders lists an address twice.")
    return dict(hosts=None if dns.get("hosts") is None else _sorted_dns_hosts(hosts), forwarders=forwarders)


def validate_spec(params):
    """The normalised spec of kvm_network's options, or LibvirtModuleError.

    ``params`` holds mode, bridge, domain, mtu, ipv4 and dns as Ansible parsed
    them. Nothing here talks to libvirt.
    """
    mode = params.get("mode") or "nat"
    if mode not in MODES:
        _fail("mode %r is not one of %s." % (mode, ", ".join(MODES)))
    bridge = params.get("bridge")
    if bridge is not None:
        validate_bridge_name(bridge)
    mtu = params.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not 68 <= mtu <= 65535):
        _fail("mtu %r is not between 68 and 65535." % (mtu,))
    domain = validate_hostname(params["domain"], "DNS domain") if params.get("domain") else None
    ipv4 = _validate_ipv4(params["ipv4"]) if params.get("ipv4") is not None else None
    dns = _validate_dns(params.get("dns") or {})
    if mode == "bridge":
        if not bridge:
            _fail("mode bridge needs bridge: the name of an existing host bridge.")
        if mtu is not None:
            _fail("mtu cannot be set with mode bridge; the host bridge has its own MTU.")
        if ipv4 or domain or dns["hosts"] or dns["forwarders"]:
            _fail(
                "mode bridge connects guests to the host bridge as it is: ipv4, dns and domain cannot be set "
                "(the bridge's own network provides addresses)."
            )
    elif mode in ("nat", "route", "open") and ipv4 is None:
        _fail("mode %s needs ipv4: the address and prefix of the network on the host." % mode)
    if ipv4 is None and (domain or dns["hosts"] or dns["forwarders"]):
        _fail("dns and domain need ipv4: the network's DNS server listens on its IPv4 address.")
    return dict(mode=mode, bridge=bridge, mtu=mtu, domain=domain, ipv4=ipv4, dns=dns)


def _sorted_hosts(hosts):
    return sorted(hosts, key=lambda h: (h.get("mac") or "", h.get("ip") or "", h.get("name") or ""))


def _sorted_dns_hosts(hosts):
    return sorted(hosts, key=lambda h: h["ip"])


# ---------------------------------------------------------------------------
# XML -> spec
# ---------------------------------------------------------------------------


def _is_ipv4(ip_el):
    family = ip_el.get("family")
    if family:
        return family == "ipv4"
    return ":" not in (ip_el.get("address") or "")


def _prefix_of(ip_el):
    if ip_el.get("prefix") is not None:
        return int(ip_el.get("prefix"))
    if ip_el.get("netmask"):
        return ipaddress.IPv4Network("0.0.0.0/%s" % ip_el.get("netmask")).prefixlen
    # libvirt's default: the classful prefix of the address.
    first = int((ip_el.get("address") or "0").split(".")[0] or 0)
    return 8 if first < 128 else (16 if first < 192 else 24)


def _lease_of(range_el):
    lease = range_el.find("lease")
    if lease is None:
        return None
    expiry = int(lease.get("expiry", "0"))
    return expiry * _XML_UNITS.get(lease.get("unit") or "minutes", 60)


def _canon(element):
    """An element as plain data (tag, sorted attributes, text, children) for comparison."""
    return dict(
        tag=element.tag,
        attrs=dict(sorted(element.attrib.items())),
        text=(element.text or "").strip() or None,
        children=[_canon(child) for child in element if isinstance(child.tag, str)],
    )


_MANAGED_TOP = {"name", "uuid", "mac", "forward", "bridge", "mtu", "domain", "dns", "ip"}


def _other(root, ip4):
    """What a full XML definition holds beyond the managed fields (compared only with ``xml``)."""
    other = [
        _canon(child)
        for child in root
        if isinstance(child.tag, str) and (child.tag not in _MANAGED_TOP or (child.tag == "ip" and child is not ip4))
    ]
    for extra in (
        _other_forward(root.find("forward")),
        _other_bridge(root.find("bridge")),
        _other_domain(root.find("domain")),
        _other_dns(root.find("dns")),
        _other_ip(ip4),
    ):
        if extra is not None:
            other.append(extra)
    return other


def _element(tag, attrs, children=()):
    return dict(tag=tag, attrs=attrs, text=None, children=list(children))


def _other_forward(forward):
    """``<forward>``'s attributes beyond the mode and its children, less the NAT port range libvirt adds."""
    if forward is None:
        return None
    attrs = {k: v for k, v in forward.attrib.items() if k != "mode"}
    default_port = _element("port", dict(end="65535", start="1024"))
    children = []
    for child in forward:
        if not isinstance(child.tag, str):
            continue
        canon = _canon(child)
        # libvirt adds the default NAT port range to the live definition.
        if child.tag == "nat" and not child.attrib and canon["children"] == [default_port]:
            continue
        children.append(canon)
    return _element("forward", attrs, children) if attrs or children else None


def _other_bridge(bridge):
    """``<bridge>``'s attributes beyond its name and libvirt's defaults (stp on, delay 0)."""
    if bridge is None:
        return None
    attrs = {k: v for k, v in bridge.attrib.items() if k != "name"}
    if attrs.get("stp") == "on":
        del attrs["stp"]
    if attrs.get("delay") == "0":
        del attrs["delay"]
    return _element("bridge", dict(sorted(attrs.items()))) if attrs else None


def _other_domain(domain):
    if domain is None or not set(domain.attrib) - {"name"}:
        return None
    return _element("domain", {k: v for k, v in sorted(domain.attrib.items()) if k != "name"})


def _other_dns(dns):
    if dns is None:
        return None
    children = [_canon(c) for c in dns if c.tag in ("txt", "srv") or (c.tag == "forwarder" and c.get("domain"))]
    return _element("dns", dict(sorted(dns.attrib.items())), children) if dns.attrib or children else None


def _other_ip(ip4):
    if ip4 is None:
        return None
    attrs = {k: v for k, v in sorted(ip4.attrib.items()) if k not in ("address", "prefix", "netmask", "family")}
    children = [_canon(c) for c in ip4 if c.tag == "tftp"]
    children += [_canon(c) for c in ip4.findall("dhcp/bootp")]
    return _element("ip", attrs, children) if attrs or children else None


def parse_network(tree):
    """The managed fields of a network definition (an lxml element) as a spec.

    Also returns ``name``, ``uuid``, ``mac`` and ``other`` (what the definition
    holds beyond the managed fields, as plain data).
    """
    forward = tree.find("forward")
    # <forward/> alone is NAT; macvtap and hostdev modes are reported as they are.
    mode = forward.get("mode", "nat") if forward is not None else "isolated"
    bridge_el = tree.find("bridge")
    mtu_el = tree.find("mtu")
    domain_el = tree.find("domain")
    ip4 = None
    for ip_el in tree.findall("ip"):
        if _is_ipv4(ip_el):
            ip4 = ip_el
            break
    ipv4 = None
    if ip4 is not None and ip4.get("address"):
        ipv4 = dict(address=ip4.get("address"), prefix=_prefix_of(ip4), dhcp=None)
        dhcp_el = ip4.find("dhcp")
        if dhcp_el is not None:
            ranges = [
                dict(start=r.get("start"), end=r.get("end"), lease_time=_lease_of(r)) for r in dhcp_el.findall("range")
            ]
            hosts = [
                dict(mac=(h.get("mac") or "").lower() or None, ip=h.get("ip"), name=h.get("name"))
                for h in dhcp_el.findall("host")
            ]
            if ranges or hosts:
                ipv4["dhcp"] = dict(ranges=ranges, hosts=_sorted_hosts(hosts))
    dns_el = tree.find("dns")
    dns = dict(hosts=[], forwarders=[])
    if dns_el is not None:
        for host in dns_el.findall("host"):
            names = sorted({(n.text or "").strip() for n in host.findall("hostname") if (n.text or "").strip()})
            dns["hosts"].append(dict(ip=host.get("ip"), hostnames=names))
        dns["hosts"] = _sorted_dns_hosts(dns["hosts"])
        dns["forwarders"] = [
            f.get("addr") for f in dns_el.findall("forwarder") if f.get("addr") and not f.get("domain")
        ]
    mtu = None
    if mtu_el is not None and mtu_el.get("size"):
        mtu = int(mtu_el.get("size"))
    mac_el = tree.find("mac")
    return dict(
        name=tree.findtext("name"),
        uuid=tree.findtext("uuid"),
        mac=mac_el.get("address") if mac_el is not None else None,
        mode=mode,
        bridge=bridge_el.get("name") if bridge_el is not None else None,
        mtu=mtu,
        domain=domain_el.get("name") if domain_el is not None else None,
        ipv4=ipv4,
        dns=dns,
        other=_other(tree, ip4),
    )


# ---------------------------------------------------------------------------
# spec -> XML
# ---------------------------------------------------------------------------


def _remove(parent, path):
    for element in parent.findall(path):
        element.getparent().remove(element)


def lease_element(seconds):
    """``<lease expiry=... unit=...>`` in the largest unit that holds ``seconds`` exactly."""
    for unit in ("hours", "minutes"):
        if seconds and seconds % _XML_UNITS[unit] == 0:
            return etree.Element("lease", expiry=str(seconds // _XML_UNITS[unit]), unit=unit)
    return etree.Element("lease", expiry=str(seconds), unit="seconds")


def range_element(rng):
    element = etree.Element("range", start=rng["start"], end=rng["end"])
    if rng.get("lease_time") is not None:
        element.append(lease_element(rng["lease_time"]))
    return element


def dhcp_host_element(host):
    element = etree.Element("host")
    for key in ("mac", "name", "ip"):
        if host.get(key):
            element.set(key, host[key])
    return element


def dns_host_element(host):
    element = etree.Element("host", ip=host["ip"])
    for name in host["hostnames"]:
        etree.SubElement(element, "hostname").text = name
    return element


def new_network_tree(name):
    root = etree.Element("network")
    etree.SubElement(root, "name").text = name
    return root


def apply_spec(tree, spec):
    """Edit ``tree`` (a <network> element) so that its managed fields equal ``spec``.

    Elements kvm_network does not manage (IPv6 addresses, port groups, QoS,
    TFTP, DNS TXT/SRV records, the NAT port range, ...) are kept, and so are the
    UUID, the MAC address and a bridge name libvirt picked.
    """
    tree = copy.deepcopy(tree)
    mode = spec["mode"]
    forward = tree.find("forward")
    if mode == "isolated":
        _remove(tree, "forward")
    else:
        if forward is not None and forward.get("mode", "nat") != _FORWARD[mode]:
            tree.remove(forward)
            forward = None
        if forward is None:
            forward = etree.Element("forward")
            _insert_after(tree, forward, ("uuid", "name"))
        forward.set("mode", _FORWARD[mode])
    bridge = tree.find("bridge")
    if spec["bridge"]:
        if bridge is None:
            bridge = etree.Element("bridge")
            _insert_after(tree, bridge, ("forward", "uuid", "name"))
        bridge.set("name", spec["bridge"])
    if mode == "bridge":
        # libvirt refuses these with a host bridge; stp/delay belong to libvirt's own bridges.
        for attr in ("stp", "delay"):
            if bridge is not None and attr in bridge.attrib:
                del bridge.attrib[attr]
        _remove(tree, "mac")
    _set_or_remove(tree, "mtu", "size", spec["mtu"], ("mac", "bridge", "forward", "uuid", "name"))
    domain = tree.find("domain")
    if spec["domain"]:
        if domain is None:
            domain = etree.Element("domain", localOnly="yes")
            _insert_after(tree, domain, ("mtu", "mac", "bridge", "forward", "uuid", "name"))
        domain.set("name", spec["domain"])
    elif domain is not None:
        tree.remove(domain)
    _apply_dns(tree, spec["dns"])
    _apply_ipv4(tree, spec["ipv4"])
    return tree


def _insert_after(tree, element, anchors):
    for tag in anchors:
        anchor = tree.find(tag)
        if anchor is not None:
            anchor.addnext(element)
            return
    tree.insert(0, element)


def _set_or_remove(tree, tag, attr, value, anchors):
    element = tree.find(tag)
    if value is None:
        if element is not None:
            tree.remove(element)
        return
    if element is None:
        element = etree.Element(tag)
        _insert_after(tree, element, anchors)
    element.set(attr, str(value))


def _apply_dns(tree, dns):
    dns_el = tree.find("dns")
    if dns_el is None:
        if not dns["hosts"] and not dns["forwarders"]:
            return
        dns_el = etree.Element("dns")
        _insert_after(tree, dns_el, ("domain", "mtu", "mac", "bridge", "forward", "uuid", "name"))
    for forwarder in dns_el.findall("forwarder"):
        if forwarder.get("addr") and not forwarder.get("domain"):
            dns_el.remove(forwarder)
    _remove(dns_el, "host")
    # libvirt's schema: forwarders first, then txt, host, srv records.
    for addr in reversed(dns["forwarders"]):
        dns_el.insert(0, etree.Element("forwarder", addr=addr))
    anchor = dns_el.find("srv")
    for host in dns["hosts"]:
        if anchor is not None:
            anchor.addprevious(dns_host_element(host))
        else:
            dns_el.append(dns_host_element(host))
    if len(dns_el) == 0 and not dns_el.attrib:
        tree.remove(dns_el)


def _apply_ipv4(tree, ipv4):
    ip4s = [ip for ip in tree.findall("ip") if _is_ipv4(ip)]
    if ipv4 is None:
        for ip_el in ip4s:
            tree.remove(ip_el)
        return
    ip_el = ip4s[0] if ip4s else None
    for extra in ip4s[1:]:
        tree.remove(extra)
    if ip_el is None:
        ip_el = etree.Element("ip")
        first_ip = tree.find("ip")
        if first_ip is not None:
            first_ip.addprevious(ip_el)
        else:
            tree.append(ip_el)
    if "netmask" in ip_el.attrib:
        del ip_el.attrib["netmask"]
    ip_el.set("address", ipv4["address"])
    ip_el.set("prefix", str(ipv4["prefix"]))
    dhcp = ip_el.find("dhcp")
    if ipv4["dhcp"] is None:
        if dhcp is not None:
            ip_el.remove(dhcp)
        return
    if dhcp is None:
        dhcp = etree.SubElement(ip_el, "dhcp")
    _remove(dhcp, "range")
    _remove(dhcp, "host")
    # libvirt's schema: ranges, then hosts, then bootp.
    position = 0
    for rng in ipv4["dhcp"]["ranges"]:
        dhcp.insert(position, range_element(rng))
        position += 1
    for host in ipv4["dhcp"]["hosts"]:
        dhcp.insert(position, dhcp_host_element(host))
        position += 1


def xml_spec(text, name):
    """The tree and the parsed spec of a full network definition given as ``xml``."""
    try:
        tree = parse_xml(text)
    except etree.XMLSyntaxError as exc:
        raise LibvirtModuleError("The xml option is not well-formed XML: %s." % exc) from exc
    if tree.tag != "network":
        _fail("The xml option must hold a <network> definition, not <%s>." % tree.tag)
    found = tree.findtext("name")
    if found is None:
        etree.SubElement(tree, "name").text = name
        tree.insert(0, tree[-1])
    elif found != name:
        _fail("The xml defines network %r, but name is %r." % (found, name))
    spec = parse_network(tree)
    if spec["bridge"]:
        validate_bridge_name(spec["bridge"])
    return tree, spec


def keep_identity(tree, current):
    """Carry the UUID, MAC and libvirt-picked bridge name of the existing definition into ``tree``."""
    tree = copy.deepcopy(tree)
    if current is None:
        return tree
    if tree.find("uuid") is None and current.get("uuid"):
        uuid = etree.Element("uuid")
        uuid.text = current["uuid"]
        tree.find("name").addnext(uuid)
    if tree.find("mac") is None and current.get("mac") and tree.find("forward[@mode='bridge']") is None:
        mac = etree.Element("mac", address=current["mac"])
        _insert_after(tree, mac, ("bridge", "forward", "uuid", "name"))
    bridge = tree.find("bridge")
    if current.get("bridge") and (bridge is None or not bridge.get("name")):
        if bridge is None:
            bridge = etree.Element("bridge")
            _insert_after(tree, bridge, ("forward", "uuid", "name"))
        bridge.set("name", current["bridge"])
    return tree


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------


def fill_unmanaged(spec, current):
    """``spec`` with the lists it leaves unmanaged taken from ``current``.

    A task that omits ``ipv4.dhcp.hosts`` or ``dns.hosts`` (None in the spec)
    does not manage them: the entries of ``current`` (a parsed definition, or
    None for a new network) stay as they are, e.g. those that kvm_network_host
    adds one at a time. An empty list still means "none".
    """
    spec = copy.deepcopy(spec)
    current = current or {}
    dhcp = (spec.get("ipv4") or {}).get("dhcp")
    if dhcp is not None and dhcp.get("hosts") is None:
        dhcp["hosts"] = copy.deepcopy(((current.get("ipv4") or {}).get("dhcp") or {}).get("hosts") or [])
    dns = spec.get("dns")
    if dns is not None and dns.get("hosts") is None:
        # DNS records need the network's own IPv4 address (its dnsmasq).
        kept = (current.get("dns") or {}).get("hosts") if spec.get("ipv4") else None
        dns["hosts"] = copy.deepcopy(kept or [])
    return spec


def flatten(spec, with_other=False, with_bridge=True):
    """The compared fields of a spec, one key per field."""
    ipv4 = spec.get("ipv4") or {}
    dhcp = ipv4.get("dhcp") or {}
    fields = {
        "mode": spec.get("mode"),
        "mtu": spec.get("mtu"),
        "domain": spec.get("domain"),
        "ipv4.address": ipv4.get("address"),
        "ipv4.prefix": ipv4.get("prefix"),
        "ipv4.dhcp.ranges": list(dhcp.get("ranges") or []),
        "ipv4.dhcp.hosts": list(dhcp.get("hosts") or []),
        "dns.hosts": list((spec.get("dns") or {}).get("hosts") or []),
        "dns.forwarders": list((spec.get("dns") or {}).get("forwarders") or []),
    }
    if with_bridge:
        fields["bridge"] = spec.get("bridge")
    if with_other:
        fields["other"] = spec.get("other") or []
    return fields


def differing_fields(current, desired, with_other=False):
    """Names of the fields where ``current`` (parsed) differs from ``desired``.

    A bridge name is compared only when the desired spec names one (otherwise
    libvirt picks it).
    """
    with_bridge = bool(desired.get("bridge"))
    have = flatten(current, with_other, with_bridge)
    want = flatten(desired, with_other, with_bridge)
    return [key for key in want if have[key] != want[key]]


def needs_restart(current, desired, fields):
    """True when applying ``fields`` to a running network needs a restart."""
    for field in fields:
        if field in RESTART_FIELDS:
            return True
        if field == "ipv4.dhcp.ranges":
            # Turning DHCP on or off rewrites dnsmasq's command line: restart.
            have = flatten(current)["ipv4.dhcp.ranges"]
            want = flatten(desired)["ipv4.dhcp.ranges"]
            if not have or not want:
                return True
        if field == "ipv4.dhcp.hosts":
            have_dhcp = bool(flatten(current)["ipv4.dhcp.ranges"])
            want_dhcp = bool(flatten(desired)["ipv4.dhcp.ranges"])
            if not have_dhcp or not want_dhcp:
                return True
    return False


def public_spec(spec):
    """The spec in the shape of kvm_network's options (as returned to the user)."""
    ipv4 = None
    if spec.get("ipv4"):
        ipv4 = dict(address=spec["ipv4"]["address"], prefix=spec["ipv4"]["prefix"], dhcp=None)
        ip_net = ipaddress.IPv4Network("%s/%d" % (ipv4["address"], ipv4["prefix"]), strict=False)
        ipv4["network"] = str(ip_net)
        dhcp = spec["ipv4"].get("dhcp")
        if dhcp:
            first = dhcp["ranges"][0] if dhcp["ranges"] else {}
            ipv4["dhcp"] = dict(
                start=first.get("start"),
                end=first.get("end"),
                lease_time=first.get("lease_time"),
                ranges=copy.deepcopy(dhcp["ranges"]),
                hosts=copy.deepcopy(dhcp["hosts"]),
            )
    return dict(
        mode=spec["mode"],
        bridge=spec.get("bridge"),
        mtu=spec.get("mtu"),
        domain=spec.get("domain"),
        ipv4=ipv4,
        dns=copy.deepcopy(spec.get("dns") or dict(hosts=[], forwarders=[])),
    )
