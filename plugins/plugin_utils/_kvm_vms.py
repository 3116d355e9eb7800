# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of the inventory plugin iaas.kvm.kvm_vms, free of Ansible's controller
code (the plugin in plugins/inventory/kvm_vms.py adds it to the inventory):

- :func:`query_all` asks every hypervisor, in parallel and each within a
  timeout, for its domains with their resources, tags, GPUs and addresses
  (libvirt-python, domain XML read with the collection's parsers);
- :func:`build` turns the answers into inventory hosts (names, variables,
  ``ansible_host`` and the ProxyJump through the VM's hypervisor) and groups.

The answers are plain data (what the inventory cache stores).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import threading
import time
from urllib.parse import unquote, urlsplit

from ansible_collections.iaas.kvm.plugins.module_utils._domain import agent_connected, domain_facts
from ansible_collections.iaas.kvm.plugins.module_utils._domain_life import (
    ADDRESS_SOURCES,
    domain_state,
    first_ipv4,
    interface_addresses,
    with_metadata,
)
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    all_domains,
    connect,
    error_message,
    is_not_found,
    libvirt,
    parse_xml,
)

NAME_RULES = ("error", "prefix", "suffix")
_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class InventoryError(Exception):
    """A configuration or a fleet the plugin cannot turn into an inventory, as a sentence."""


# -- the hypervisors --------------------------------------------------------------------


def hypervisor_entries(entries):
    """``[{uri, name, jump_host}]`` from the ``hypervisors`` option (URIs or dicts)."""
    result = []
    for index, given in enumerate(entries or []):
        entry = dict(uri=given) if isinstance(given, str) else given
        if not isinstance(entry, dict) or not entry.get("uri"):
            raise InventoryError("hypervisors[%d] must be a libvirt URI or a dict with uri, got %r." % (index, entry))
        unknown = set(entry) - {"uri", "name", "jump_host"}
        if unknown:
            raise InventoryError(
                "hypervisors[%d] takes uri, name and jump_host, not %s." % (index, ", ".join(sorted(unknown)))
            )
        parts = urlsplit(entry["uri"])
        host = parts.hostname
        default_jump = None
        if host and parts.scheme.endswith("+ssh"):
            default_jump = "%s%s%s" % (
                unquote(parts.username) + "@" if parts.username else "",
                host,
                ":%d" % parts.port if parts.port else "",
            )
        result.append(
            dict(
                uri=entry["uri"],
                name=entry.get("name") or host or "localhost",
                jump_host=entry.get("jump_host") or default_jump,
            )
        )
    names = [e["name"] for e in result]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InventoryError(
            "Two hypervisors are called %s; give each its own name (hypervisors[].name)." % ", ".join(twice)
        )
    if not result:
        raise InventoryError("hypervisors lists no libvirt URI.")
    return result


# -- asking one hypervisor ----------------------------------------------------------------


def _addresses(dom, live, macs, sources):
    """All addresses found and the first IPv4 by ``sources`` in order: ``(found, ip, source)``."""
    found = {}
    for source in sources:
        if source == "agent" and not agent_connected(live):
            continue  # no agent answers: do not wait for libvirt to say so
        addresses, _errors = interface_addresses(dom, sources=[source])
        for mac, entries in addresses.items():
            known = [e["address"] for e in found.get(mac, [])]
            found.setdefault(mac, []).extend(e for e in entries if e["address"] not in known)
        ip = first_ipv4(addresses, macs)
        if ip:
            return found, ip, source
    return found, None, None


def describe_vm(dom, sources):
    """What the inventory keeps of one domain."""
    active = bool(dom.isActive())
    tree = parse_xml(dom.XMLDesc(0 if active else libvirt.VIR_DOMAIN_XML_INACTIVE))
    facts = with_metadata(domain_facts(tree), tree)
    macs = [i["mac"] for i in facts["interfaces"] if i["mac"]]
    found, ip, source = ({}, None, None)
    if active and macs:
        found, ip, source = _addresses(dom, tree, macs, sources)
    interfaces = []
    for iface in facts["interfaces"]:
        interfaces.append(
            dict(
                mac=iface["mac"],
                type=iface["type"],
                network=iface["network"],
                bridge=iface["bridge"],
                model=iface["model"],
                addresses=found.get(iface["mac"], []),
            )
        )
    return dict(
        name=facts["name"],
        uuid=facts["uuid"],
        state=domain_state(dom)[0],
        vcpus=facts["vcpus"],
        memory=facts["memory"],
        interfaces=interfaces,
        gpus=[dict(address=g["address"], model=g["model"]) for g in facts["gpus"]],
        tags=facts["tags"],
        address=ip,
        address_source=source,
    )


def query(uri, sources):
    """The VMs of the hypervisor at ``uri``, sorted by name; raises LibvirtModuleError."""
    conn = connect(uri)
    try:
        vms = []
        for dom in all_domains(conn):
            try:
                vms.append(describe_vm(dom, sources))
            except libvirt.libvirtError as exc:
                if not is_not_found(exc):
                    raise LibvirtModuleError("Cannot read a VM of %s: %s" % (uri, error_message(exc))) from exc
        return sorted(vms, key=lambda vm: vm["name"])
    except libvirt.libvirtError as exc:
        raise LibvirtModuleError("Cannot list the VMs of %s: %s" % (uri, error_message(exc))) from exc
    finally:
        conn.close()


def query_all(hypervisors, sources, timeout):
    """Ask every hypervisor at once; each answer is its entry with ``vms`` or ``error``.

    A hypervisor that has not answered within ``timeout`` seconds is reported as
    unreachable; its worker thread is left behind (a daemon, so it does not keep
    the process alive)."""
    for source in sources:
        if source not in ADDRESS_SOURCES:
            raise InventoryError("address_sources takes %s, not %r." % (", ".join(ADDRESS_SOURCES), source))
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    answers = [dict(entry, vms=None, error=None) for entry in hypervisors]

    def work(answer):
        try:
            answer["vms"] = query(answer["uri"], sources)
        except LibvirtModuleError as exc:
            answer["error"] = str(exc)

    threads = []
    for answer in answers:
        thread = threading.Thread(target=work, args=(answer,), name="kvm_vms %s" % answer["name"], daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    results = []
    for answer, thread in zip(answers, threads):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            results.append(dict(answer, vms=None, error="no answer within %s s (timeout)." % timeout))
        else:
            results.append(dict(answer))
    return results


# -- the inventory --------------------------------------------------------------------------


def group_name(*parts):
    """A safe group name: letters, digits and underscores."""
    return _GROUP_UNSAFE.sub("_", "_".join(str(p) for p in parts))


def _host_names(answers, rule, separator):
    """``{(hypervisor, vm): inventory name}``; a clash is an error unless ``rule`` renames."""
    homes = {}
    for answer in answers:
        for vm in answer["vms"] or []:
            homes.setdefault(vm["name"], []).append(answer["name"])
    names = {}
    for vm, hypervisors in sorted(homes.items()):
        if len(hypervisors) > 1 and rule == "error":
            raise InventoryError(
                "The VM name %s is used on the hypervisors %s; give the VMs different names, or set name_clash "
                "to prefix or suffix to name them after their hypervisor." % (vm, " and ".join(hypervisors))
            )
        for hypervisor in hypervisors:
            if len(hypervisors) == 1:
                names[(hypervisor, vm)] = vm
            elif rule == "prefix":
                names[(hypervisor, vm)] = "%s%s%s" % (hypervisor, separator, vm)
            else:
                names[(hypervisor, vm)] = "%s%s%s" % (vm, separator, hypervisor)
    taken = {}
    for key, name in sorted(names.items()):
        if name in taken:
            raise InventoryError(
                "The inventory name %s stands for VM %s of %s and VM %s of %s; change name_separator or a VM's name."
                % (name, taken[name][1], taken[name][0], key[1], key[0])
            )
        taken[name] = key
    return names


def build(answers, options):
    """``(hosts, groups)``: ``{inventory name: variables}`` and ``{group: [inventory names]}``
    from the answers of :func:`query_all` (unreachable hypervisors contribute nothing)."""
    prefix = options["vars_prefix"]
    group_prefix = options["group_prefix"]
    states = options.get("states")
    names = _host_names(answers, options["name_clash"], options["name_separator"])
    hosts, groups = {}, {}

    def join(group, host):
        groups.setdefault(group, [])
        if host not in groups[group]:
            groups[group].append(host)

    for answer in answers:
        for vm in answer["vms"] or []:
            if states and vm["state"] not in states:
                continue
            name = names[(answer["name"], vm["name"])]
            variables = {
                prefix + "name": vm["name"],
                prefix + "hypervisor": answer["name"],
                prefix + "hypervisor_uri": answer["uri"],
                prefix + "uuid": vm["uuid"],
                prefix + "state": vm["state"],
                prefix + "vcpus": vm["vcpus"],
                prefix + "memory": vm["memory"],
                prefix + "interfaces": vm["interfaces"],
                prefix + "gpus": vm["gpus"],
                prefix + "tags": vm["tags"],
                prefix + "address": vm["address"],
                prefix + "address_source": vm["address_source"],
            }
            if vm["address"]:
                variables["ansible_host"] = vm["address"]
                if options.get("proxy_jump") and answer["jump_host"]:
                    args = "-o ProxyJump=%s" % answer["jump_host"]
                    if options.get("ssh_args"):
                        args = "%s %s" % (options["ssh_args"], args)
                    variables["ansible_ssh_common_args"] = args
            hosts[name] = variables
            join(group_name(group_prefix + "hypervisor", answer["name"]), name)
            join(group_name(group_prefix + "state", vm["state"]), name)
            for iface in vm["interfaces"]:
                if iface["network"]:
                    join(group_name(group_prefix + "network", iface["network"]), name)
                elif iface["bridge"]:
                    join(group_name(group_prefix + "bridge", iface["bridge"]), name)
            for gpu in vm["gpus"]:
                if gpu["model"]:
                    join(group_name(group_prefix + "gpu", gpu["model"]), name)
            if not vm["address"]:
                join(group_name(group_prefix + "no_address"), name)
    return hosts, {g: sorted(h) for g, h in sorted(groups.items())}
