#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_gpu_info
short_description: The host's GPUs, IOMMU and what passthrough of each GPU would meet
version_added: 0.1.0
description:
  - Reads the host's sysfs and returns every display-class PCI function (class 0x0300 VGA and 0x0302
    3D controllers) with its IDs and names (where the host has a C(pci.ids) database), driver,
    C(driver_override), the other functions of its slot, its IOMMU group and every member of the group
    with its driver and class, NUMA node and local CPUs, C(boot_vga), reset methods, BAR sizes, SR-IOV
    virtual functions, the vGPU types it offers (mediated-device types, and NVIDIA's C(creatable_vgpu_types)
    of its virtual functions) and the running libvirt guests that use it.
  - Returns the NVSwitches (NVIDIA bridges of class 0x0680 on HGX boards) and the boards, the GPUs that
    NVSwitches join into one NVLink fabric; M(iaas.kvm.kvm_gpu_passthrough)'s C(selector.board) takes a
    whole board.
  - Returns the IOMMU state with its evidence (IOMMU units in C(/sys/class/iommu), populated
    C(/sys/kernel/iommu_groups), the kernel command line flags).
  - For each GPU, the reasons M(iaas.kvm.kvm_gpu_passthrough) would refuse to bind it (empty when it
    is ready), a C(<hostdev>) snippet for all its functions (the same elements as M(iaas.kvm.kvm_vm)'s
    C(gpus) builds), and the 64-bit MMIO window the guest firmware needs for its BARs.
  - Changes nothing; it never binds, unbinds or resets a device.
author:
  - iaas.kvm contributors (!UNKNOWN)
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.info_attributes
  - iaas.kvm.sysfs
notes:
  - libvirt at O(uri) is asked only which running guests use the GPUs; when it cannot be reached, RV(gpus[].used_by)
    is null and the module warns.
  - sysfs does not name the board a GPU sits on. The module takes as one board every NVSwitch of the host with
    the largest group of NVIDIA GPUs that share device and subsystem IDs (an HGX board's SXM modules); a host
    without NVSwitches has no board. A PCIe card in such a host has other IDs and stays out of the board.
seealso:
  - module: iaas.kvm.kvm_gpu_passthrough
  - module: iaas.kvm.kvm_vm
"""

EXAMPLES = r"""
- name: GPUs of the host
  iaas.kvm.kvm_gpu_info:
  register: host_gpus

- name: Stop unless the IOMMU is on
  ansible.builtin.assert:
    that: host_gpus.iommu.enabled
    fail_msg: "{{ host_gpus.iommu.evidence }}"

- name: A VM with the first NVIDIA GPU, pinned to its NUMA node, with a large enough MMIO window
  vars:
    gpu: "{{ host_gpus.gpus | selectattr('vendor_id', 'equalto', '10de') | first }}"
  iaas.kvm.kvm_vm:
    name: gpu1
    memory: 64G
    vcpus: 16
    gpus: ["{{ gpu.address }}"]
    numa_node: "{{ gpu.numa_node }}"
    mmio64_mb: "{{ gpu.mmio64_mb }}"
"""

RETURN = r"""
iommu:
  description: Whether the IOMMU is on, and why the module thinks so.
  returned: always
  type: dict
  contains:
    enabled:
      description: Whether the kernel has IOMMU groups (what VFIO needs).
      type: bool
      sample: true
    groups:
      description: Number of IOMMU groups.
      type: int
      sample: 87
    units:
      description: IOMMU hardware units in C(/sys/class/iommu).
      type: list
      elements: str
      sample: [dmar0, dmar1]
    cmdline_flags:
      description: IOMMU and VFIO flags on the kernel command line.
      type: list
      elements: str
      sample: [intel_iommu=on, iommu=pt]
    passthrough_mode:
      description: Whether the host's own DMA bypasses translation (C(iommu=pt)).
      type: bool
      sample: true
    acs_override:
      description: The value of C(pcie_acs_override) on the kernel command line, null without it.
      type: str
      sample: null
    evidence:
      description: The evidence, as a sentence.
      type: str
      sample: 87 IOMMU groups under /sys/kernel/iommu_groups, IOMMU units dmar0, dmar1, kernel command line intel_iommu=on iommu=pt.
vfio_pci_loaded:
  description: Whether the vfio-pci driver is loaded.
  returned: always
  type: bool
  sample: true
phys_bits:
  description:
    - The physical address width of the host's CPUs (from libvirt's host capabilities, else C(/proc/cpuinfo)),
      the most a guest's C(<maxphysaddr>) can have; null when unknown.
  returned: always
  type: int
  sample: 46
nvswitches:
  description: The NVSwitches of the host.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address.
      type: str
      sample: "0000:05:00.0"
    device_id:
      description: PCI device ID.
      type: str
      sample: 22a3
    driver:
      description: The bound driver, null for none.
      type: str
      sample: nvidia
    iommu_group:
      description: Its IOMMU group (each NVSwitch sits in one of its own).
      type: int
      sample: 70
    numa_node:
      description: Its NUMA node, null where the host has none.
      type: int
      sample: 0
    board:
      description: The board it belongs to.
      type: int
      sample: 0
boards:
  description:
    - The NVSwitch boards. Passing all their GPUs and NVSwitches to one VM gives it NVLink; passing a part does
      only where the host runs NVIDIA's shared NVSwitch mode (Fabric Manager in a service VM that owns the NVSwitches).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The board's number, for M(iaas.kvm.kvm_gpu_passthrough)'s C(selector.board).
      type: int
      sample: 0
    gpus:
      description: Addresses of its GPUs.
      type: list
      elements: str
      sample: ["0000:18:00.0", "0000:2a:00.0"]
    nvswitches:
      description: Addresses of its NVSwitches.
      type: list
      elements: str
      sample: ["0000:05:00.0"]
    numa_nodes:
      description: The NUMA nodes its GPUs sit on.
      type: list
      elements: int
      sample: [0, 1]
mmio64_mb:
  description:
    - The 64-bit MMIO window in MiB for a guest that gets all the GPUs (the sum of their 64-bit BARs,
      rounded up to a power of two); null without GPUs.
  returned: always
  type: int
  sample: 262144
gpus:
  description: The GPUs, by address.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address.
      type: str
      sample: "0000:01:00.0"
    slot:
      description: The slot (the address without the function).
      type: str
      sample: "0000:01:00"
    vendor_id:
      description: PCI vendor ID.
      type: str
      sample: 10de
    device_id:
      description: PCI device ID.
      type: str
      sample: "2330"
    subsystem_vendor_id:
      description: PCI subsystem vendor ID.
      type: str
      sample: 10de
    subsystem_device_id:
      description: PCI subsystem device ID.
      type: str
      sample: "16c1"
    vendor_name:
      description: Vendor name from the host's pci.ids, null where unknown.
      type: str
      sample: NVIDIA Corporation
    device_name:
      description: Device name from the host's pci.ids, null where unknown.
      type: str
      sample: GH100 [H100 SXM5 80GB]
    pci_class:
      description: PCI class code.
      type: str
      sample: "0x030200"
    class_name:
      description: C(VGA compatible controller) or C(3D controller).
      type: str
      sample: 3D controller
    driver:
      description: The bound driver, null for none.
      type: str
      sample: nvidia
    driver_override:
      description: C(driver_override), null when unset.
      type: str
      sample: null
    functions:
      description: Every function of the slot (the GPU itself, HDMI audio, USB-C...) that passthrough takes along.
      type: list
      elements: dict
      sample: [{address: "0000:01:00.0", vendor_id: 10de, device_id: "2330", pci_class: "0x030200", driver: nvidia, bridge: false, same_slot: true}]
    iommu_group:
      description: The IOMMU group, null without an IOMMU.
      type: int
      sample: 13
    iommu_group_members:
      description: Every member of the group, with the same keys as RV(gpus[].functions).
      type: list
      elements: dict
      sample: [{address: "0000:01:00.0", vendor_id: 10de, device_id: "2330", pci_class: "0x030200", driver: nvidia, bridge: false, same_slot: true}]
    numa_node:
      description: NUMA node of the GPU, null where the host has none.
      type: int
      sample: 1
    local_cpus:
      description: The host CPUs local to the GPU, as a CPU list.
      type: str
      sample: 32-63,96-127
    boot_vga:
      description: Whether it is the boot VGA device (the host's console).
      type: bool
      sample: false
    reset_methods:
      description: Reset methods the kernel offers (C(flr), C(bus)...), empty where the kernel does not say.
      type: list
      elements: str
      sample: [flr, bus]
    bars:
      description: Memory BARs, with index, size in bytes, C(is_64bit) and C(prefetchable).
      type: list
      elements: dict
      sample: [{index: 0, size: 16777216, is_64bit: false, prefetchable: false}, {index: 1, size: 137438953472, is_64bit: true, prefetchable: true}]
    bar64_bytes:
      description: Sum of the GPU's 64-bit BAR sizes, in bytes.
      type: int
      sample: 137472507904
    mmio64_mb:
      description:
        - The 64-bit MMIO window in MiB the guest firmware needs for this GPU's slot (the sum of the 64-bit BARs
          of its functions, rounded up to a power of two); give it to M(iaas.kvm.kvm_vm)'s C(mmio64_mb).
      type: int
      sample: 262144
    sriov:
      description:
        - SR-IOV of a physical function, null for a device without SR-IOV (and for a virtual function) -
          C(total_vfs), C(num_vfs) enabled, C(vfs) (their addresses), C(drivers_autoprobe) (whether the kernel
          binds new VFs to a host driver) and C(vf_device_id). M(iaas.kvm.kvm_sriov) sets the count.
      type: dict
      sample: {total_vfs: 32, num_vfs: 4, vfs: ["0000:41:00.4", "0000:41:00.5", "0000:41:00.6", "0000:41:00.7"], drivers_autoprobe: true, vf_device_id: 26b9}
    physfn:
      description: For a virtual function, the address of its physical function.
      type: str
      sample: null
    mdev_types:
      description: Mediated device (vGPU) types of the device itself, with C(type), C(name) and C(available_instances).
      type: list
      elements: dict
      sample: []
    vgpu_types:
      description:
        - Every vGPU type the GPU offers, for M(iaas.kvm.kvm_vgpu) - C(kind) V(mdev) (a mediated-device type of the
          device) or V(sriov) (an NVIDIA vGPU type its virtual functions offer in C(nvidia/creatable_vgpu_types)),
          C(type) (the mdev type or the vGPU type ID), C(name), C(available_instances) (for V(sriov), the VFs in
          C(vfs) that offer it and have no vGPU yet).
      type: list
      elements: dict
      sample: [{kind: sriov, type: "1155", name: NVIDIA L40S-48Q, available_instances: 16, vfs: ["0000:41:00.4"]}]
    vgpu:
      description:
        - For an NVIDIA virtual function, its vGPU - C(current_type) (null for none) and C(creatable) (the types
          it can take now, each with C(type) and C(name)); null otherwise.
      type: dict
      sample: null
    board:
      description: The NVSwitch board the GPU belongs to (see RV(boards)), null for none.
      type: int
      sample: null
    used_by:
      description: Running libvirt guests with the GPU as a hostdev; null when libvirt could not be asked.
      type: list
      elements: str
      sample: []
    passthrough_ready:
      description: Whether M(iaas.kvm.kvm_gpu_passthrough) would bind the GPU with its default options.
      type: bool
      sample: true
    refusals:
      description: The reasons it would refuse, as sentences.
      type: list
      elements: str
      sample: []
    hostdev_xml:
      description:
        - A C(<hostdev mode='subsystem' type='pci'>) element per function of the slot, for a domain's C(<devices>);
          C(managed='no') for a function already on vfio-pci.
      type: str
      sample: |
        <hostdev mode="subsystem" type="pci" managed="no">
          <source>
            <address domain="0x0000" bus="0x01" slot="0x00" function="0x0"/>
          </source>
        </hostdev>
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._gpu import (
    HostView,
    board_facts,
    gather_gpus,
    guests_using,
    nvswitch_facts,
)
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import URI_ARGUMENT_SPEC, check_libraries
from ansible_collections.iaas.kvm.plugins.module_utils._mmio import host_phys_bits
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import SYSFS_ARGUMENT_SPEC, sysfs_from_params


def main():
    argument_spec = dict(SYSFS_ARGUMENT_SPEC)
    argument_spec.update(URI_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_libraries(module)
    view = HostView(sysfs_from_params(module.params), module.params["root"])

    users = None
    capabilities = None
    addresses = view.gpus()
    if addresses:
        found, error = guests_using(module.params["uri"], addresses)
        if error:
            module.warn("Cannot tell which running guests use the GPUs: %s" % error)
        else:
            users, capabilities = found
    gpus, window = gather_gpus(view, users)
    module.exit_json(
        changed=False,
        iommu=view.iommu,
        vfio_pci_loaded=view.vfio_loaded(),
        phys_bits=host_phys_bits(capabilities, module.params["root"]),
        mmio64_mb=window,
        gpus=gpus,
        nvswitches=nvswitch_facts(view),
        boards=board_facts(view),
    )


if __name__ == "__main__":
    main()
