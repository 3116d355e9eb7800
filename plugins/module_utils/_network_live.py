# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running libvirt networks: live changes and restarts under guests.

``live_update_ops`` lists the ``virNetworkUpdate`` calls that bring a running
network to a new set of DHCP ranges, reservations and DNS hosts without a
restart; ``restart_network`` restarts a network and puts the running guests'
interfaces back on its bridge, which libvirt does not do by itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import time

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    error_message,
    etree,
    is_not_found,
    libvirt,
    parse_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network import (
    dhcp_host_element,
    dns_host_element,
    flatten,
    parse_network,
    range_element,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network_facts import live_tree, persistent_tree

# ---------------------------------------------------------------------------
# Live changes (virNetworkUpdate)
# ---------------------------------------------------------------------------


def _xml(element):
    return etree.tostring(element, encoding="unicode")


def live_update_ops(current, desired):
    """``(command, section, xml)`` tuples that turn the live ``current`` into ``desired``.

    Only for the fields in LIVE_FIELDS, and only when ``needs_restart`` is False.
    Deletions come first, so an address or name can move from one entry to another.
    """
    if libvirt is None:
        raise LibvirtModuleError("libvirt-python is required.")
    have, want = flatten(current), flatten(desired)
    deletes, adds = [], []
    for part in (_range_ops, _reservation_ops, _dns_ops):
        part_deletes, part_adds = part(have, want)
        deletes += part_deletes
        adds += part_adds
    return deletes + adds


def _delete(section, element):
    return (libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, _xml(element))


def _add(section, element):
    return (libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, _xml(element))


def _range_ops(have, want):
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE
    deletes = [
        _delete(section, range_element(r)) for r in have["ipv4.dhcp.ranges"] if r not in want["ipv4.dhcp.ranges"]
    ]
    adds = [_add(section, range_element(r)) for r in want["ipv4.dhcp.ranges"] if r not in have["ipv4.dhcp.ranges"]]
    return deletes, adds


def _reservation_ops(have, want):
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
    have_by_mac = {h["mac"]: h for h in have["ipv4.dhcp.hosts"] if h.get("mac")}
    want_by_mac = {h["mac"]: h for h in want["ipv4.dhcp.hosts"]}
    # An entry whose MAC stays is modified below, not deleted here.
    deletes = [
        _delete(section, dhcp_host_element(host))
        for host in have["ipv4.dhcp.hosts"]
        if host not in want["ipv4.dhcp.hosts"] and host.get("mac") not in want_by_mac
    ]
    adds = []
    for host in want["ipv4.dhcp.hosts"]:
        if host in have["ipv4.dhcp.hosts"]:
            continue
        if host["mac"] in have_by_mac:
            # Changing the address or name of a reservation is a delete and an add,
            # so libvirt checks the new values against the other entries.
            deletes.append(_delete(section, dhcp_host_element(have_by_mac[host["mac"]])))
        adds.append(_add(section, dhcp_host_element(host)))
    return deletes, adds


def _dns_ops(have, want):
    section = libvirt.VIR_NETWORK_SECTION_DNS_HOST
    # By address alone: libvirt matches a record by its address or any of its names.
    deletes = [
        _delete(section, etree.Element("host", ip=host["ip"]))
        for host in have["dns.hosts"]
        if host not in want["dns.hosts"]
    ]
    adds = [_add(section, dns_host_element(host)) for host in want["dns.hosts"] if host not in have["dns.hosts"]]
    return deletes, adds


def apply_live_updates(net, ops):
    """Run ``live_update_ops`` against the running network (its live definition only)."""
    for command, section, xml in ops:
        try:
            net.update(command, section, -1, xml, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            raise LibvirtModuleError(
                "Cannot update network %s live with %s: %s" % (net.name(), xml, error_message(exc))
            ) from exc


# ---------------------------------------------------------------------------
# Host bridges (mode: bridge) and restarting a network under running guests
# ---------------------------------------------------------------------------


def host_interface_type(conn, name):
    """The type of host interface ``name`` as libvirtd's host sees it, None when it does not exist.

    Asks libvirt's interface driver (virInterfaceLookupByName), so the answer
    comes from the hypervisor that runs libvirtd: its network namespace, or the
    remote host of a ``qemu+ssh://`` URI. Never looks at this process's own
    /sys/class/net. Raises LibvirtModuleError when the hypervisor's libvirt has
    no interface driver.
    """
    try:
        iface = conn.interfaceLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
            return None
        raise LibvirtModuleError(
            "Cannot ask the hypervisor whether host interface %s exists: %s" % (name, error_message(exc))
        ) from exc
    return parse_xml(iface.XMLDesc(0)).get("type")


def _interfaces_on(tree, network):
    return [
        iface
        for iface in tree.findall("./devices/interface[@type='network']")
        if iface.find("source") is not None and iface.find("source").get("network") == network
    ]


def running_guest_interfaces(conn, network):
    """``(domain, [interface elements])`` of the running guests attached to ``network``."""
    result = []
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            ifaces = _interfaces_on(parse_xml(dom.XMLDesc(0)), network)
        except libvirt.libvirtError as exc:
            if is_not_found(exc):
                continue  # gone meanwhile
            raise
        if ifaces:
            result.append((dom, ifaces))
    return result


def bridge_users(conn, bridge, skip):
    """Names of the other networks (not ``skip``) whose definitions use bridge ``bridge``."""
    users = []
    for net in conn.listAllNetworks(0):
        try:
            if net.name() != skip and parse_network(persistent_tree(net)).get("bridge") == bridge:
                users.append(net.name())
        except libvirt.libvirtError as exc:
            if not is_not_found(exc):
                raise
    return users


def _update_device(dom, element):
    dom.updateDeviceFlags(_xml(element), libvirt.VIR_DOMAIN_AFFECT_LIVE)


def replug_interface(dom, iface, network, bridge, bounce_seconds=2.0):
    """Put a running guest's interface back on ``network``'s bridge after a restart.

    Destroying a network leaves the guests' tap devices on no bridge, and
    starting it again does not reattach them. Switching the live interface to
    ``type='bridge'`` on the new bridge makes libvirt move the tap there; switching
    it back to ``type='network'`` allocates a fresh port in the network. Then the
    link goes down and up, as with a re-plugged cable, so that guests watching
    their carrier (systemd-networkd, NetworkManager) ask for a new lease at once;
    others follow when their lease runs out (``ipv4.dhcp.lease_time``).
    """
    as_bridge = copy.deepcopy(iface)
    as_bridge.set("type", "bridge")
    source = as_bridge.find("source")
    source.attrib.clear()
    source.set("bridge", bridge)
    back = copy.deepcopy(iface)
    source = back.find("source")
    portgroup = source.get("portgroup")
    source.attrib.clear()
    source.set("network", network)
    if portgroup:
        source.set("portgroup", portgroup)
    _update_device(dom, as_bridge)
    _update_device(dom, back)
    link = back.find("link")
    if link is not None and link.get("state") == "down":
        return
    for state in ("down", "up"):
        plugged = copy.deepcopy(back)
        link = plugged.find("link")
        if link is None:
            link = etree.SubElement(plugged, "link")
        link.set("state", state)
        _update_device(dom, plugged)
        if state == "down":
            time.sleep(bounce_seconds)


def restart_network(conn, net, replug=True):
    """Stop and start ``net``, then put the running guests' interfaces back on its bridge.

    Returns the names of the guests whose interfaces were re-plugged.
    """
    name = net.name()
    guests = running_guest_interfaces(conn, name) if replug else []
    try:
        net.destroy()
        net.create()
    except libvirt.libvirtError as exc:
        raise LibvirtModuleError("Cannot restart network %s: %s" % (name, error_message(exc))) from exc
    if parse_network(live_tree(net))["mode"] == "bridge":
        return []  # a host bridge outlives the network: the taps never left it
    bridge = net.bridgeName()
    replugged = []
    for dom, ifaces in guests:
        for iface in ifaces:
            try:
                replug_interface(dom, iface, name, bridge)
            except libvirt.libvirtError as exc:
                raise LibvirtModuleError(
                    "Network %s was restarted, but the interface %s of guest %s could not be put back on bridge %s: %s"
                    % (
                        name,
                        (iface.find("mac").get("address") if iface.find("mac") is not None else "?"),
                        dom.name(),
                        bridge,
                        error_message(exc),
                    )
                ) from exc
        replugged.append(dom.name())
    return sorted(replugged)
