#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_vm_info
short_description: List libvirt VMs with their state, addresses and resources
version_added: 0.1.0
description:
  - Returns the VMs (libvirt domains) of a hypervisor, or the ones named, with the
    fields M(iaas.kvm.kvm_vm) manages, their power state and the addresses of
    their interfaces, for inventories and reports.
  - Running VMs are described by their live definition, others by their inactive one.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - Names of the VMs to return. Left out, all VMs are returned.
      - A name that does not exist is left out of RV(vms) (not an error).
    type: list
    elements: str
  agent_addresses:
    description:
      - Also ask the guest agent of running VMs whose agent channel is connected
        for addresses (addresses on host bridges, static addresses). Without it only
        the DHCP leases of libvirt networks are read.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.info_attributes
seealso:
  - module: iaas.kvm.kvm_vm
"""

EXAMPLES = r"""
- name: All VMs of the hypervisor
  iaas.kvm.kvm_vm_info:
  register: all_vms

- name: Names and addresses of the running ones
  ansible.builtin.debug:
    msg: "{{ all_vms.vms | selectattr('state', 'eq', 'running') | map(attribute='ip') | list }}"

- name: Two VMs, with what their guest agents report
  iaas.kvm.kvm_vm_info:
    name: [web1, web2]
    agent_addresses: true
  register: web
"""

RETURN = r"""
vms:
  description:
    - The VMs, sorted by name. Each has the keys of RV(iaas.kvm.kvm_vm#module:vm).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: web1
    uuid:
      description: UUID.
      type: str
    state:
      description: Power state.
      type: str
      choices: [running, paused, stopped, shutting_down, crashed, pmsuspended, nostate, unknown]
      sample: running
    persistent:
      description: Whether the VM has a persistent definition.
      type: bool
    autostart:
      description: Whether libvirtd starts the VM when it starts.
      type: bool
    domain_type:
      description: Hypervisor type.
      type: str
      sample: kvm
    arch:
      description: Guest architecture.
      type: str
    machine:
      description: Machine type.
      type: str
    firmware:
      description: V(bios) or V(uefi).
      type: str
    cpu_mode:
      description: CPU mode, or null.
      type: str
    vcpus:
      description: vCPUs the guest runs with.
      type: int
    vcpus_max:
      description: vCPU ceiling.
      type: int
    memory:
      description: Memory in MiB.
      type: int
    memory_max:
      description: Memory ceiling in MiB.
      type: int
    numa_node:
      description: Host NUMA node the memory is pinned to, or null.
      type: int
    hugepages:
      description: Whether huge pages back the memory.
      type: bool
    mmio64_mb:
      description: OVMF's 64-bit MMIO window in MiB, or null.
      type: int
    disks:
      description: Disks and cdroms except the cloud-init seed (device, bus, target, format, boot_order, readonly, path, pool, volume).
      type: list
      elements: dict
    cloudinit_seed:
      description: The seed cdrom attached by M(iaas.kvm.kvm_vm), or null.
      type: dict
    interfaces:
      description: Interfaces (type, network, bridge, mac, model, addresses).
      type: list
      elements: dict
      sample: [{type: network, network: default, bridge: null, mac: "52:54:00:6b:3c:58", model: virtio,
                addresses: [{address: 192.168.122.23, prefix: 24, family: ipv4, source: lease}]}]
    gpus:
      description:
        - Host PCI devices passed through (address, managed, and model, the vendor:device that
          M(iaas.kvm.kvm_vm) recorded in the VM's metadata when it attached the GPU, else null).
      type: list
      elements: dict
      sample: [{address: "0000:41:00.0", managed: false, model: "10de:2330"}]
    tags:
      description: The VM's tags (M(iaas.kvm.kvm_vm)'s O(iaas.kvm.kvm_vm#module:tags)), empty when it has none.
      type: dict
      sample: {role: web}
    console_log:
      description: File that records the serial console, or null.
      type: str
    guest_agent:
      description: Whether the guest agent channel is present.
      type: bool
    graphics:
      description: Graphics type or V(none).
      type: str
    ip:
      description: First IPv4 address, or null.
      type: str
      sample: 192.168.122.23
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._domain_life import describe
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    all_domains,
    call_with_connection,
    check_libraries,
    is_not_found,
    libvirt,
    lookup,
)


def list_vms(conn, names, agent):
    if names:
        domains = [d for d in (lookup(conn.lookupByName, n) for n in sorted(set(names))) if d is not None]
    else:
        domains = all_domains(conn)
    vms = []
    for dom in domains:
        try:
            vms.append(describe(dom, agent=agent))
        except libvirt.libvirtError as exc:
            if not is_not_found(exc):
                raise  # a domain that vanished while listing is simply not there
    return sorted(vms, key=lambda vm: vm["name"])


def main():
    argument_spec = dict(
        name=dict(type="list", elements="str"),
        agent_addresses=dict(type="bool", default=False),
    )
    argument_spec.update(URI_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_libraries(module)
    vms, error = call_with_connection(
        module.params["uri"], lambda conn: list_vms(conn, module.params["name"], module.params["agent_addresses"])
    )
    if error:
        module.fail_json(msg=error)
    module.exit_json(changed=False, vms=vms)


if __name__ == "__main__":
    main()
