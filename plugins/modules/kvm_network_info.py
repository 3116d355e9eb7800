#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_network_info
short_description: Facts about libvirt virtual networks, with their current DHCP leases
version_added: 0.1.0
description:
  - Returns libvirt networks as kvm_network sees them, read from their live
    definition while they run (mode, bridge, IPv4 subnet, DHCP range and
    reservations, DNS records, the running guests attached, and the current DHCP
    leases), so a playbook can find a guest's address by MAC or host name.
  - Changes nothing.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - Name of one network. All networks when omitted.
      - A network that does not exist gives an empty RV(networks) list.
    type: str
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.info_attributes
seealso:
  - module: iaas.kvm.kvm_network
"""

EXAMPLES = r"""
- name: All networks
  iaas.kvm.kvm_network_info:
  register: nets

- name: The address a guest got on network lab, by its MAC
  iaas.kvm.kvm_network_info:
    name: lab
  register: lab
- name: Show it
  ansible.builtin.debug:
    msg: "{{ (lab.networks[0].leases | selectattr('mac', 'equalto', '52:54:00:00:15:01') | first).ip }}"
"""

RETURN = r"""
networks:
  description: The networks, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: lab
    uuid:
      description: UUID.
      type: str
      sample: 3e9b8c6e-9f5e-4c4c-8d51-2b8f0c3f1a10
    active:
      description: Whether it runs.
      type: bool
      sample: true
    persistent:
      description: Whether it has a persistent definition.
      type: bool
      sample: true
    autostart:
      description: Whether libvirtd starts it when it starts.
      type: bool
      sample: true
    mode:
      description: V(nat), V(route), V(isolated), V(open), V(bridge), or another libvirt forward mode as defined.
      type: str
      sample: nat
    bridge:
      description: Name of its bridge.
      type: str
      sample: virbr0
    mac:
      description: MAC address of the bridge.
      type: str
      sample: "52:54:00:0d:c3:86"
    mtu:
      description: MTU, null for libvirt's default.
      type: int
      sample: null
    domain:
      description: DNS domain.
      type: str
      sample: null
    ipv4:
      description: IPv4 subnet, null when it has none.
      type: dict
      contains:
        address:
          description: The host's address on the bridge.
          type: str
          sample: 192.168.122.1
        prefix:
          description: Prefix length.
          type: int
          sample: 24
        network:
          description: The subnet in CIDR notation.
          type: str
          sample: 192.168.122.0/24
        dhcp:
          description: DHCP settings, null when DHCP is off.
          type: dict
          contains:
            start:
              description: First address of the first range.
              type: str
              sample: 192.168.122.2
            end:
              description: Last address of the first range.
              type: str
              sample: 192.168.122.254
            lease_time:
              description: Lease time in seconds of the first range (0 is infinite, null is dnsmasq's default).
              type: int
              sample: null
            ranges:
              description: All ranges.
              type: list
              elements: dict
              sample: [{start: 192.168.122.2, end: 192.168.122.254, lease_time: null}]
            hosts:
              description: Reservations, sorted by MAC.
              type: list
              elements: dict
              sample: [{mac: "52:54:00:00:15:01", ip: 192.168.122.10, name: gpu1}]
    dns:
      description: DNS hosts (sorted by address) and forwarders.
      type: dict
      sample: {hosts: [], forwarders: []}
    leases:
      description: Current DHCP leases (empty when the network is stopped or the driver keeps none).
      type: list
      elements: dict
      sample: [{mac: "52:54:00:00:15:01", ip: 192.168.122.10, prefix: 24, family: ipv4, hostname: gpu1, client_id: null, expires: 1767225600}]
    guests:
      description: Names of the running guests with an interface on the network.
      type: list
      elements: str
      sample: [gpu1]
    restart_required:
      description: Whether the persistent definition holds a change that waits for a restart of the running network.
      type: bool
      sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    call_with_connection,
    check_libraries,
    is_not_found,
    libvirt,
    lookup,
)
from ansible_collections.iaas.kvm.plugins.module_utils._network_facts import network_facts


def gather(conn, name):
    if name:
        net = lookup(conn.networkLookupByName, name)
        nets = [net] if net is not None else []
    else:
        nets = conn.listAllNetworks(0)
    result = []
    for net in nets:
        try:
            result.append(network_facts(conn, net))
        except libvirt.libvirtError as exc:
            if not is_not_found(exc):
                raise
            # removed while we read it: it is not there any more
    return sorted(result, key=lambda facts: facts["name"])


def main():
    argument_spec = dict(name=dict(type="str"))
    argument_spec.update(URI_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_libraries(module)
    networks, error = call_with_connection(module.params["uri"], lambda conn: gather(conn, module.params["name"]))
    if error:
        module.fail_json(msg=error)
    module.exit_json(changed=False, networks=networks)


if __name__ == "__main__":
    main()
