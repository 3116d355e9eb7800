# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domains, life cycle: power state changes, undefine, and guest addresses
from DHCP leases and the guest agent."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.iaas.kvm.plugins.module_utils._domain import agent_connected, domain_facts, state_name
from ansible_collections.iaas.kvm.plugins.module_utils._domain_meta import read_metadata
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    call,
    error_code,
    error_message,
    libvirt,
    parse_xml,
)

POLL_INTERVAL = 0.25

# A guest in one of these states cannot see the ACPI power button: only a forced stop ends it.
FORCED_STOP_STATES = ("paused", "pmsuspended", "crashed")


class ShutdownTimeout(LibvirtModuleError):
    """The guest was asked to shut down and did not within the timeout."""


def domain_state(dom):
    """(state name, libvirt reason code) of ``dom``."""
    state, reason = dom.state()
    return state_name(state), reason


def shutoff_reason(reason):
    """Why a shut-off domain stopped, in words."""
    return {
        getattr(libvirt, "VIR_DOMAIN_SHUTOFF_CRASHED", 3): "crashed or its QEMU process was killed",
        getattr(libvirt, "VIR_DOMAIN_SHUTOFF_DESTROYED", 2): "was powered off",
        getattr(libvirt, "VIR_DOMAIN_SHUTOFF_SHUTDOWN", 1): "was shut down",
        getattr(libvirt, "VIR_DOMAIN_SHUTOFF_FAILED", 6): "failed to start",
    }.get(reason, "was stopped")


def start(dom, paused=False):
    """Start ``dom``; ``paused`` starts it with its vCPUs stopped."""
    if not paused:
        call("start the VM %s" % dom.name(), dom.createWithFlags, 0)
        return
    try:
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    except libvirt.libvirtError as exc:
        if error_code(exc) != libvirt.VIR_ERR_INVALID_ARG or dom.isActive():
            raise LibvirtModuleError("Cannot start the VM %s: %s" % (dom.name(), error_message(exc))) from exc
        # A driver without paused starts (libvirt's test driver): start, then pause.
        call("start the VM %s" % dom.name(), dom.createWithFlags, 0)
        call("pause the VM %s" % dom.name(), dom.suspend)


def destroy(dom):
    call("power off the VM %s" % dom.name(), dom.destroy)


def wait_until_off(dom, timeout):
    """Wait up to ``timeout`` seconds for ``dom`` to stop; True when it did."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not dom.isActive():
                return True
        except libvirt.libvirtError as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return True  # a transient domain is gone once it stops
            raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def stop(dom, timeout, force):
    """Shut ``dom`` down gracefully (ACPI power button or guest agent), waiting up
    to ``timeout`` seconds; then power it off only when ``force``.

    Returns ``'shut down'`` or ``'powered off'``; raises LibvirtModuleError when
    the guest did not stop in time and ``force`` is false.
    """
    if not dom.isActive():
        return None
    state, _reason = domain_state(dom)
    if state in FORCED_STOP_STATES:
        if not force:
            raise LibvirtModuleError(
                "The VM %s is %s and cannot shut down gracefully; set force_stop: true to power it off."
                % (dom.name(), state)
            )
        destroy(dom)
        return "powered off"
    if timeout > 0:
        try:
            dom.shutdown()
        except libvirt.libvirtError as exc:
            if dom.isActive() and not force:
                raise LibvirtModuleError("Cannot shut down the VM %s: %s" % (dom.name(), error_message(exc))) from exc
        if wait_until_off(dom, timeout):
            return "shut down"
    if not force:
        raise (ShutdownTimeout if timeout > 0 else LibvirtModuleError)(
            "The VM %s did not shut down within shutdown_timeout (%d s); set force_stop: true to power it off."
            % (dom.name(), timeout)
        )
    try:
        dom.destroy()
    except libvirt.libvirtError:
        if dom.isActive():
            raise
    return "powered off"


def undefine(dom, uefi):
    """Undefine ``dom`` with its NVRAM (UEFI), managed save image and snapshot
    and checkpoint metadata, so nothing of it is left behind."""
    flags = 0
    if dom.hasManagedSaveImage(0):
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    if dom.snapshotNum(0):
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    checkpoints = getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0)
    if checkpoints and hasattr(dom, "listAllCheckpoints"):
        try:
            if dom.listAllCheckpoints(0):
                flags |= checkpoints
        except libvirt.libvirtError:
            pass  # no checkpoint support in this driver: nothing to remove
    nvram = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM if uefi else 0
    try:
        dom.undefineFlags(flags | nvram)
    except libvirt.libvirtError as exc:
        # A driver without NVRAM files (libvirt's test driver) rejects the flag;
        # QEMU accepts it, and refuses an undefine without it when a file exists.
        if nvram and error_code(exc) == libvirt.VIR_ERR_INVALID_ARG:
            call("undefine the VM %s" % dom.name(), dom.undefineFlags, flags)
        else:
            raise LibvirtModuleError("Cannot undefine the VM %s: %s" % (dom.name(), error_message(exc))) from exc


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------


# Where libvirt finds a guest's addresses: its network's DHCP leases, the guest
# agent, the host's ARP table (bridged guests without leases).
ADDRESS_SOURCES = ("lease", "agent", "arp")


def _sources(agent, sources=None):
    if sources is None:
        sources = ("lease", "agent") if agent else ("lease",)
    codes = dict(
        lease=libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        agent=libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        arp=getattr(libvirt, "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP", 2),
    )
    return [(label, codes[label]) for label in sources]


def interface_addresses(dom, agent=False, sources=None):
    """``{mac: [{address, prefix, family, source}]}`` from DHCP leases and,
    when ``agent``, the guest agent (or from ``sources``, labels of
    ADDRESS_SOURCES, in order); and a list of the errors met on the way."""
    found = {}
    errors = []
    for label, source in _sources(agent, sources):
        try:
            ifaces = dom.interfaceAddresses(source, 0) or {}
        except libvirt.libvirtError as exc:
            errors.append("%s: %s" % (label, error_message(exc).rstrip(".")))
            continue
        for info in ifaces.values():
            mac = (info.get("hwaddr") or "").lower()
            if not mac or mac == "00:00:00:00:00:00":
                continue  # the guest's loopback
            for addr in info.get("addrs") or []:
                family = "ipv4" if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 else "ipv6"
                entry = dict(address=addr.get("addr"), prefix=addr.get("prefix"), family=family, source=label)
                known = [a["address"] for a in found.get(mac, [])]
                if entry["address"] not in known:
                    found.setdefault(mac, []).append(entry)
    return found, errors


def first_ipv4(addresses, macs):
    """The first IPv4 address, interfaces in the order of ``macs``."""
    for mac in list(macs) + sorted(set(addresses) - set(macs)):
        for entry in addresses.get(mac, []):
            if entry["family"] == "ipv4":
                return entry["address"]
    return None


def wait_for_ipv4(dom, macs, timeout, agent_ready):
    """Poll leases (and the guest agent once ``agent_ready()`` says it answers)
    until an IPv4 address shows up; return (ip, addresses).

    Fails after ``timeout`` seconds with what was seen.
    """
    deadline = time.monotonic() + timeout
    addresses, errors = {}, []
    while True:
        addresses, errors = interface_addresses(dom, agent=agent_ready())
        ip = first_ipv4(addresses, macs)
        if ip:
            return ip, addresses
        if not dom.isActive():
            raise LibvirtModuleError("The VM %s stopped while waiting for its IPv4 address." % dom.name())
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    seen = ", ".join("%s %s" % (mac, " ".join(a["address"] for a in addrs)) for mac, addrs in addresses.items())
    raise LibvirtModuleError(
        "The VM %s got no IPv4 address within %d s (interfaces %s; addresses seen: %s%s)."
        % (
            dom.name(),
            timeout,
            ", ".join(macs) or "none",
            seen or "none",
            "; " + "; ".join(errors) if errors else "",
        )
    )


def with_metadata(facts, tree):
    """``facts`` of ``tree`` with the collection's metadata: ``tags``, and each GPU's ``model``."""
    meta = read_metadata(tree)
    facts["tags"] = meta["tags"]
    for gpu in facts["gpus"]:
        gpu["model"] = meta["gpus"].get(gpu["address"])
    return facts


def describe(dom, tree=None, addresses=None, agent=False):
    """What kvm_vm and kvm_vm_info return for a domain: its managed fields
    (from the live definition when it runs), state, autostart and addresses.

    ``addresses`` (from ``interface_addresses``) is looked up when not given
    and the domain runs; ``agent`` asks the guest agent too when it answers.
    """
    active = bool(dom.isActive())
    if tree is None:
        tree = parse_xml(dom.XMLDesc(0))
    facts = with_metadata(domain_facts(tree), tree)
    state, _reason = domain_state(dom)
    persistent = bool(dom.isPersistent())
    facts.update(state=state, persistent=persistent, autostart=bool(persistent and dom.autostart()))
    if addresses is None:
        addresses = {}
        if active and facts["interfaces"]:
            addresses, _errors = interface_addresses(dom, agent=agent and agent_connected(tree))
    for iface in facts["interfaces"]:
        iface["addresses"] = addresses.get(iface["mac"], [])
    facts["ip"] = first_ipv4(addresses, [i["mac"] for i in facts["interfaces"]])
    return facts
