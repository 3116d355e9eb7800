#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_network_host
short_description: One DHCP reservation and one DNS record of a libvirt network, changed one entry at a time
version_added: 0.1.0
description:
  - Adds, changes or removes the DHCP reservation of one MAC address (O(mac) gets
    O(ip), and O(hostname) with its lease) and the DNS record of one address (O(ip)
    resolves as O(dns_names)) on an existing libvirt network.
  - Each change is one C(virNetworkUpdate) call on one entry (add, modify or
    delete), applied to the running network and to its persistent definition at
    once (only to the one that exists). The network is never redefined and never
    restarted, guests keep their connections, and tasks that run in parallel on
    the same network (one per VM, with many forks) cannot lose each other's
    entries, as they could if each rewrote the network's whole list.
  - A converged entry reports no change, in check mode too. An entry that holds
    another MAC's address or name, or a DNS name that belongs to another address,
    is refused with a sentence and nothing changes.
  - B(Coexistence with kvm_network.) M(iaas.kvm.kvm_network) manages the complete
    lists O(iaas.kvm.kvm_network#module:ipv4.dhcp.hosts) and
    O(iaas.kvm.kvm_network#module:dns.hosts) when they are given, and then removes
    every entry it was not given, those of this module too. Leave them out of
    kvm_network's task on networks whose entries this module adds (omitted, a list
    is not managed and its entries stay as they are; an empty list means none).
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  network:
    description: Name of the libvirt network (it must exist).
    type: str
    required: true
  state:
    description:
      - V(present) makes the reservation of O(mac) and the DNS record of O(ip) what
        the task says.
      - V(absent) removes the reservation of O(mac) (or, without O(mac), the one of
        O(ip)) and the DNS record of O(ip) (or, without O(ip), of the address the
        removed reservation held). Entries that do not exist, or a network that does
        not exist, are not an error.
    type: str
    choices: [present, absent]
    default: present
  mac:
    description:
      - MAC address of the guest interface whose DHCP reservation this is.
      - Without it, O(state=present) manages only the DNS record of O(ip).
    type: str
  ip:
    description:
      - The IPv4 address. For a reservation it must lie in the network's subnet and
        be neither the network's own address nor its broadcast address.
      - Required with O(state=present).
    type: str
  hostname:
    description:
      - Host name handed to the guest with its lease (the reservation's C(name)).
      - Also the DNS name of O(ip) unless O(dns_names) is given.
    type: str
  dns_names:
    description:
      - The names the network's DNS answers with O(ip), always, whether or not the
        guest holds a lease (the whole record of O(ip); names it held before and
        not listed here are removed from it).
      - Defaults to O(hostname) when that is given; V([]) removes the record of O(ip).
        Without O(hostname) and O(dns_names) the record of O(ip) is left as it is.
    type: list
    elements: str
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
notes:
  - The network needs an IPv4 subnet with DHCP for a reservation, and an IPv4 subnet
    for a DNS record (its dnsmasq serves both). A bridge-mode network has neither;
    give guests on it static addresses in their seeds.
  - libvirt's DNS records cannot be modified in place; a changed record is deleted
    and added again (two calls on that one record).
seealso:
  - module: iaas.kvm.kvm_network
  - module: iaas.kvm.kvm_network_info
"""

EXAMPLES = r"""
- name: A fixed address and a DNS name for a VM on the NAT network default
  iaas.kvm.kvm_network_host:
    network: default
    mac: "52:54:00:6b:3c:01"
    ip: 192.168.122.10
    hostname: web-1

- name: The same with more names, and no name in the lease
  iaas.kvm.kvm_network_host:
    network: default
    mac: "52:54:00:6b:3c:01"
    ip: 192.168.122.10
    dns_names: [web-1, www]

- name: Only a DNS record (a service outside libvirt's DHCP)
  iaas.kvm.kvm_network_host:
    network: default
    ip: 192.168.122.5
    dns_names: [registry]

- name: Remove the reservation of a MAC and the DNS record of its address
  iaas.kvm.kvm_network_host:
    network: default
    mac: "52:54:00:6b:3c:01"
    state: absent

- name: One reservation per VM, in parallel across a group of VM hosts (delegated to their hypervisor)
  iaas.kvm.kvm_network_host:
    network: default
    mac: "{{ vm_mac }}"
    ip: "{{ vm_ip }}"
    hostname: "{{ inventory_hostname }}"
  delegate_to: "{{ vm_host }}"
"""

RETURN = r"""
reservation:
  description:
    - The DHCP reservation of O(mac) after the task (C(mac), C(ip), C(name)), null
      when there is none (in check mode, as the task would leave it).
  returned: always
  type: dict
  sample: {mac: "52:54:00:6b:3c:01", ip: 192.168.122.10, name: web-1}
dns_host:
  description:
    - The DNS record of O(ip) after the task (C(ip), C(hostnames)), null when there
      is none (in check mode, as the task would leave it).
  returned: always
  type: dict
  sample: {ip: 192.168.122.10, hostnames: [web-1]}
actions:
  description:
    - What the module did (or would do in check mode), one entry a C(virNetworkUpdate)
      call, with the definitions it touched (C(live), C(persistent)).
  returned: always
  type: list
  elements: str
  sample: ["added reservation 52:54:00:6b:3c:01 192.168.122.10 web-1 (live, persistent)"]
"""

import ipaddress

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    LibvirtModuleError,
    ModuleManager,
    check_libraries,
    etree,
    exit_module,
    libvirt,
    lookup,
    run_manager,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network import (
    dhcp_host_element,
    dns_host_element,
    normalise_mac,
    parse_network,
    validate_hostname,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network_facts import live_tree, persistent_tree


def argument_spec():
    spec = dict(
        network=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        mac=dict(type="str"),
        ip=dict(type="str"),
        hostname=dict(type="str"),
        dns_names=dict(type="list", elements="str"),
    )
    spec.update(URI_ARGUMENT_SPEC)
    return spec


def _ipv4(value):
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise LibvirtModuleError("ip %r is not an IPv4 address." % (value,)) from None


def _describe_reservation(host):
    return " ".join(v for v in (host.get("mac"), host.get("ip"), host.get("name")) if v)


def _describe_dns(host):
    return "%s %s" % (host["ip"], ",".join(host["hostnames"]))


def _add_reservation(host):
    return (
        "added reservation " + _describe_reservation(host),
        libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        dhcp_host_element(host),
    )


def _modify_reservation(have, want):
    # libvirt finds the entry by its MAC and replaces it in one step.
    return (
        "modified reservation %s to %s" % (_describe_reservation(have), _describe_reservation(want)),
        libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        dhcp_host_element(want),
    )


def _delete_reservation(host):
    return (
        "deleted reservation " + _describe_reservation(host),
        libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        dhcp_host_element(host),
    )


def _add_dns(host):
    return (
        "added DNS record " + _describe_dns(host),
        libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        libvirt.VIR_NETWORK_SECTION_DNS_HOST,
        dns_host_element(host),
    )


def _delete_dns(host):
    # By its address alone: libvirt matches a record by its address or any of its names.
    return (
        "deleted DNS record " + _describe_dns(host),
        libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
        libvirt.VIR_NETWORK_SECTION_DNS_HOST,
        etree.Element("host", ip=host["ip"]),
    )


class Definition:
    """One definition of the network (the live one or the persistent one), parsed."""

    def __init__(self, label, flag, tree):
        self.label = label
        self.flag = flag
        self.spec = parse_network(tree)
        ipv4 = self.spec.get("ipv4") or {}
        self.ipv4 = ipv4
        self.dhcp = ipv4.get("dhcp") or {}
        self.reservations = list(self.dhcp.get("hosts") or [])
        self.dns_hosts = list(self.spec["dns"]["hosts"])

    def reservation(self, mac=None, ip=None):
        for host in self.reservations:
            if (mac and host.get("mac") == mac) or (not mac and ip and host.get("ip") == ip):
                return host
        return None

    def dns_host(self, ip):
        for host in self.dns_hosts:
            if ip and host["ip"] == ip:
                return host
        return None


class NetworkHostManager(ModuleManager):
    """Reads the network's definitions, plans one update per entry, applies them."""

    def __init__(self, module, conn):
        super().__init__(module, conn)
        self.tracker = DifferenceTracker()

    # --- input ---------------------------------------------------------------

    def wanted(self):
        """``(mac, ip, hostname, dns_names)`` of the task, validated; touches nothing."""
        params = self.params
        mac = normalise_mac(params["mac"]) if params["mac"] else None
        ip = str(_ipv4(params["ip"])) if params["ip"] else None
        hostname = validate_hostname(params["hostname"]) if params["hostname"] else None
        names = params["dns_names"]
        if names is None and hostname:
            names = [hostname]
        if names is not None:
            names = sorted({validate_hostname(name) for name in names})
        if params["state"] == "present" and not mac and names is None:
            raise LibvirtModuleError(
                "Nothing to manage: give mac for a DHCP reservation, or hostname or dns_names for a DNS record."
            )
        return mac, ip, hostname, names

    def definitions(self, net):
        """The definitions that exist: the live one while the network runs, the persistent one when it has one."""
        found = []
        if net.isActive():
            found.append(Definition("live", libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, live_tree(net)))
        if net.isPersistent():
            found.append(Definition("persistent", libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG, persistent_tree(net)))
        return found

    # --- checks ----------------------------------------------------------------

    def check_reservation(self, definition, mac, ip, hostname):
        ipv4 = definition.ipv4
        if not ipv4 or not definition.dhcp.get("ranges"):
            raise LibvirtModuleError(
                "Network %s serves no DHCP (it has no IPv4 subnet with a DHCP range), so it cannot hold a "
                "reservation; give the guest a static address in its seed instead." % self.params["network"]
            )
        subnet = ipaddress.IPv4Network("%s/%d" % (ipv4["address"], ipv4["prefix"]), strict=False)
        addr = ipaddress.IPv4Address(ip)
        if addr not in subnet:
            raise LibvirtModuleError(
                "The address %s is outside network %s's subnet %s." % (ip, self.params["network"], subnet)
            )
        if ip == ipv4["address"] or (
            subnet.prefixlen <= 30 and addr in (subnet.network_address, subnet.broadcast_address)
        ):
            raise LibvirtModuleError(
                "The address %s is network %s's own, network or broadcast address." % (ip, self.params["network"])
            )
        for host in definition.reservations:
            if host.get("mac") == mac:
                continue
            if host.get("ip") == ip:
                raise LibvirtModuleError(
                    "The address %s is already reserved for %s on network %s; remove that reservation first or "
                    "choose another address." % (ip, _describe_reservation(host), self.params["network"])
                )
            if hostname and (host.get("name") or "").lower() == hostname.lower():
                raise LibvirtModuleError(
                    "The host name %s already belongs to the reservation %s on network %s; choose another name."
                    % (hostname, _describe_reservation(host), self.params["network"])
                )

    def check_dns(self, definition, ip, names, released=None):
        if not definition.ipv4:
            raise LibvirtModuleError(
                "Network %s has no IPv4 subnet, so no DNS server of its own to hold a record for %s."
                % (self.params["network"], ip)
            )
        wanted = {name.lower() for name in names}
        for host in definition.dns_hosts:
            if host["ip"] == ip or host is released:
                continue
            taken = sorted(name for name in host["hostnames"] if name.lower() in wanted)
            if taken:
                raise LibvirtModuleError(
                    "The DNS name %s already belongs to %s on network %s; a name may resolve to one address only."
                    % (taken[0], host["ip"], self.params["network"])
                )

    # --- planning --------------------------------------------------------------

    def plan_present(self, definition, mac, ip, hostname, names):
        """``[(description, command, section, element)]`` that make ``definition`` hold the entries."""
        ops = []
        released = None
        if mac:
            self.check_reservation(definition, mac, ip, hostname)
            want = dict(mac=mac, ip=ip, name=hostname)
            have = definition.reservation(mac=mac)
            if have is None:
                ops.append(_add_reservation(want))
            elif have != want:
                ops.append(_modify_reservation(have, want))
                if have.get("ip") != ip and names is not None:
                    # The MAC's old address is not its own any more, nor is its DNS record.
                    released = definition.dns_host(have.get("ip"))
        if names is None:
            return ops  # the DNS record of ip is not managed
        if released is not None:
            ops.append(_delete_dns(released))
        have_dns = definition.dns_host(ip)
        want_dns = dict(ip=ip, hostnames=names) if names else None
        if want_dns is not None:
            self.check_dns(definition, ip, names, released)
        if have_dns is not None and have_dns != want_dns:
            ops.append(_delete_dns(have_dns))
        if want_dns is not None and have_dns != want_dns:
            ops.append(_add_dns(want_dns))
        return ops

    @staticmethod
    def plan_absent(definition, mac, ip):
        ops = []
        have = definition.reservation(mac=mac, ip=ip)
        if have is not None:
            ops.append(_delete_reservation(have))
        have_dns = definition.dns_host(ip or (have or {}).get("ip"))
        if have_dns is not None:
            ops.append(_delete_dns(have_dns))
        return ops

    @staticmethod
    def merge(plans):
        """One call per distinct update, with the flags of every definition that needs it."""
        merged = []
        for definition, ops in plans:
            for description, command, section, element in ops:
                xml = etree.tostring(element, encoding="unicode")
                for entry in merged:
                    if entry["key"] == (description, command, section, xml):
                        entry["flags"] |= definition.flag
                        entry["labels"].append(definition.label)
                        break
                else:
                    merged.append(
                        dict(
                            key=(description, command, section, xml),
                            flags=definition.flag,
                            labels=[definition.label],
                        )
                    )
        return merged

    # --- run -------------------------------------------------------------------

    def run(self):
        mac, ip, hostname, names = self.wanted()
        name = self.params["network"]
        net = lookup(self.conn.networkLookupByName, name)
        if net is None and self.params["state"] == "absent":
            # No network, no entry: nothing to remove.
            result = dict(changed=False, reservation=None, dns_host=None, actions=[])
            if self.module._diff:
                nothing = dict(reservation=None, dns_host=None)
                result["diff"] = dict(before=nothing, after=dict(nothing))
            return result
        if net is None:
            raise LibvirtModuleError("Network %s does not exist; define it first (iaas.kvm.kvm_network)." % name)
        definitions = self.definitions(net)
        first = definitions[0]
        before = self.entries(first, mac, ip)
        if self.params["state"] == "present":
            plans = [(d, self.plan_present(d, mac, ip, hostname, names)) for d in definitions]
        else:
            plans = [(d, self.plan_absent(d, mac, ip)) for d in definitions]
        updates = self.merge(plans)
        for update in updates:
            description, command, section, xml = update["key"]
            if not self.check:
                self.call(
                    "update network %s with %s" % (name, xml), net.update, command, section, -1, xml, update["flags"]
                )
            self.act("%s (%s)" % (description, ", ".join(update["labels"])))
        if self.check or not updates:
            after = self.predicted(before, mac, ip, hostname, names)
        else:
            after = self.entries(self.definitions(net)[0], mac, ip or before["dns_host_ip"])
        for key in ("reservation", "dns_host"):
            self.tracker.add(key, before[key], after[key])
        result = dict(
            changed=self.changed, reservation=after["reservation"], dns_host=after["dns_host"], actions=self.actions
        )
        if self.module._diff:
            result["diff"] = self.tracker.diff()
        return result

    @staticmethod
    def entries(definition, mac, ip):
        reservation = definition.reservation(mac=mac, ip=ip)
        dns_ip = ip or (reservation or {}).get("ip")
        return dict(reservation=reservation, dns_host=definition.dns_host(dns_ip), dns_host_ip=dns_ip)

    def predicted(self, before, mac, ip, hostname, names):
        if self.params["state"] == "absent":
            return dict(reservation=None, dns_host=None)
        reservation = dict(mac=mac, ip=ip, name=hostname) if mac else before["reservation"]
        if names is None:
            return dict(reservation=reservation, dns_host=before["dns_host"])
        return dict(reservation=reservation, dns_host=dict(ip=ip, hostnames=names) if names else None)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ("ip",)), ("state", "absent", ("mac", "ip"), True)],
        supports_check_mode=True,
    )
    check_libraries(module)
    manager, result, error = run_manager(module, NetworkHostManager)
    exit_module(module, manager, result, error)


if __name__ == "__main__":
    main()
