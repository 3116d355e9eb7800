# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: kvm_vms
short_description: The VMs of many libvirt hypervisors as inventory hosts
version_added: 0.1.0
description:
  - Asks every hypervisor in O(hypervisors) for its VMs (libvirt domains), in parallel and each
    within O(timeout), and makes each VM an inventory host named after it, with its hypervisor,
    UUID, state, vCPUs, memory, interfaces (MAC, network, addresses), GPUs (PCI address and
    vendor:device) and tags as host variables under O(vars_prefix).
  - C(ansible_host) is the VM's first IPv4 address, from the sources in O(address_sources) in
    their order; a VM without one gets no C(ansible_host) and lands in the group
    C(<group_prefix>no_address).
  - With O(proxy_jump), SSH reaches each VM through its own hypervisor
    (C(ansible_ssh_common_args) with C(-o ProxyJump)), so VMs on per-hypervisor NAT networks are
    reachable, two of them with the same address on different hypervisors included.
  - "Groups: C(<group_prefix>hypervisor_<name>), C(<group_prefix>state_<state>),
    C(<group_prefix>network_<network>) (C(<group_prefix>bridge_<bridge>) for a host bridge),
    C(<group_prefix>gpu_<vendor>_<device>) from the GPU models M(iaas.kvm.kvm_vm) records in the
    VM's metadata, and C(<group_prefix>no_address); then the usual O(compose), O(groups) and
    O(keyed_groups)."
  - A hypervisor that cannot be reached is a warning naming it and the error (the VMs of the others
    are still listed), or an error with O(on_unreachable=fail).
  - The configuration file's name must end in C(kvm_vms.yml) or C(kvm_vms.yaml).
author:
  - iaas.kvm contributors (!UNKNOWN)
requirements:
  - libvirt-python on the controller (the machine that runs Ansible), C(pip install libvirt-python)
    or the distribution's C(python3-libvirt); lxml there too.
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: The name of this plugin; it must be V(iaas.kvm.kvm_vms).
    type: str
    required: true
    choices: [iaas.kvm.kvm_vms]
  hypervisors:
    description:
      - The hypervisors, each a libvirt URI (V(qemu:///system), V(qemu+ssh://root@hv1/system), which
        uses the controller's SSH configuration, V(qemu+unix:///system?socket=/run/other/libvirt-sock))
        or a dict with C(uri), C(name) (the hypervisor's name in variables, groups and renamed hosts;
        defaults to the URI's host, V(localhost) for a local URI) and C(jump_host) (the SSH
        destination for O(proxy_jump); defaults to C(user@host:port) of a C(+ssh) URI).
    type: list
    elements: raw
    required: true
  timeout:
    description: Seconds each hypervisor has to answer; one that does not counts as unreachable.
    type: int
    default: 30
  address_sources:
    description:
      - Where a VM's address comes from, tried in this order until one gives an IPv4 address.
      - V(lease) the DHCP leases of its libvirt network, V(agent) the QEMU guest agent (asked only
        when its channel is connected), V(arp) the hypervisor's ARP table (guests on host bridges
        without leases).
    type: list
    elements: str
    default: [lease, agent, arp]
  states:
    description:
      - Only VMs in these states (V(running), V(stopped), V(paused), ...); all VMs when left out.
    type: list
    elements: str
  name_clash:
    description:
      - What a VM name used on two hypervisors does. V(error) fails naming both; V(prefix) names
        those VMs C(<hypervisor><name_separator><vm>), V(suffix) C(<vm><name_separator><hypervisor>).
        VMs whose name is unique keep it.
    type: str
    choices: [error, prefix, suffix]
    default: error
  name_separator:
    description: The separator of O(name_clash)'s names.
    type: str
    default: "-"
  vars_prefix:
    description: The prefix of the host variables the plugin sets (C(ansible_host) and C(ansible_ssh_common_args) aside).
    type: str
    default: kvm_
  group_prefix:
    description: The prefix of the groups the plugin makes.
    type: str
    default: kvm_
  proxy_jump:
    description:
      - Set C(ansible_ssh_common_args) to C(-o ProxyJump=<jump host>) for every VM with an address on a
        hypervisor with a jump host (see O(hypervisors)).
    type: bool
    default: false
  ssh_args:
    description:
      - Further SSH arguments put before the ProxyJump in C(ansible_ssh_common_args) (for example
        C(-o StrictHostKeyChecking=no), or C(-F) with a configuration file that the jump uses too).
    type: str
  on_unreachable:
    description: V(warn) lists the other hypervisors' VMs and warns; V(fail) stops with an error.
    type: str
    choices: [warn, fail]
    default: warn
notes:
  - The address sources answer for running VMs only; a stopped VM is listed with its state and no address.
  - With the inventory cache on (O(cache)), the answers of the hypervisors are cached, and a run
    within O(cache_timeout) asks none of them.
seealso:
  - module: iaas.kvm.kvm_vm
  - module: iaas.kvm.kvm_vm_info
"""

EXAMPLES = r"""
# fleet.kvm_vms.yml: three hypervisors over SSH, guests reached through their hypervisor.
plugin: iaas.kvm.kvm_vms
hypervisors:
  - qemu+ssh://root@hv1.example.net/system
  - qemu+ssh://root@hv2.example.net/system
  - uri: qemu+ssh://root@10.0.0.13/system
    name: hv3
timeout: 20
proxy_jump: true
name_clash: prefix
compose:
  ansible_user: "'ubuntu'"
keyed_groups:
  - key: kvm_tags.role | default('none')
    prefix: role
groups:
  big: kvm_memory >= 65536
# ansible -i fleet.kvm_vms.yml kvm_state_running -m ping
# ansible-inventory -i fleet.kvm_vms.yml --graph
---
# local.kvm_vms.yml: the VMs of this machine, addresses from leases only, cached for 10 minutes.
plugin: iaas.kvm.kvm_vms
hypervisors: [qemu:///system]
address_sources: [lease]
states: [running]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/iaas-kvm-inventory
cache_timeout: 600
on_unreachable: fail
"""

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LIBVIRT_IMPORT_ERROR, LXML_IMPORT_ERROR
from ansible_collections.iaas.kvm.plugins.plugin_utils._kvm_vms import (
    InventoryError,
    build,
    hypervisor_entries,
    query_all,
)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "iaas.kvm.kvm_vms"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("kvm_vms.yml", "kvm_vms.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        for missing, library in ((LIBVIRT_IMPORT_ERROR, "libvirt-python"), (LXML_IMPORT_ERROR, "lxml")):
            if missing:
                raise AnsibleError(
                    "The inventory plugin iaas.kvm.kvm_vms needs %s on the controller: %s" % (library, missing)
                )
        try:
            hypervisors = hypervisor_entries(self.get_option("hypervisors"))
        except InventoryError as exc:
            raise AnsibleParserError(str(exc)) from exc

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        answers = None
        if use_cache:
            try:
                answers = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if answers is None:
            try:
                answers = query_all(hypervisors, self.get_option("address_sources"), self.get_option("timeout"))
            except InventoryError as exc:
                raise AnsibleParserError(str(exc)) from exc
        if update_cache:
            self._cache[cache_key] = answers
        self._populate(answers)

    def _populate(self, answers):
        for answer in answers:
            if answer["error"] is None:
                continue
            message = "The hypervisor %s (%s) cannot be reached: %s" % (answer["name"], answer["uri"], answer["error"])
            if self.get_option("on_unreachable") == "fail":
                raise AnsibleParserError(message)
            self.display.warning(message + " Its VMs are not in the inventory.")
        options = {
            key: self.get_option(key)
            for key in (
                "vars_prefix",
                "group_prefix",
                "name_clash",
                "name_separator",
                "states",
                "proxy_jump",
                "ssh_args",
            )
        }
        try:
            hosts, groups = build(answers, options)
        except InventoryError as exc:
            raise AnsibleParserError(str(exc)) from exc
        for name, variables in hosts.items():
            self.inventory.add_host(name)
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
        for group, members in groups.items():
            self.inventory.add_group(group)
            for name in members:
                self.inventory.add_child(group, name)
        strict = self.get_option("strict")
        for name, variables in hosts.items():
            self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict=strict)
