#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_network
short_description: Declarative libvirt virtual networks, updated without dropping guests
version_added: 0.1.0
description:
  - Defines, updates, starts, stops and removes a libvirt virtual network from a
    declarative spec (O(mode), O(bridge), O(domain), O(mtu), O(ipv4), O(dns)), or
    from raw network XML with O(xml).
  - The spec is compared field by field with the network's parsed definitions (the
    persistent one and, while the network runs, the live one), never as XML text,
    so a converged network reports no change, in check mode too.
  - Parts of an existing definition that the spec does not manage (IPv6 addresses,
    port groups, QoS, TFTP, DNS TXT and SRV records, the NAT port range) are kept,
    and so are its UUID, its MAC address and a bridge name that libvirt picked.
  - DHCP reservations (O(ipv4.dhcp.hosts)), DNS hosts (O(dns.hosts)), the DHCP
    range and O(ipv4.dhcp.lease_time) change on the running network through
    C(virNetworkUpdate), without a restart; guests keep their connections.
    Reservations and DNS hosts only make dnsmasq reload them; a new DHCP range or
    lease time restarts dnsmasq alone, never the bridge.
  - Every other change (O(mode), O(bridge), O(ipv4.address), O(ipv4.prefix),
    turning DHCP on or off, O(domain), O(mtu), O(dns.forwarders), anything in
    O(xml) beyond these) is stored in the persistent definition and needs the
    network to be restarted. The module redefines and restarts it when no running
    guest uses it.
  - When running guests use it, the task is refused unless O(force=true); it fails
    naming them, returns RV(restart_required=true), C(changed=false) and in
    RV(actions) what it would do, and changes nothing, neither the persistent nor
    the live definition (so no later restart or host reboot brings the change in
    unannounced). Stopping or removing a network that running guests use is refused
    the same way. A network restart interrupts every guest on it, which is why the
    module asks first; a VM change that needs a reboot is different (see
    M(iaas.kvm.kvm_vm)); it is stored and reported, because it touches that VM alone.
  - With O(force=true) the network is restarted and each running guest's interface
    is put back on the new bridge (libvirt does not do that itself); the interface
    moves to the bridge, gets a new port in the network and its link goes down and
    up, as with a re-plugged cable. Guests that watch their carrier
    (systemd-networkd, NetworkManager) ask for a new lease at once; others (ifupdown
    with dhclient) when their lease runs out, so keep O(ipv4.dhcp.lease_time) short
    on networks whose subnet may change.
  - For O(mode=bridge), the host bridge must exist on the hypervisor. The module asks
    libvirtd through libvirt's interface API (C(virInterfaceLookupByName)), so the
    check is made where libvirtd runs (its network namespace, or the remote host of
    O(uri)), never in the module's own C(/sys/class/net). On a hypervisor whose libvirt
    has no interface driver the check is skipped with a warning. The same check
    refuses a bridge name for a libvirt-made bridge that another host interface or
    another network already uses.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - Name of the network.
      - With O(xml), the XML's C(<name>) must be the same (or missing).
    type: str
    required: true
  state:
    description:
      - V(present) defines the network (or updates its definition).
      - V(absent) stops and undefines it. A network that running guests use is
        refused, naming them, unless O(force=true).
    type: str
    choices: [present, absent]
    default: present
  active:
    description:
      - Whether the network runs.
      - V(false) stops it; a network that running guests use is refused, naming
        them, unless O(force=true).
    type: bool
    default: true
  autostart:
    description:
      - Whether libvirtd starts the network when it starts.
    type: bool
    default: true
  mode:
    description:
      - V(nat) a bridge with its own subnet, DHCP and DNS, NAT to the host's
        outside interfaces. Guests that send a host name with their DHCP request
        resolve each other by that name (this holds for every mode with O(ipv4.dhcp)).
      - V(route) the same without NAT; other hosts need a route to the subnet.
        Guests on two route networks of one hypervisor reach each other by address.
      - V(isolated) a bridge with no forwarding; guests reach each other and the
        host (O(ipv4) optional).
      - V(open) like V(route), but libvirt adds no firewall rules at all.
      - V(bridge) guests join an existing host bridge (O(bridge)) and its network;
        O(ipv4), O(dns), O(domain) and O(mtu) cannot be set.
      - V(nat), V(route) and V(open) need O(ipv4).
      - Mutually exclusive with O(xml), like every spec option.
    type: str
    choices: [nat, route, isolated, open, bridge]
    default: nat
  bridge:
    description:
      - For O(mode=bridge), the existing host bridge (required).
      - For the other modes, the name of the bridge libvirt creates; libvirt picks
        one (C(virbrN)) when omitted, and the module then keeps what it picked.
      - At most 15 characters, without C(/), C(:) or white space.
    type: str
  domain:
    description:
      - DNS domain of the network. Guests that send a host name with their DHCP
        request resolve each other as C(name) and C(name.domain); queries for the
        domain are answered by the network's DNS server alone.
    type: str
  mtu:
    description:
      - MTU of the bridge and of the guests' tap devices (68-65535); libvirt's
        default (1500, or the host interface's) when omitted.
    type: int
  ipv4:
    description:
      - The network's IPv4 subnet, given by the host's address on the bridge.
      - Omit it for an isolated network without addresses.
    type: dict
    suboptions:
      address:
        description: The host's address on the bridge (the guests' gateway and DNS server), such as C(192.168.150.1).
        type: str
        required: true
      prefix:
        description: Prefix length of the subnet (0-32).
        type: int
        default: 24
      dhcp:
        description:
          - DHCP (dnsmasq) on the network; omit it for static addresses only.
          - The range and every reservation must lie inside the subnet, the range
            must not contain O(ipv4.address), and MACs, addresses and names of the
            reservations must be unique.
        type: dict
        suboptions:
          start:
            description: First address DHCP hands out.
            type: str
            required: true
          end:
            description: Last address DHCP hands out.
            type: str
            required: true
          lease_time:
            description:
              - How long a lease lasts. Seconds as an integer, a duration such as
                V(30m), V(12h) or V(2d), or V(infinite). At least 120 seconds
                (dnsmasq's minimum). dnsmasq's default (one hour) when omitted.
              - Guests renew after half of it, so a short lease lets them follow a
                forced subnet change quickly.
            type: raw
          hosts:
            description:
              - DHCP reservations (fixed addresses by MAC), changed live. The complete list
                of the network's reservations; V([]) means none.
              - Omitted, the reservations are not managed and stay as they are, such as those
                that M(iaas.kvm.kvm_network_host) adds one VM at a time. Give the list here, or
                manage the entries with kvm_network_host, not both (a list given here removes
                every reservation it does not hold).
            type: list
            elements: dict
            suboptions:
              mac:
                description: MAC address of the guest interface.
                type: str
                required: true
              ip:
                description: The address it always gets.
                type: str
                required: true
              name:
                description:
                  - Host name handed to the guest with its lease (instead of the name the guest asks for).
                  - The network's DNS serves it while the guest holds its lease; for a name that
                    always resolves, add it to O(dns.hosts) too.
                type: str
  dns:
    description: The network's DNS server (dnsmasq); needs O(ipv4).
    type: dict
    suboptions:
      hosts:
        description:
          - Extra DNS records (address to names), changed live. The complete list of the
            network's records; V([]) means none.
          - Omitted, the records are not managed and stay as they are, such as those that
            M(iaas.kvm.kvm_network_host) adds; as for O(ipv4.dhcp.hosts), use one or the other.
        type: list
        elements: dict
        suboptions:
          ip:
            description: IPv4 or IPv6 address.
            type: str
            required: true
          hostnames:
            description: Names that resolve to O(dns.hosts[].ip).
            type: list
            elements: str
            required: true
      forwarders:
        description: Upstream DNS servers (IP addresses), asked in order, instead of the host's resolv.conf.
        type: list
        elements: str
        default: []
  xml:
    description:
      - A complete libvirt network XML definition, used instead of the spec options.
      - Compared by the same fields as the spec, plus the elements the spec does not
        manage (as parsed data); the existing UUID, MAC address and bridge name are
        kept when the XML has none.
    type: str
  force:
    description:
      - Restart a network that running guests use when a change needs a restart,
        and put their interfaces back on the new bridge.
      - Stop (O(active=false)) or remove (O(state=absent)) a network that running
        guests use; their interfaces are then left on no network.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
notes:
  - Only one IPv4 subnet is managed; further IPv4 C(<ip>) elements of an existing
    definition are removed, IPv6 ones are kept. Use O(xml) for IPv6 and more.
seealso:
  - module: iaas.kvm.kvm_network_info
  - module: iaas.kvm.kvm_network_host
    description: One reservation or DNS record at a time, safe for many parallel tasks.
  - name: libvirt network XML format
    description: Every element a network definition can hold.
    link: https://libvirt.org/formatnetwork.html
"""

EXAMPLES = r"""
- name: NAT network with DHCP, a reservation and a DNS record (mode nat)
  iaas.kvm.kvm_network:
    name: lab
    mode: nat
    bridge: virbr-lab
    domain: lab.internal
    ipv4:
      address: 192.168.150.1
      prefix: 24
      dhcp:
        start: 192.168.150.100
        end: 192.168.150.199
        lease_time: 1h
        hosts:
          - mac: "52:54:00:00:15:01"
            ip: 192.168.150.10
            name: gpu1
    dns:
      hosts:
        - ip: 192.168.150.5
          hostnames: [registry, registry.lab.internal]
      forwarders: [192.168.150.2]

- name: Routed network that other hosts reach by a static route (mode route)
  iaas.kvm.kvm_network:
    name: backend
    mode: route
    ipv4:
      address: 192.168.151.1
      prefix: 24
      dhcp:
        start: 192.168.151.100
        end: 192.168.151.199

- name: Isolated network for storage traffic, jumbo frames, no addresses on the host side (mode isolated)
  iaas.kvm.kvm_network:
    name: storage
    mode: isolated
    bridge: virbr-stor
    mtu: 9000

- name: Open network, firewalled by rules of your own (mode open)
  iaas.kvm.kvm_network:
    name: open1
    mode: open
    ipv4:
      address: 192.168.152.1
      prefix: 24

- name: Guests join the existing host bridge br0 and the LAN behind it (mode bridge)
  iaas.kvm.kvm_network:
    name: lan
    mode: bridge
    bridge: br0

- name: A network from raw XML (xml)
  iaas.kvm.kvm_network:
    name: v6lab
    xml: |
      <network>
        <name>v6lab</name>
        <forward mode='nat'/>
        <ip address='192.168.153.1' prefix='24'>
          <dhcp><range start='192.168.153.100' end='192.168.153.199'/></dhcp>
        </ip>
        <ip family='ipv6' address='fd00:153::1' prefix='64'/>
      </network>

- name: Move a network with running guests to a new subnet, restarting it and re-plugging the guests
  iaas.kvm.kvm_network:
    name: lab
    bridge: virbr-lab
    ipv4:
      address: 192.168.154.1
      dhcp:
        start: 192.168.154.100
        end: 192.168.154.199
        lease_time: 2m
    force: true

- name: Find a guest's address from the network's DHCP leases
  iaas.kvm.kvm_network:
    name: lab
    bridge: virbr-lab
    ipv4:
      address: 192.168.150.1
      dhcp:
        start: 192.168.150.100
        end: 192.168.150.199
  register: lab_net

- name: Show it
  ansible.builtin.debug:
    msg: "{{ lab_net.network.leases | selectattr('hostname', 'equalto', 'gpu1') | map(attribute='ip') | first }}"

- name: Remove a network
  iaas.kvm.kvm_network:
    name: lab
    state: absent
"""

RETURN = r"""
network:
  description:
    - The network after the task, read back from libvirt (from its live definition
      while it runs), with the same keys as each entry of the C(networks) list of
      M(iaas.kvm.kvm_network_info) (C(name), C(uuid), C(active),
      C(persistent), C(autostart), C(mode), C(bridge), C(mac), C(mtu), C(domain),
      C(ipv4) with C(address), C(prefix), C(network) and C(dhcp) (C(start), C(end),
      C(lease_time) in seconds, C(ranges), C(hosts)), C(dns) (C(hosts),
      C(forwarders)), C(leases), C(guests) and C(restart_required)).
    - In check mode, as the task would leave it (C(uuid) and C(mac) are null for a
      network it would create; leases and guests as they are now).
    - Empty after O(state=absent).
  returned: always
  type: dict
  sample:
    name: lab
    uuid: 3e9b8c6e-9f5e-4c4c-8d51-2b8f0c3f1a10
    active: true
    persistent: true
    autostart: true
    mode: nat
    bridge: virbr-lab
    mac: "52:54:00:8a:1c:3e"
    mtu: null
    domain: lab.internal
    ipv4:
      address: 192.168.150.1
      prefix: 24
      network: 192.168.150.0/24
      dhcp:
        start: 192.168.150.100
        end: 192.168.150.199
        lease_time: 3600
        ranges: [{start: 192.168.150.100, end: 192.168.150.199, lease_time: 3600}]
        hosts: [{mac: "52:54:00:00:15:01", ip: 192.168.150.10, name: gpu1}]
    dns: {hosts: [{ip: 192.168.150.5, hostnames: [registry]}], forwarders: []}
    leases: [{mac: "52:54:00:00:15:01", ip: 192.168.150.10, prefix: 24, family: ipv4, hostname: gpu1, client_id: null, expires: 1767225600}]
    guests: [gpu1]
    restart_required: false
restart_required:
  description:
    - True when the task asks for a change that the running network only gets by
      a restart, refused because running guests use it (the task then fails,
      changing nothing, unless O(force=true)); also true when the persistent
      definition already holds such a change that the running network lacks
      (made outside this module).
  returned: always
  type: bool
  sample: false
reattached:
  description: Running guests whose interfaces were put back on the network after a forced restart.
  returned: always
  type: list
  elements: str
  sample: [gpu1]
actions:
  description:
    - What the module did (or would do in check mode), in order.
    - On a refusal, what the task would do with O(force=true); nothing of it was done.
    - On a failure after a change, what was done before the failure.
  returned: always
  type: list
  elements: str
  sample: ["defined", "updated live: ipv4.dhcp.hosts", "autostart on"]
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker, state_diff
from ansible_collections.iaas.kvm.plugins.module_utils._interrupt import kill_point
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    LibvirtModuleError,
    ModuleManager,
    check_libraries,
    domains_using_network,
    error_message,
    failure_result,
    libvirt,
    lookup,
    run_manager,
    to_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_name
from ansible_collections.iaas.kvm.plugins.module_utils._network import (
    MODES,
    apply_spec,
    differing_fields,
    fill_unmanaged,
    flatten,
    keep_identity,
    needs_restart,
    new_network_tree,
    parse_network,
    public_spec,
    validate_spec,
    xml_spec,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network_facts import (
    live_tree,
    network_facts,
    persistent_tree,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network_live import (
    apply_live_updates,
    bridge_users,
    host_interface_type,
    live_update_ops,
    restart_network,
)

SPEC_FIELDS = ("mode", "bridge", "domain", "mtu", "ipv4", "dns")


def _entries(**options):
    """A list of dictionaries with ``options``; omitted (None), it is not managed."""
    return dict(type="list", elements="dict", options=options)


def argument_spec():
    spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        active=dict(type="bool", default=True),
        autostart=dict(type="bool", default=True),
        mode=dict(type="str", default="nat", choices=list(MODES)),
        bridge=dict(type="str"),
        domain=dict(type="str"),
        mtu=dict(type="int"),
        ipv4=dict(
            type="dict",
            options=dict(
                address=dict(type="str", required=True),
                prefix=dict(type="int", default=24),
                dhcp=dict(
                    type="dict",
                    options=dict(
                        start=dict(type="str", required=True),
                        end=dict(type="str", required=True),
                        lease_time=dict(type="raw"),
                        hosts=_entries(
                            mac=dict(type="str", required=True),
                            ip=dict(type="str", required=True),
                            name=dict(type="str"),
                        ),
                    ),
                ),
            ),
        ),
        dns=dict(
            type="dict",
            options=dict(
                hosts=_entries(
                    ip=dict(type="str", required=True),
                    hostnames=dict(type="list", elements="str", required=True),
                ),
                forwarders=dict(type="list", elements="str", default=[]),
            ),
        ),
        xml=dict(type="str"),
        force=dict(type="bool", default=False),
    )
    spec.update(URI_ARGUMENT_SPEC)
    return spec


class NetworkManager(ModuleManager):
    """Reads the network, compares it with the task, and converges it."""

    def __init__(self, module, conn):
        super().__init__(module, conn)
        self.tracker = DifferenceTracker()
        self.restart_required = False
        self.reattached = []
        self.diff = None

    # --- input ---------------------------------------------------------------

    def desired(self):
        """``(tree or None, spec, compare_other)`` of the task, validated; touches nothing."""
        if self.params["xml"]:
            tree, spec = xml_spec(self.params["xml"], self.name)
            return tree, spec, True
        return None, validate_spec(self.params), False

    def check_bridge(self, spec, live):
        """Refuse a bridge that is missing (mode bridge) or taken (the other modes)."""
        bridge = spec.get("bridge")
        if not bridge or spec["mode"] not in MODES:
            return
        if spec["mode"] != "bridge":
            users = bridge_users(self.conn, bridge, skip=self.name)
            if users:
                raise LibvirtModuleError("The bridge name %s is already used by network %s." % (bridge, users[0]))
        try:
            kind = host_interface_type(self.conn, bridge)
        except LibvirtModuleError as exc:
            self.warnings.append("Could not check host interface %s: %s" % (bridge, exc))
            return
        if spec["mode"] == "bridge":
            if kind is None:
                raise LibvirtModuleError(
                    "mode bridge needs an existing host bridge, but the hypervisor has no interface named %s." % bridge
                )
            if kind != "bridge":
                raise LibvirtModuleError(
                    "mode bridge needs a host bridge, but the hypervisor's interface %s is of type %s." % (bridge, kind)
                )
        elif kind is not None and not (live is not None and live.get("bridge") == bridge):
            raise LibvirtModuleError(
                "The hypervisor already has an interface named %s; choose another bridge name for network %s."
                % (bridge, self.name)
            )

    # --- actions -------------------------------------------------------------

    def define(self, tree):
        xml = to_xml(tree)
        define_flags = getattr(self.conn, "networkDefineXMLFlags", None)
        validate = getattr(libvirt, "VIR_NETWORK_DEFINE_VALIDATE", 0)
        try:
            if define_flags is not None and validate:
                try:
                    return define_flags(xml, validate)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                        raise
            return self.conn.networkDefineXML(xml)
        except libvirt.libvirtError as exc:
            raise LibvirtModuleError("Cannot define network %s: %s" % (self.name, error_message(exc))) from exc

    # --- states --------------------------------------------------------------

    def present(self):
        tree, spec, with_other = self.desired()
        net = lookup(self.conn.networkLookupByName, self.name)
        if net is None:
            spec = fill_unmanaged(spec, None)
            self.check_bridge(spec, None)
            return self.create(tree if tree is not None else apply_spec(new_network_tree(self.name), spec), spec)
        plan = self.plan(net, tree, spec, with_other)
        self.refuse_unsafe(plan)
        self.apply(plan["steps"])
        return self.result(net, plan["live_spec"])

    def plan(self, net, tree, spec, with_other):
        """What converging the existing ``net`` takes, read without changing anything:
        the steps in order, as ``(action, function)`` pairs, and what the refusals need."""
        want_active = self.params["active"]
        active = bool(net.isActive())
        persistent_el = persistent_tree(net)
        persistent = parse_network(persistent_el)
        live = parse_network(live_tree(net)) if active else None
        # Host lists the task omits keep each definition's own entries.
        desired = spec
        spec = fill_unmanaged(desired, persistent)
        live_spec = fill_unmanaged(desired, live) if active else spec
        self.check_bridge(spec, live)

        want_tree = keep_identity(tree, persistent) if tree is not None else apply_spec(persistent_el, spec)
        config_fields = differing_fields(persistent, spec, with_other)
        live_fields = differing_fields(live, live_spec, with_other) if active and want_active else []
        restart = bool(live_fields) and needs_restart(live, live_spec, live_fields)
        guests = domains_using_network(self.conn, self.name, running_only=True) if active else []
        autostart = bool(net.autostart()) if net.isPersistent() else False
        self.track(live if active else persistent, persistent if active else None, live_spec, with_other, config_fields)
        self.tracker.add("active", active, want_active)
        self.tracker.add("autostart", autostart, self.params["autostart"])

        steps = []
        if config_fields or not net.isPersistent():
            steps.append(("defined", lambda: self.define(want_tree)))
        if autostart != self.params["autostart"]:
            want = self.params["autostart"]
            steps.append(("autostart %s" % ("on" if want else "off"), lambda: self.set_autostart(want)))
        if restart:
            steps.append(("restarted", self.restart))
            if guests:
                steps.append(("reattached " + ", ".join(guests), None))
        elif live_fields:
            ops = live_update_ops(live, live_spec)
            steps.append(("updated live: " + ", ".join(live_fields), lambda: apply_live_updates(self.network(), ops)))
        if want_active and not active:
            steps.append(("started", lambda: self.start(self.network())))
        elif active and not want_active:
            steps.append(("stopped", lambda: self.call("stop network %s" % self.name, self.network().destroy)))
        self.reattached = list(guests) if restart and self.check else []
        return dict(
            steps=steps,
            guests=guests,
            restart=restart,
            live_fields=live_fields,
            stop=active and not want_active,
            live_spec=live_spec,
        )

    def track(self, current, persistent, spec, with_other, config_fields):
        """The diff: the managed fields as the network runs (or is stored) and as
        asked, plus ``persistent.<field>`` where only the stored definition differs."""
        have, want = flatten(current, with_other, True), flatten(spec, with_other, True)
        for key in want:
            if key == "bridge" and not spec.get("bridge"):
                self.tracker.add(key, have[key], have[key], compare=False)
            else:
                self.tracker.add(key, have[key], want[key])
        if persistent is not None:
            have_p = flatten(persistent, with_other, True)
            for key in config_fields:
                if have[key] == want[key]:
                    self.tracker.add("persistent." + key, have_p[key], want[key])

    def refuse_unsafe(self, plan):
        """Refuse, before anything changes, what would cut running guests off."""
        if not plan["guests"] or self.params["force"]:
            return
        actions = [action for action, _function in plan["steps"]]
        if plan["stop"]:
            self.refuse(
                "Network %s is used by running guests: %s; stop them first or set force: true to stop it anyway."
                % (self.name, ", ".join(plan["guests"])),
                actions=actions,
            )
        if plan["restart"]:
            self.restart_required = True
            self.refuse(
                "Network %s needs a restart to apply %s, but running guests use it: %s; nothing was changed. "
                "Set force: true to restart it and reattach their interfaces."
                % (self.name, ", ".join(plan["live_fields"]), ", ".join(plan["guests"])),
                actions=actions,
                restart_required=True,
            )

    def apply(self, steps):
        """Carry out the planned steps in order (check mode only records them)."""
        for action, function in steps:
            if not self.check and function is not None:
                function()
            self.act(action)
            kill_point("kvm_network:" + action.partition(":")[0])

    def network(self):
        return self.conn.networkLookupByName(self.name)

    def set_autostart(self, want):
        self.call("set autostart of network %s" % self.name, self.network().setAutostart, 1 if want else 0)

    def restart(self):
        self.reattached = restart_network(self.conn, self.network())

    def create(self, tree, spec):
        after = public_spec(spec)
        after.update(active=self.params["active"], autostart=self.params["autostart"])
        self.diff = state_diff(None, after)
        steps = [("defined", lambda: self.define(tree))]
        if self.params["autostart"]:
            steps.append(("autostart on", lambda: self.set_autostart(True)))
        if self.params["active"]:
            steps.append(("started", lambda: self.start(self.network())))
        self.apply(steps)
        return self.result(None if self.check else self.network(), spec)

    def start(self, net):
        try:
            net.create()
        except libvirt.libvirtError as exc:
            raise LibvirtModuleError("Cannot start network %s: %s" % (self.name, error_message(exc))) from exc

    def absent(self):
        net = lookup(self.conn.networkLookupByName, self.name)
        if net is None:
            return self.result(None, None)
        guests = domains_using_network(self.conn, self.name, running_only=True) if net.isActive() else []
        if guests and not self.params["force"]:
            self.refuse(
                "Network %s is used by running guests: %s; stop them first or set force: true to remove it anyway."
                % (self.name, ", ".join(guests)),
                actions=(["stopped"] if net.isActive() else []) + (["undefined"] if net.isPersistent() else []),
            )
        before = network_facts(self.conn, net)
        self.diff = state_diff(_diffable(before), None)
        if net.isActive():
            self.do("stopped", "stop network %s" % self.name, net.destroy)
        if net.isPersistent():
            self.do("undefined", "undefine network %s" % self.name, net.undefine)
        return self.result(None, None)

    # --- output --------------------------------------------------------------

    def result(self, net, spec):
        facts = {}
        if self.params["state"] == "present":
            if net is not None and not (self.check and self.changed):
                net = self.conn.networkLookupByName(self.name)
                facts = network_facts(self.conn, net)
            else:
                facts = self.predicted(net, spec)
            self.restart_required = self.restart_required or facts.get("restart_required", False)
        result = dict(
            changed=self.changed,
            network=facts,
            restart_required=self.restart_required,
            reattached=self.reattached,
            actions=self.actions,
        )
        if self.module._diff:
            result["diff"] = self.diff if self.diff is not None else self.tracker.diff()
        return result

    def predicted(self, net, spec):
        """Check mode: the network as this task would leave it."""
        if net is not None:
            facts = network_facts(self.conn, net)
        else:
            facts = dict(name=self.name, uuid=None, mac=None, persistent=True, leases=[], guests=[])
        want = public_spec(spec)
        if not spec.get("bridge"):
            want["bridge"] = facts.get("bridge")
        facts.update(want)
        facts.update(active=self.params["active"], autostart=self.params["autostart"], restart_required=False)
        if not self.params["active"]:
            facts.update(leases=[], guests=[])
        return facts

    def run(self):
        validate_name(self.name, "network name")
        if self.params["state"] == "absent":
            return self.absent()
        return self.present()


def _diffable(facts):
    facts = copy.deepcopy(facts)
    facts.pop("leases", None)
    return facts


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("xml", field) for field in SPEC_FIELDS],
        supports_check_mode=True,
    )
    check_libraries(module)
    manager, result, error = run_manager(module, NetworkManager)
    if error:
        failure = failure_result(module, manager)
        failure.setdefault("restart_required", bool(manager and manager.restart_required))
        module.fail_json(msg=error, **failure)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
