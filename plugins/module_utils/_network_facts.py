# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading libvirt networks: their persistent and live definitions, their DHCP
leases, and ``network_facts``, what kvm_network and kvm_network_info return
about a network (nothing here changes one; live changes and restarts are in
``_network_live``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    domains_using_network,
    libvirt,
    parse_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network import (
    differing_fields,
    needs_restart,
    parse_network,
    public_spec,
)


def persistent_tree(net):
    """The persistent definition of ``net`` (the live one when it has none or the driver cannot tell)."""
    if net.isPersistent():
        try:
            return parse_xml(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            # The test driver knows no VIR_NETWORK_XML_INACTIVE; its networks have one definition.
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
    return parse_xml(net.XMLDesc(0))


def live_tree(net):
    return parse_xml(net.XMLDesc(0))


def dhcp_leases(net):
    """The current DHCP leases of ``net`` (empty when the driver keeps none)."""
    try:
        leases = net.DHCPLeases() or []
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return []
        raise
    result = []
    for lease in leases:
        family = "ipv6" if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4"
        result.append(
            dict(
                mac=(lease.get("mac") or "").lower() or None,
                ip=lease.get("ipaddr"),
                prefix=lease.get("prefix"),
                family=family,
                hostname=lease.get("hostname") or None,
                client_id=lease.get("clientid") or None,
                expires=int(lease["expirytime"]) if lease.get("expirytime") else None,
            )
        )
    return sorted(result, key=lambda item: (item["ip"] or "", item["mac"] or ""))


def network_facts(conn, net):
    """Everything kvm_network and kvm_network_info return about ``net``."""
    active = bool(net.isActive())
    spec = parse_network(live_tree(net))
    facts = public_spec(spec)
    if active:
        with contextlib.suppress(libvirt.libvirtError):
            facts["bridge"] = net.bridgeName() or facts["bridge"]
    facts.update(
        name=net.name(),
        uuid=net.UUIDString(),
        mac=spec.get("mac"),
        active=active,
        persistent=bool(net.isPersistent()),
        autostart=bool(net.autostart()) if net.isPersistent() else False,
        leases=dhcp_leases(net) if active else [],
        guests=domains_using_network(conn, net.name(), running_only=True) if active else [],
    )
    facts["restart_required"] = False
    if active and net.isPersistent():
        persistent = parse_network(persistent_tree(net))
        pending = differing_fields(spec, persistent, with_other=True)
        facts["restart_required"] = bool(pending) and needs_restart(spec, persistent, pending)
    return facts
