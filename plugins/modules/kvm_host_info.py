#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_host_info
short_description: Capacity and load of a hypervisor, for placement and for people
version_added: 0.1.0
description:
  - Returns the facts of one hypervisor that placing VMs needs, the input of the
    P(iaas.kvm.place_vms#filter) filter, from libvirt and sysfs (never from the output of a command).
  - The CPU topology (sockets, cores, threads) and the NUMA nodes with their CPUs, memory, free
    memory and huge pages per size (libvirt's capabilities, C(virNodeGetInfo),
    C(virNodeGetCellsFreeMemory); huge pages from C(/sys/devices/system/node), or from libvirt
    where sysfs has no NUMA nodes).
  - The memory of the host and how much is free, and the vCPUs and memory committed to its VMs,
    running ones and all defined ones. A VM counts with its ceilings (C(vcpus_max), C(memory_max)),
    what it can take without a redefine.
  - Every domain with its resources, its tags and its GPUs. A stopped but defined VM still holds its
    GPUs, and a running VM those of its live and of its next definition.
  - The GPUs (display-class PCI functions) with their model (vendor:device), NUMA node, whether
    passthrough is possible (the refusals M(iaas.kvm.kvm_gpu_info) gives), the VMs that hold them
    and whether each is free. On the hypervisor itself they come from sysfs; with a remote O(uri),
    or where sysfs lists no PCI device, from libvirt's node devices, and readiness is unknown.
  - The free space of each storage pool.
  - Whether the host is drained, from the marker file C(/var/lib/iaas-kvm/drained) (below O(root),
    like the other files the module reads).
    While it exists the host gets no new VMs from P(iaas.kvm.place_vms#filter). Write it (its text,
    if any, is the reason) to drain the host, remove it to undrain.
  - Changes nothing.
author:
  - iaas.kvm contributors (!UNKNOWN)
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.info_attributes
  - iaas.kvm.sysfs
notes:
  - Memory is in MiB, pool sizes in bytes.
seealso:
  - module: iaas.kvm.kvm_gpu_info
  - module: iaas.kvm.kvm_vm_info
  - plugin: iaas.kvm.place_vms
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Facts of every hypervisor
  iaas.kvm.kvm_host_info:
  register: host_info

- name: Free GPUs and memory of this host
  ansible.builtin.debug:
    msg: >-
      {{ host_info.gpus | selectattr('free') | map(attribute='model') | list }} free,
      {{ host_info.memory.total_mib - host_info.committed.all.memory_mib }} MiB not committed

- name: Place VMs that name no host (the facts of every hypervisor, by inventory name)
  ansible.builtin.set_fact:
    placement: >-
      {{ requests | iaas.kvm.place_vms(dict(groups.hypervisors
         | zip(groups.hypervisors | map('extract', hostvars, 'host_info')))) }}
  run_once: true
"""

RETURN = r"""
hostname:
  description: The host's name as libvirt reports it.
  returned: always
  type: str
  sample: hv1
uri:
  description: The URI of the connection.
  returned: always
  type: str
  sample: qemu:///system
drained:
  description: Whether the drain marker exists (the host takes no new VMs).
  returned: always
  type: bool
  sample: false
drained_reason:
  description: The text of the drain marker, null without one or when it is empty.
  returned: always
  type: str
  sample: firmware update
cpu:
  description: The CPU topology.
  returned: always
  type: dict
  contains:
    arch:
      description: Architecture.
      type: str
      sample: x86_64
    model:
      description: CPU model as libvirt names it, null where it does not.
      type: str
      sample: Icelake-Server
    mhz:
      description: Clock in MHz.
      type: int
      sample: 2600
    cpus:
      description: Logical CPUs (hardware threads).
      type: int
      sample: 112
    sockets:
      description: CPU sockets.
      type: int
      sample: 2
    cores:
      description: Cores, all sockets together.
      type: int
      sample: 56
    threads_per_core:
      description: Hardware threads per core.
      type: int
      sample: 2
memory:
  description: Memory of the host.
  returned: always
  type: dict
  contains:
    total_mib:
      description: Total memory in MiB.
      type: int
      sample: 1031891
    free_mib:
      description: Free memory in MiB (libvirt's free memory, without caches), null where libvirt cannot tell.
      type: int
      sample: 512000
numa_nodes:
  description: The NUMA nodes.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Node number.
      type: int
      sample: 0
    cpus:
      description: The logical CPUs of the node.
      type: list
      elements: int
      sample: [0, 1, 2, 3]
    cpu_list:
      description: The same as a CPU list.
      type: str
      sample: 0-3
    memory_mib:
      description: Memory of the node in MiB.
      type: int
      sample: 515945
    free_mib:
      description: Free memory of the node in MiB, null where libvirt cannot tell.
      type: int
      sample: 256000
    hugepages:
      description: Huge pages of the node per size (C(size_kib), C(total), C(free); C(free) null where unknown).
      type: list
      elements: dict
      sample: [{size_kib: 2048, total: 1024, free: 512}, {size_kib: 1048576, total: 0, free: 0}]
hugepages:
  description: Huge pages per size, all nodes together (C(size_kib), C(total), C(free)).
  returned: always
  type: list
  elements: dict
  sample: [{size_kib: 2048, total: 2048, free: 1536}]
committed:
  description:
    - The vCPUs and memory (MiB) that VMs may use (each with its ceilings, C(vcpus_max) and C(memory_max)),
      C(running) for the running VMs, C(all) for every defined or running VM; each with the number of C(domains).
  returned: always
  type: dict
  sample: {running: {domains: 2, vcpus: 24, memory_mib: 98304}, all: {domains: 3, vcpus: 32, memory_mib: 131072}}
domains:
  description: The domains (VMs), sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: train-1
    uuid:
      description: UUID.
      type: str
    state:
      description: Power state, as M(iaas.kvm.kvm_vm) reports it.
      type: str
      sample: running
    running:
      description: Whether it has a QEMU process.
      type: bool
    persistent:
      description: Whether it is defined (not only transient).
      type: bool
    vcpus:
      description: vCPUs it runs with.
      type: int
    vcpus_max:
      description: vCPU ceiling.
      type: int
    memory_mib:
      description: Memory in MiB.
      type: int
    memory_max_mib:
      description: Memory ceiling in MiB.
      type: int
    numa_node:
      description: Host NUMA node its memory is pinned to, or null.
      type: int
    hugepages:
      description: Whether huge pages back its memory.
      type: bool
    gpus:
      description: Host PCI devices it holds, with C(model) where its metadata records it.
      type: list
      elements: dict
      sample: [{address: "0000:18:00.0", model: "10de:2330"}]
    tags:
      description: Its tags (M(iaas.kvm.kvm_vm)'s O(iaas.kvm.kvm_vm#module:tags)).
      type: dict
gpus:
  description: The GPUs (display-class PCI functions), by address.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address.
      type: str
      sample: "0000:18:00.0"
    model:
      description: PCI vendor and device ID as C(vendor:device).
      type: str
      sample: "10de:2330"
    vendor_id:
      description: PCI vendor ID.
      type: str
      sample: 10de
    device_id:
      description: PCI device ID.
      type: str
      sample: "2330"
    vendor_name:
      description: Vendor name, null where unknown.
      type: str
    device_name:
      description: Device name, null where unknown.
      type: str
    numa_node:
      description: NUMA node, null where the host has none.
      type: int
      sample: 0
    driver:
      description: The bound driver, null for none.
      type: str
      sample: vfio-pci
    iommu_group:
      description: IOMMU group, null without one.
      type: int
    passthrough_ready:
      description:
        - Whether it can be passed through (as M(iaas.kvm.kvm_gpu_info) decides); null when the GPUs come
          from libvirt's node devices.
      type: bool
    refusals:
      description: Why it cannot, as sentences.
      type: list
      elements: str
    used_by:
      description: The domains that hold it, running or not.
      type: list
      elements: str
      sample: [train-1]
    free:
      description: Whether a new VM can have it (held by no domain, and passthrough not refused).
      type: bool
      sample: false
gpu_source:
  description: Where the GPUs were found, V(sysfs) or V(libvirt) (node devices).
  returned: always
  type: str
  sample: sysfs
pools:
  description: The storage pools (C(name), C(type), C(path), C(active), C(capacity), C(allocation), C(available) in bytes; sizes null for an inactive pool).
  returned: always
  type: list
  elements: dict
  sample: [{name: default, type: dir, path: /var/lib/libvirt/images, active: true, capacity: 107374182400, allocation: 21474836480, available: 85899345920}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._host import host_facts
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    call_with_connection,
    check_libraries,
)
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import SYSFS_ARGUMENT_SPEC


def main():
    argument_spec = dict(SYSFS_ARGUMENT_SPEC)
    argument_spec.update(URI_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_libraries(module)
    facts, error = call_with_connection(module.params["uri"], lambda conn: host_facts(conn, module.params))
    if error:
        module.fail_json(msg=error)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
