#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_vm
short_description: Declarative KVM/QEMU virtual machines through libvirt
version_added: 0.1.0
description:
  - Defines, updates, starts, stops, pauses and removes a libvirt domain (a VM)
    from a declarative spec, or from raw domain XML with O(xml).
  - The spec is compared field by field with the VM's inactive definition, so
    a converged VM reports no change, in check mode too. Fields the task leaves
    out keep their current value (or libvirt's default for a new VM).
  - A changed spec redefines the VM. What libvirt added to the definition (the
    UUID, MAC addresses, controllers, device addresses) is kept, so a redefine
    never renumbers devices or changes MACs.
  - When the VM runs, a redefined field takes effect at its next boot and the
    module returns RV(restart_required) (on every run, until the guest has
    restarted), unless O(restart=true) restarts it gracefully. Memory and vCPU
    changes inside O(memory_max) and O(vcpus_max) also apply live where the
    guest allows it.
  - The definition is checked against libvirt's schema before it is stored
    (libvirt's validation flag), so an invalid definition is refused rather
    than silently trimmed.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - Name of the VM.
      - Required unless O(xml) is given; with O(xml), it must match the name in the XML.
    type: str
  state:
    description:
      - V(present) defines the VM (or updates its definition) and leaves its power state alone.
      - V(running) also starts it (or resumes it when paused).
      - V(stopped) shuts it down gracefully (ACPI power button or guest agent),
        waits up to O(shutdown_timeout), then powers it off only with O(force_stop=true);
        otherwise the task fails naming the timeout.
      - V(paused) suspends its vCPUs (starting it paused when it is off).
      - V(absent) stops it as V(stopped) does, then undefines it together with its
        UEFI NVRAM, managed save image and snapshot and checkpoint metadata. Its disks
        are kept unless O(remove_volumes=true).
    type: str
    choices: [present, running, stopped, paused, absent]
    default: present
  xml:
    description:
      - A complete libvirt domain XML definition, used instead of the spec options
        (such as C(configs/ubuntu-simple.xml)). Mutually exclusive with every spec option.
      - The VM is unchanged when everything the XML says is already in its definition
        (what libvirt adds is not compared; sizes and numbers compare by value).
      - On a redefine, the existing UUID, MAC addresses (by interface position) and
        device addresses are carried over to devices that the XML leaves unaddressed.
    type: str
  domain_type:
    description:
      - Hypervisor type. V(kvm) needs working hardware virtualisation; V(qemu) is
        software emulation (TCG).
      - For a new VM it defaults to V(kvm) when the host offers it, else V(qemu).
    type: str
    choices: [kvm, qemu]
  machine:
    description:
      - QEMU machine type, for example V(q35) or V(pc), or a versioned name such as
        V(pc-q35-7.2). An alias is satisfied by the versioned name libvirt stores
        (V(q35) by C(pc-q35-7.2)).
      - Defaults to V(q35) for a new VM with O(gpus), else to libvirt's default.
      - The machine family of an existing VM (i440fx to q35) is not changed; recreate the VM.
    type: str
  cpu_mode:
    description:
      - Guest CPU model. V(host-passthrough) exposes the host CPU (KVM only),
        V(host-model) a model close to it, V(maximum) all the hypervisor can offer.
      - Left out, libvirt's default applies.
    type: str
    choices: [host-passthrough, host-model, maximum]
  firmware:
    description:
      - V(bios) (SeaBIOS) or V(uefi) (OVMF, chosen by libvirt's firmware auto-selection,
        without Secure Boot so that out-of-tree drivers such as NVIDIA's load).
      - Defaults to V(uefi) for a new VM with O(gpus), else to libvirt's default (BIOS).
    type: str
    choices: [bios, uefi]
  vcpus:
    description:
      - Number of virtual CPUs the guest runs with. A new VM gets 1 when left out.
      - Changes up to O(vcpus_max) are hot-plugged into a running guest where QEMU and the guest allow it.
    type: int
  vcpus_max:
    description:
      - The most vCPUs the VM can have without a restart (the C(<vcpu>) count; O(vcpus) is
        the C(current) count). Defaults to O(vcpus), or to the ceiling set earlier.
    type: int
  memory:
    description:
      - Guest memory. A plain integer is MiB; a string takes a binary suffix
        (V(2G), V(2GiB), V(512M), V(512MiB); K, M, G, T are all powers of 1024).
        Must be a whole number of MiB.
      - Required to create a VM.
      - Changes up to O(memory_max) are applied to a running guest through the memory balloon.
    type: raw
  memory_max:
    description:
      - The memory ceiling (libvirt's C(<memory>)), the guest boots with this much
        and the balloon holds back the part above O(memory). Same units as O(memory).
      - Defaults to O(memory), or to the ceiling set earlier.
    type: raw
  numa_node:
    description:
      - Host NUMA node to pin the vCPUs and the memory to (strict), usually the node
        of the GPU from M(iaas.kvm.kvm_gpu_info).
      - With O(topology=host) (the default for a VM with GPUs) it must be the one node
        the VM's devices sit on; otherwise leave it out, or set O(topology=flat).
    type: int
  hugepages:
    description:
      - Back the guest memory with the host's huge pages (they must be reserved on the host).
    type: bool
  mmio64_mb:
    description:
      - Size in MiB of the guest UEFI firmware's 64-bit PCI MMIO window
        (OVMF's C(X-PciMmio64Mb)), for GPUs with large BARs. Only UEFI guests use it.
      - Left out, it is computed from the 64-bit BARs of the VM's GPUs, VFs and vGPU VFs
        that the host's sysfs shows (each root port's window aligned to its largest BAR,
        the sum rounded up to a power of two, as M(iaas.kvm.kvm_gpu_info) reports it).
        A value smaller than that is refused.
      - A BIOS guest whose devices' 64-bit BARs need more than QEMU's default 32 GiB
        window is refused (SeaBIOS has no such knob); use O(firmware=uefi).
    type: int
  maxphysaddr:
    description:
      - The guest CPU's physical address width (C(<cpu><maxphysaddr>), libvirt 8.7.0 and later),
        V(passthrough) (the host's width; needs O(cpu_mode=host-passthrough)) or a number
        of bits (C(emulate)).
      - Left out, it is set only when the guest's memory and its 64-bit MMIO window reach
        beyond the 40 bits QEMU gives a guest CPU by default - V(passthrough) with a
        host-passthrough CPU, else the bits needed. A width smaller than needed, or larger
        than the host's CPUs have, is refused, and so is a guest that needs more than the
        host has, or more than 40 bits on a libvirt without C(<maxphysaddr>).
    type: raw
  topology:
    description:
      - V(host) gives the guest the host's NUMA layout for its passed-through devices, one
        guest NUMA cell per host NUMA node that the VM's GPUs, VFs and vGPUs sit on (with
        an even share of the vCPUs and memory, vCPUs pinned to that node's host CPUs,
        memory bound to it with C(numatune/memnode)) and one C(pcie-expander-bus) per cell,
        the node's devices behind PCIe root ports on it, so CUDA and NCCL in the guest see
        which CPUs and memory are near which GPU.
      - V(flat) puts every device behind a root port on the root complex, without guest NUMA cells.
      - Left out, a VM whose task gives O(gpus), O(vfs) or O(vgpus) gets V(host) when the host's
        sysfs shows their NUMA nodes (the host must be the machine the module runs on), else V(flat).
        Needs a q35 machine. A change takes effect at the next boot (RV(restart_required)).
    type: str
    choices: [host, flat]
  vfs:
    description:
      - SR-IOV virtual functions of a NIC (from M(iaas.kvm.kvm_sriov)) as C(<interface type='hostdev'>),
        each with a fixed MAC where given (libvirt sets it through the physical function; left out,
        libvirt picks one). GPU VFs for plain passthrough go in O(gpus); vGPU VFs in O(vgpus).
      - C(managed='no') for a VF already on C(vfio-pci), C(managed='yes') (libvirt binds it at start)
        otherwise. Given, the list is complete; an empty list detaches all such VFs.
    type: list
    elements: dict
    suboptions:
      address:
        description: PCI address of the VF.
        type: str
        required: true
      mac:
        description: MAC address of the guest's interface.
        type: str
  vgpus:
    description:
      - vGPUs from M(iaas.kvm.kvm_vgpu) - a mediated device by O(vgpus[].uuid)
        (C(<hostdev type='mdev' model='vfio-pci'>)), or an NVIDIA VF with a vGPU type by
        O(vgpus[].address) (a PCI C(<hostdev managed='no'>), the VF staying on the vendor's driver).
      - Given, the list is complete; an empty list detaches all vGPUs.
    type: list
    elements: dict
    suboptions:
      uuid:
        description: UUID of the mediated device.
        type: str
      address:
        description: PCI address of the VF.
        type: str
      parent:
        description:
          - The GPU of a mediated device, for its NUMA node while the device does not exist yet (check mode
            after M(iaas.kvm.kvm_vgpu), which returns it); an existing device's parent comes from sysfs.
        type: str
  assume_vfio:
    description:
      - PCI functions to treat as bound to C(vfio-pci) although sysfs does not show them so (yet) - the
        devices an earlier task of the same run binds, which in check mode it only predicted
        (RV(iaas.kvm.kvm_gpu_passthrough#module:devices[].address) of M(iaas.kvm.kvm_gpu_passthrough) or of the
        iaas.kvm.gpu_host role). They get C(managed='no'), as they will after that binding.
    type: list
    elements: str
    default: []
  disks:
    description:
      - The VM's disks and cdroms, except the cloud-init seed (see O(cloudinit_seed)).
        Given, the list is complete, other disks are detached (their volumes are kept).
      - A disk is identified by its volume or path; its target name (C(vda)…) is
        chosen once and then kept.
    type: list
    elements: dict
    suboptions:
      volume:
        description:
          - Name of a storage volume in O(disks[].pool). It must exist.
          - Exactly one of O(disks[].volume) and O(disks[].path) is required.
        type: str
      pool:
        description:
          - Storage pool of O(disks[].volume).
        type: str
        default: default
      path:
        description:
          - Absolute path of an image file (or a block device under C(/dev)) on the hypervisor.
        type: str
      device:
        description:
          - V(disk) or V(cdrom) (read-only).
        type: str
        choices: [disk, cdrom]
        default: disk
      bus:
        description:
          - Guest bus. Defaults to V(virtio) for a disk and V(scsi) (on a virtio-scsi
            controller, which cloud kernels without SATA drivers can use) for a cdrom;
            left out, an existing disk keeps its bus.
        type: str
        choices: [virtio, scsi, sata, ide, usb]
      boot_order:
        description:
          - Boot priority (1 first). Left out, the disk has no boot order; with any boot order
            given, only devices with one are booted from.
        type: int
      format:
        description:
          - Image format for QEMU (V(qcow2), V(raw), …). Defaults to the volume's
            format, for a path to V(qcow2) when it ends in C(.qcow2) and V(raw) otherwise;
            left out, an existing disk keeps its format.
        type: str
  cloudinit_seed:
    description:
      - A NoCloud seed (an ISO with the label C(cidata), such as M(iaas.kvm.cloudinit_seed)
        writes), attached as a read-only cdrom on a virtio-scsi bus.
      - Either an absolute path on the hypervisor, or a dict with C(volume) and
        C(pool) (default V(default)) naming a storage volume.
    type: raw
  interfaces:
    description:
      - The VM's network interfaces, in order. Given, the list is complete.
      - An interface without O(interfaces[].mac) keeps the MAC libvirt gave it
        (it is matched to an existing interface on the same network or bridge).
    type: list
    elements: dict
    suboptions:
      network:
        description:
          - Name of a libvirt network. It must exist.
          - Exactly one of O(interfaces[].network) and O(interfaces[].bridge) is required.
        type: str
      bridge:
        description:
          - Name of a host bridge.
        type: str
      mac:
        description:
          - MAC address. Left out, libvirt generates one, which is then kept.
        type: str
      model:
        description:
          - NIC model. Defaults to V(virtio) for a new interface; left out, an existing interface keeps its model.
        type: str
  gpus:
    description:
      - PCI addresses of host GPUs to pass through (V(0000:01:00.0) or V(01:00.0)).
      - Every function of the slot goes along (the GPU's audio or USB-C functions),
        found through libvirt's node devices; the guest gets them as one multifunction
        device behind its own PCIe root port (q35).
      - A device already bound to C(vfio-pci) (by M(iaas.kvm.kvm_gpu_passthrough)) is
        attached with C(managed=no), others with C(managed=yes) (libvirt binds them at start).
      - Where the host's sysfs shows them, the slot's functions come from there (a VF of a GPU
        stands alone, its own guest device), and so do the NUMA nodes and BAR sizes that
        O(topology), O(mmio64_mb) and O(maxphysaddr) follow; NVSwitches of a board can be listed
        too. Passing part of an NVSwitch board warns that NVLink is not available in the guest.
      - An empty list detaches all host PCI devices (but the vGPUs of O(vgpus)).
      - The model (PCI vendor:device) of each GPU listed, read from its node device, is recorded
        in the VM's metadata (see O(tags)), so inventories can group VMs by GPU model without
        asking the host.
    type: list
    elements: str
  tags:
    description:
      - Labels of the VM, a dict of strings, stored in the domain's C(<metadata>) under the
        collection's XML namespace C(urn:iaas-kvm:vm:1).
      - Given, the dict is complete (tags left out are removed, V({}) removes them all); left
        out, the tags stay as they are.
      - A change is made with libvirt's metadata API on the live and the persistent definition
        at once, so a running VM has its new tags at once and needs no restart.
      - M(iaas.kvm.kvm_vm_info), M(iaas.kvm.kvm_host_info) and the C(iaas.kvm.kvm_vms)
        inventory plugin read them back.
    type: dict
  console_log:
    description:
      - File on the hypervisor that records the serial console (the guest's boot
        messages); the console stays a pty, so C(virsh console) keeps working.
    type: str
  guest_agent:
    description:
      - Add (or remove) the QEMU guest agent channel. With the agent running in the
        guest, O(wait_for_ip) also sees addresses that did not come from libvirt's DHCP.
    type: bool
  graphics:
    description:
      - Graphical console, V(vnc) or V(spice) (listening on 127.0.0.1), or V(none).
    type: str
    choices: [none, vnc, spice]
  autostart:
    description:
      - Start the VM when libvirtd starts.
    type: bool
  restart:
    description:
      - With O(state=running) or O(state=present), restart a running VM gracefully
        (shut down as O(state=stopped) does, then start) when its definition changed
        since it booted, instead of returning RV(restart_required).
    type: bool
    default: false
  wait_for_ip:
    description:
      - With O(state=running), wait until the guest has an IPv4 address, from libvirt's
        DHCP leases or from the guest agent. Fails after O(wait_timeout) listing what was seen.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for O(wait_for_ip).
    type: int
    default: 300
  shutdown_timeout:
    description:
      - Seconds a graceful shutdown may take (O(state=stopped), O(state=absent), O(restart)).
    type: int
    default: 120
  force_stop:
    description:
      - Power the VM off when it did not shut down within O(shutdown_timeout)
        (or cannot shut down, being paused).
    type: bool
    default: false
  remove_volumes:
    description:
      - With O(state=absent), also delete the storage volumes of the VM's disks and
        seed, except volumes another VM uses. Files outside storage pools are kept.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
  - iaas.kvm.sysfs
notes:
  - A running VM's live definition is compared with its inactive one on every run,
    so RV(restart_required) stays true until the guest has been restarted.
  - O(root) and O(sysfs_root) say where the module reads the host's sysfs for the facts of
    passed-through devices (their NUMA nodes, BARs, drivers); libvirt at O(uri) must be the
    hypervisor the module runs on for those facts to be right.
  - O(wait_for_ip) reads the leases of libvirt networks; a guest on a host bridge
    needs the guest agent (O(guest_agent=true)) for its address.
seealso:
  - module: iaas.kvm.kvm_vm_info
  - module: iaas.kvm.kvm_volume
  - module: iaas.kvm.cloudinit_seed
  - module: iaas.kvm.kvm_gpu_passthrough
"""

EXAMPLES = r"""
- name: A VM from a linked clone of a cloud image and a cloud-init seed, up and reachable
  iaas.kvm.kvm_vm:
    name: web1
    state: running
    domain_type: kvm
    vcpus: 2
    memory: 2GiB
    disks:
      - volume: web1.qcow2
        pool: default
    cloudinit_seed:
      volume: web1-seed.iso
      pool: default
    interfaces:
      - network: default
    guest_agent: true
    console_log: /var/log/libvirt/qemu/web1-console.log
    autostart: true
    wait_for_ip: true
  register: web1

- name: Use its address
  ansible.builtin.debug:
    msg: "web1 is at {{ web1.ip }}"

- name: Define only (power state untouched)
  iaas.kvm.kvm_vm:
    name: web2
    state: present
    memory: 1024
    disks:
      - path: /var/lib/libvirt/images/web2.qcow2

- name: More memory, applied at the next boot (restart_required until then)
  iaas.kvm.kvm_vm:
    name: web1
    state: running
    memory: 4GiB

- name: More memory now, with a graceful restart
  iaas.kvm.kvm_vm:
    name: web1
    state: running
    memory: 4GiB
    restart: true

- name: Room for live changes, boots with 8 GiB and 8 vCPUs, runs with 4 GiB and 2
  iaas.kvm.kvm_vm:
    name: elastic
    state: running
    vcpus: 2
    vcpus_max: 8
    memory: 4GiB
    memory_max: 8GiB

- name: Pause and resume
  iaas.kvm.kvm_vm:
    name: web1
    state: paused

- name: Shut down, powering off after 60 s if the guest ignores ACPI
  iaas.kvm.kvm_vm:
    name: web1
    state: stopped
    shutdown_timeout: 60
    force_stop: true

- name: A GPU VM (q35 and UEFI by default) laid out as the host (topology host), its MMIO window computed
  iaas.kvm.kvm_vm:
    name: trainer
    state: running
    domain_type: kvm
    cpu_mode: host-passthrough
    vcpus: 16
    memory: 64GiB
    hugepages: true
    gpus:
      - "0000:41:00.0"
    disks:
      - volume: trainer.qcow2
    interfaces:
      - network: default

- name: A UEFI VM
  iaas.kvm.kvm_vm:
    name: efi1
    state: running
    firmware: uefi
    machine: q35
    memory: 2GiB
    disks:
      - volume: efi1.qcow2

- name: Eight GPUs over two NUMA nodes with the board's NVSwitches, a NIC VF with a fixed MAC
  iaas.kvm.kvm_vm:
    name: train8
    cpu_mode: host-passthrough
    vcpus: 64
    memory: 1TiB
    hugepages: true
    gpus: "{{ host_gpus.boards[0].gpus + host_gpus.boards[0].nvswitches }}"
    vfs:
      - address: "0000:3b:02.0"
        mac: "52:54:00:6b:00:01"

- name: A VM with a vGPU made by iaas.kvm.kvm_vgpu
  iaas.kvm.kvm_vm:
    name: desk1
    memory: 8GiB
    vgpus:
      - uuid: "{{ desk1_vgpu.vgpu.uuid }}"

- name: The seed project's VM from its raw XML
  iaas.kvm.kvm_vm:
    xml: "{{ lookup('ansible.builtin.file', 'configs/ubuntu-simple.xml') }}"
    state: running

- name: Tag a VM (a running VM gets the new tags at once, without a restart)
  iaas.kvm.kvm_vm:
    name: web1
    tags:
      role: web
      owner: team-a

- name: Remove a VM and its volumes (the base image of a linked clone stays)
  iaas.kvm.kvm_vm:
    name: web1
    state: absent
    force_stop: true
    remove_volumes: true
"""

RETURN = r"""
restart_required:
  description:
    - True when the running VM's definition differs from what it booted with, in a
      field that takes effect at the next boot. Worked out on every run.
  returned: always
  type: bool
  sample: false
restart_reasons:
  description: The fields that need a restart to take effect.
  returned: always
  type: list
  elements: str
  sample: [memory_max]
actions:
  description: What the module did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [defined, started]
ip:
  description: The first IPv4 address of the VM, by interface order; null when none is known.
  returned: always
  type: str
  sample: 192.168.122.23
removed_volumes:
  description: Paths of the volumes deleted by O(remove_volumes) (to be deleted, in check mode).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: [/var/lib/libvirt/images/web1.qcow2]
vm:
  description:
    - The VM after the task (in check mode, as it would be); empty after O(state=absent).
    - Taken from the live definition when the VM runs.
  returned: always
  type: dict
  contains:
    name:
      description: Name.
      type: str
      sample: web1
    uuid:
      description: UUID (null for a VM check mode would create).
      type: str
      sample: 5f1b9c1e-3c1d-4a57-9c2c-6d0d6e1d7a10
    state:
      description: Power state.
      type: str
      choices: [running, paused, stopped, shutting_down, crashed, pmsuspended, nostate, unknown]
      sample: running
    persistent:
      description: Whether the VM has a persistent definition.
      type: bool
      sample: true
    autostart:
      description: Whether libvirtd starts the VM when it starts.
      type: bool
      sample: true
    domain_type:
      description: Hypervisor type.
      type: str
      sample: kvm
    arch:
      description: Guest architecture.
      type: str
      sample: x86_64
    machine:
      description: Machine type as libvirt stores it.
      type: str
      sample: pc-q35-7.2
    firmware:
      description: V(bios) or V(uefi).
      type: str
      sample: uefi
    cpu_mode:
      description: CPU mode (V(custom) for a named model, null when none is set).
      type: str
      sample: host-passthrough
    vcpus:
      description: vCPUs the guest runs with.
      type: int
      sample: 2
    vcpus_max:
      description: vCPU ceiling.
      type: int
      sample: 8
    memory:
      description: Memory in MiB.
      type: int
      sample: 2048
    memory_max:
      description: Memory ceiling in MiB.
      type: int
      sample: 4096
    numa_node:
      description: Host NUMA node the memory is pinned to, or null.
      type: int
      sample: 1
    hugepages:
      description: Whether huge pages back the memory.
      type: bool
      sample: false
    mmio64_mb:
      description: OVMF's 64-bit MMIO window in MiB, or null.
      type: int
      sample: 262144
    disks:
      description: Disks and cdroms except the cloud-init seed.
      type: list
      elements: dict
      contains:
        device:
          description: V(disk) or V(cdrom).
          type: str
        bus:
          description: Guest bus.
          type: str
        target:
          description: Guest device name.
          type: str
          sample: vda
        format:
          description: Image format.
          type: str
        boot_order:
          description: Boot priority or null.
          type: int
        readonly:
          description: Whether the guest sees it read-only.
          type: bool
        path:
          description: Image path (null for a volume disk).
          type: str
        pool:
          description: Storage pool (null for a path disk).
          type: str
        volume:
          description: Volume name (null for a path disk).
          type: str
    cloudinit_seed:
      description: The seed cdrom (same keys as a disk), or null.
      type: dict
    interfaces:
      description: Network interfaces in order.
      type: list
      elements: dict
      contains:
        type:
          description: V(network), V(bridge) or another libvirt interface type.
          type: str
        network:
          description: libvirt network, or null.
          type: str
        bridge:
          description: Host bridge, or null.
          type: str
        mac:
          description: MAC address.
          type: str
          sample: "52:54:00:6b:3c:58"
        model:
          description: NIC model.
          type: str
          sample: virtio
        addresses:
          description: Addresses seen for the interface (DHCP leases, the guest agent).
          type: list
          elements: dict
          sample: [{address: 192.168.122.23, prefix: 24, family: ipv4, source: lease}]
    gpus:
      description:
        - Host PCI devices passed through, with C(model) (vendor:device) where the VM's metadata
          records it (null for the other functions of a GPU's slot and for devices from O(xml)).
      type: list
      elements: dict
      sample: [{address: "0000:41:00.0", managed: false, model: "10de:2330"}, {address: "0000:41:00.1", managed: false, model: null}]
    tags:
      description: The VM's tags (see O(tags)).
      type: dict
      sample: {role: web}
    vfs:
      description: NIC VFs passed through as interfaces, with their C(address) and C(mac).
      type: list
      elements: dict
      sample: [{address: "0000:3b:02.0", mac: "52:54:00:6b:00:01"}]
    vgpus:
      description: vGPUs, each with its C(uuid) (a mediated device) or C(address) (a VF).
      type: list
      elements: dict
      sample: [{uuid: 2b8c8f9e-4c3e-5f0a-9d7e-1a2b3c4d5e6f, address: null}]
    topology:
      description:
        - The guest topology that follows the host (O(topology=host)) - C(cells) (per guest NUMA cell the host
          C(node), its host C(cpus), the guest C(vcpus) and C(memory) in MiB) and C(devices) (each passed-through
          device's C(id) and guest C(cell)); null for the flat placement.
      type: dict
      sample: {cells: [{node: 0, cpus: "0-55,112-167", vcpus: "0-7", memory: 32768}], devices: [{id: "0000:18:00.0", cell: 0}]}
    maxphysaddr:
      description: The guest CPU's physical address width, V(passthrough), a number of bits, or null (QEMU's default).
      type: raw
      sample: 42
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
xml:
  description:
    - The domain definition this run stored (in check mode, the one it would store), when it defined or redefined
      the VM; absent otherwise.
  returned: when the VM was (or would be) defined or redefined
  type: str
  sample: "<domain type='kvm'><name>trainer</name>...</domain>"
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._domain import (
    CPU_MODES,
    DISK_BUSES,
    DISK_DEVICES,
    DOMAIN_TYPES,
    FIRMWARES,
    GRAPHICS,
    SPEC_FIELDS,
    STATES,
    agent_connected,
    compare,
    default_domain_type,
    domain_facts,
    normalise_mac,
    normalise_spec,
    numa_node_cpus,
    restart_reasons,
)
from ansible_collections.iaas.kvm.plugins.module_utils._domain_life import (
    FORCED_STOP_STATES,
    ShutdownTimeout,
    describe,
    domain_state,
    shutoff_reason,
    start,
    stop,
    undefine,
    wait_for_ipv4,
    with_metadata,
)
from ansible_collections.iaas.kvm.plugins.module_utils._domain_meta import (
    carry_metadata,
    read_metadata,
    validate_tags,
    write_metadata,
)
from ansible_collections.iaas.kvm.plugins.module_utils._interrupt import kill_point
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    LibvirtModuleError,
    ModuleManager,
    check_libraries,
    domains_using_volume,
    error_message,
    etree,
    exit_module,
    is_local_uri,
    libvirt,
    lookup,
    parse_xml,
    run_manager,
    to_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._passthrough import normalise_passthrough
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import SYSFS_ARGUMENT_SPEC

# AnsiballZ ships sources that Python compiles on every run, so the code that a
# no-change run of a spec does not use (building XML, storage and PCI lookups) is
# imported where it is used: the re-run of a converged VM costs little more than a ping.


def _format_from_path(path):
    return "qcow2" if path.lower().endswith((".qcow2", ".qcow")) else "raw"


# Formats a storage pool reports that QEMU opens directly; anything else (iso, none) is raw to QEMU.
_QEMU_FORMATS = ("raw", "qcow2", "qcow", "qed", "vmdk", "vpc", "vdi", "vhdx", "luks")


def _qemu_format(pool_format, path):
    if pool_format in _QEMU_FORMATS:
        return pool_format
    return "raw" if pool_format else _format_from_path(path)


class VmManager(ModuleManager):
    """Reads the VM, compares it with the task, and converges it."""

    def __init__(self, module, conn):
        super().__init__(module, conn)
        self.tracker = DifferenceTracker()
        self.reasons = []
        self.ip = None
        self.addresses = None
        self.xml_diff = None
        self.dom = None
        self._exists_before = False
        self.planned = None  # the definition this run stores (check mode: would store)
        self._live_spec = None  # the spec whose memory and vCPUs may also apply live
        self._wanted_xml = None  # the task's XML when it redefines an existing VM
        self.tags = None  # the task's tags, checked
        self.wanted_tags = None  # the tags after this run, where the task names them
        self._trees = {}
        self._host = None  # the host's view of passed-through devices, read when needed

    # --- input ---------------------------------------------------------------

    def _user_xml(self):
        try:
            tree = parse_xml(self.params["xml"])
        except (etree.XMLSyntaxError, ValueError) as exc:
            raise LibvirtModuleError("xml is not well-formed XML: %s" % exc) from exc
        if tree.tag != "domain":
            raise LibvirtModuleError("xml must be a libvirt <domain> definition, not <%s>." % tree.tag)
        name = (tree.findtext("name") or "").strip()
        if not name:
            raise LibvirtModuleError("xml has no <name>.")
        if self.params["name"] and self.params["name"] != name:
            raise LibvirtModuleError("The name in xml (%s) differs from name (%s)." % (name, self.params["name"]))
        return name, tree

    def _volume(self, pool_name, volume_name, what):
        from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_name
        from ansible_collections.iaas.kvm.plugins.module_utils._storage import get_volume, refresh_pool

        validate_name(volume_name)
        pool = lookup(self.conn.storagePoolLookupByName, pool_name)
        if pool is None:
            raise LibvirtModuleError("The storage pool %r of %s does not exist." % (pool_name, what))
        if not pool.isActive():
            raise LibvirtModuleError("The storage pool %r of %s is not active." % (pool_name, what))
        vol = get_volume(pool, volume_name)
        if vol is None:
            refresh_pool(pool)  # a volume made outside libvirt appears after a refresh
            vol = get_volume(pool, volume_name)
        if vol is None:
            raise LibvirtModuleError("The volume %r of %s does not exist in pool %r." % (volume_name, what, pool_name))
        return vol

    def _check_source(self, entry, what):
        if entry["volume"]:
            return self._volume(entry["pool"], entry["volume"], what)
        if self._local and not os.path.exists(entry["path"]):
            raise LibvirtModuleError("The file %s of %s does not exist." % (entry["path"], what))
        return None

    @property
    def _local(self):
        """True for a URI without a host (``qemu:///system``): its paths are on this machine."""
        return is_local_uri(self.conn.getURI())

    def resolve(self, spec, existing):
        """Check every reference of ``spec`` against the hypervisor; return the
        hints build_domain needs. Nothing is changed."""
        hints = {}
        volumes = {}
        for index, disk in enumerate(spec.get("disks", [])):
            volumes[index] = self._check_source(disk, "disks[%d]" % index)
        if "cloudinit_seed" in spec:
            volumes["seed"] = self._check_source(spec["cloudinit_seed"], "cloudinit_seed")
        for index, iface in enumerate(spec.get("interfaces", [])):
            if iface["network"] and lookup(self.conn.networkLookupByName, iface["network"]) is None:
                raise LibvirtModuleError("The network %r of interfaces[%d] does not exist." % (iface["network"], index))
        if "gpus" in spec:
            spec["gpus"] = self._expand_gpus(spec["gpus"])
        if "numa_node" in spec:
            hints["numa_cpus"] = self._numa_cpus(spec["numa_node"])
        self._resolve_host_devices(spec, existing, hints)
        if not existing and "domain_type" not in spec:
            hints["domain_type"] = self._default_domain_type()
        hints["volumes"] = volumes
        return hints

    def _host_devices(self):
        from ansible_collections.iaas.kvm.plugins.module_utils._vm_host import HostDevices

        if self._host is None:
            self._host = HostDevices(self.params)
        return self._host

    def _resolve_host_devices(self, spec, existing, hints):
        """Topology, MMIO window and address width from the host's view of the devices (_vm_host)."""
        from ansible_collections.iaas.kvm.plugins.module_utils._vm_host import needs_host, resolve

        if needs_host(spec):
            facts = domain_facts(self._tree(inactive=True)) if existing else None
            self._host = resolve(spec, facts, self.params, self.conn, hints, self.warnings)

    def _expand_gpus(self, addresses):
        from ansible_collections.iaas.kvm.plugins.module_utils._pci import (
            host_pci_functions,
            node_device_driver,
            slot_functions,
        )

        from_sysfs = self._host_devices().expand_gpus(addresses)
        if from_sysfs is not None:
            return from_sysfs
        host = host_pci_functions(self.conn)
        result = []
        for address in addresses:
            functions = [address]
            if host is not None:
                if address not in host:
                    raise LibvirtModuleError("The host has no PCI device %s (gpus)." % address)
                functions = slot_functions(host, address)
            for function in functions:
                if function in [g["address"] for g in result]:
                    continue
                driver = node_device_driver(host[function]) if host is not None else None
                result.append(dict(address=function, managed=driver != "vfio-pci"))
        return result

    def _numa_cpus(self, node):
        return numa_node_cpus(parse_xml(self.conn.getCapabilities()), node)

    def _default_domain_type(self):
        return default_domain_type(parse_xml(self.conn.getCapabilities()))

    def _add_formats(self, spec, hints):
        """The pool's format for each volume (used for disks the VM does not have yet)."""
        from ansible_collections.iaas.kvm.plugins.module_utils._storage import volume_facts

        for key, found in hints["volumes"].items():
            entry = spec["cloudinit_seed"] if key == "seed" else spec["disks"][key]
            vol = found
            if vol is None and entry.get("path"):
                vol = lookup(self.conn.storageVolLookupByPath, entry["path"])
            facts = volume_facts(vol) if vol is not None else dict(format=None, path=entry.get("path") or "")
            entry["volume_format"] = _qemu_format(facts["format"], facts["path"])

    def _tree(self, inactive=False):
        """The parsed live (or inactive) definition, read once until the next action."""
        key = (inactive, len(self.actions))
        if key not in self._trees:
            self._trees = {k: v for k, v in self._trees.items() if k[1] == len(self.actions)}
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
            self._trees[key] = parse_xml(self.dom.XMLDesc(flags))
        return self._trees[key]

    # --- the definition --------------------------------------------------------

    def define(self, xml_text):
        if self.check:
            return self.dom
        try:
            return self.conn.defineXMLFlags(xml_text, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            raise LibvirtModuleError(
                "libvirt refused the definition of VM %s: %s" % (self.name, error_message(exc))
            ) from exc

    def plan_spec(self, spec):
        """The definition the spec asks for (``self.planned``), or None when the
        VM's inactive definition already matches; records the diff, changes nothing."""
        hints = self.resolve(spec, self.dom is not None)
        inactive = None
        if self.dom is None:
            if "memory" not in spec:
                raise LibvirtModuleError("memory is needed to create the VM %s." % self.name)
        else:
            inactive = self._tree(inactive=True)
            if not compare(spec, domain_facts(inactive), self.tracker):
                return
        from ansible_collections.iaas.kvm.plugins.module_utils import _domain_xml

        if inactive is None:
            spec = _domain_xml.creation_defaults(spec, hints.get("domain_type") or "qemu")
            compare(spec, None, self.tracker)
            self.tracker.add("defined", False, True)
        self._add_formats(spec, hints)
        self.planned = _domain_xml.build_domain(self.name, spec, inactive, hints)
        self._live_spec = spec

    def plan_xml(self, wanted):
        """The definition the task's XML asks for (``self.planned``), or None when
        the inactive definition already matches it; changes nothing."""
        from ansible_collections.iaas.kvm.plugins.module_utils._domain_xml import carry_over, xml_matches

        if self.dom is None:
            self.tracker.add("defined", False, True)
            self.xml_diff = dict(before="", after=to_xml(wanted))
            self.planned = wanted
            return
        inactive = self._tree(inactive=True)
        if not xml_matches(wanted, inactive):
            self.planned = carry_over(wanted, inactive)
            carry_metadata(self.planned, inactive)
            self._wanted_xml = wanted

    def define_planned(self):
        """Store ``self.planned`` (check mode only records it)."""
        existed = self.dom is not None
        inactive = self._tree(inactive=True) if existed else None
        self.dom = self.define(to_xml(self.planned))
        self.act("redefined" if existed else "defined")
        kill_point("kvm_vm:defined")
        if not existed:
            return
        if self._live_spec is not None:
            self._apply_live(self._live_spec, inactive)
        if self._wanted_xml is not None:
            after = self.planned if self.check else self._tree(inactive=True)
            self.xml_diff = dict(before=to_xml(inactive), after=to_xml(after))
            from ansible_collections.iaas.kvm.plugins.module_utils._domain_xml import xml_matches

            if not self.check and not xml_matches(self._wanted_xml, after):
                self.warnings.append(
                    "libvirt stored the XML of VM %s in a form this module cannot match with the task's "
                    "XML, so the next run reports a change again." % self.name
                )

    def _apply_live(self, spec, old):
        """Memory and vCPU changes inside the running guest's ceilings, live."""
        if self.check or not self.dom.isActive():
            return
        live = domain_facts(self._tree())
        before = domain_facts(old)
        if "memory" in spec and spec["memory"] != before["memory"] and spec["memory"] <= (live["memory_max"] or 0):
            try:
                self.dom.setMemoryFlags(int(spec["memory"]) * 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                self.act("memory set live")
            except libvirt.libvirtError as exc:
                self.warnings.append(
                    "Could not change the memory of running VM %s: %s" % (self.name, error_message(exc))
                )
        if "vcpus" in spec and spec["vcpus"] != live["vcpus"] and spec["vcpus"] <= live["vcpus_max"]:
            try:
                self.dom.setVcpusFlags(spec["vcpus"], libvirt.VIR_DOMAIN_AFFECT_LIVE)
                self.act("vcpus set live")
            except libvirt.libvirtError as exc:
                self.warnings.append(
                    "Could not change the vCPUs of running VM %s: %s" % (self.name, error_message(exc))
                )

    # --- metadata: tags and GPU models ---------------------------------------------

    def _gpu_models(self, addresses, known):
        """``{address: vendor:device}`` from the host's node devices (``known`` where it has none)."""
        from ansible_collections.iaas.kvm.plugins.module_utils._pci import host_pci_functions, node_device_model

        host = host_pci_functions(self.conn) or {}
        return {a: node_device_model(host[a]) if a in host else known.get(a) for a in addresses}

    def converge_metadata(self, gpu_request):
        """The tags, and the models of the GPUs the spec lists, in the VM's metadata:
        set on the live and the persistent definition at once (no restart)."""
        tags = self.tags
        if tags is None and gpu_request is None:
            return
        exists = self.dom is not None and not (self.check and not self._exists_before)
        current = read_metadata(self._tree(inactive=True)) if exists else read_metadata(etree.Element("domain"))
        running = exists and bool(self.dom.isActive())
        live = read_metadata(self._tree()) if running else current
        wanted = dict(current)
        if tags is not None:
            wanted["tags"] = tags
        if gpu_request is not None:
            wanted["gpus"] = self._gpu_models(gpu_request, current["gpus"])
        self.wanted_tags = wanted["tags"]
        if wanted == current and wanted == live:
            return
        if tags is not None:
            self.tracker.add("tags", current["tags"], wanted["tags"])
        if wanted["tags"] != current["tags"] or wanted["tags"] != live["tags"]:
            self.act("tags set")
        if wanted["gpus"] != current["gpus"] or wanted["gpus"] != live["gpus"]:
            self.act("gpu models recorded")
        if not self.check:
            write_metadata(self.dom, wanted, live=running)

    # --- power -------------------------------------------------------------------

    def _current_state(self):
        if self.dom is None:  # check mode: a VM this run would define
            return "stopped", None
        return domain_state(self.dom)

    def converge_power(self, state):
        current, reason = self._current_state()
        target = {"running": "running", "stopped": "stopped", "paused": "paused"}.get(state)
        if target is None or current == target:
            return
        self.tracker.add("state", current, target)
        if target == "stopped":
            self.act(self._stop_action())
            return
        if current == "stopped":
            if target == "running" and reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED:
                self.warnings.append("The VM %s %s; started it again." % (self.name, shutoff_reason(reason)))
            self._start(paused=target == "paused")
            return
        if current in ("crashed", "shutting_down"):
            self.act(self._stop_action())
            self._start(paused=False)
            return
        vm = "the VM %s" % self.name
        if target == "paused":
            self.do("paused", "pause " + vm, self.dom.suspend)
        elif current == "paused":
            self.do("resumed", "resume " + vm, self.dom.resume)
        elif current == "pmsuspended":
            self.do("woken up", "wake up " + vm, self.dom.pMWakeup, 0)

    def _start(self, paused):
        if not self.check:
            start(self.dom, paused=paused)
        self.act("started paused" if paused else "started")

    def _stop_action(self):
        """Stop the VM (check mode: predict it); returns what was done."""
        if self.check:
            return "powered off" if self._needs_forced_stop() else "shut down"
        try:
            return stop(self.dom, self.params["shutdown_timeout"], self.params["force_stop"])
        except ShutdownTimeout:
            self.act("asked the guest to shut down")  # the guest may still act on it
            raise

    def converge_autostart(self):
        wanted = self.params["autostart"]
        if wanted is None:
            return
        current = bool(self._exists_before and self.dom.autostart())
        if current != wanted:
            self.tracker.add("autostart", current, wanted)
            action = "autostart on" if wanted else "autostart off"
            self.do(action, "set autostart of the VM %s" % self.name, self.dom.setAutostart, int(wanted))

    def check_restart(self, state):
        """restart_required from the live and the inactive definition; restart when asked."""
        if not self._exists_before or state == "stopped" or not self.dom.isActive():
            return
        live = self._tree()
        inactive = self.planned if self.check and self.planned is not None else None
        if inactive is None:
            inactive = self._tree(inactive=True)
        self.reasons = restart_reasons(domain_facts(live), domain_facts(inactive))
        if self.reasons and self.params["restart"]:
            self.tracker.add("restarted", False, True)
            if not self.check:
                was_paused = domain_state(self.dom)[0] == "paused"
                stopped = self._stop_action()
                try:
                    start(self.dom, paused=was_paused)
                except LibvirtModuleError:
                    self.act(stopped)  # the VM is off now: say so
                    raise
            self.act("restarted")
            self.reasons = []

    # --- refusals, before anything changes -------------------------------------------

    def _needs_forced_stop(self):
        """True when the VM runs in a state that only a forced stop ends."""
        return self.dom is not None and self._exists_before and domain_state(self.dom)[0] in FORCED_STOP_STATES

    def _stop_planned(self, state):
        """True when this run would stop the running VM (see converge_power and check_restart)."""
        if not self._exists_before or not self.dom.isActive():
            return False
        if state in ("stopped", "absent"):
            return True
        if state in ("running", "paused") and domain_state(self.dom)[0] in ("crashed", "shutting_down"):
            return True
        return bool(self.params["restart"]) and self._restart_planned()

    def _restart_planned(self):
        inactive = self.planned if self.planned is not None else self._tree(inactive=True)
        return bool(restart_reasons(domain_facts(self._tree()), domain_facts(inactive)))

    def refuse_unsafe(self, state):
        """Refuse what this run cannot do without more input, before the first change."""
        if self.params["wait_for_ip"]:
            tree = self.planned if self.planned is not None else self._tree(inactive=True)
            if not domain_facts(tree)["interfaces"]:
                self.refuse("wait_for_ip needs a network interface, and the VM %s has none." % self.name)
        forced = self._needs_forced_stop()
        if self.params["force_stop"] or not (forced or self.params["shutdown_timeout"] == 0):
            return
        if not self._stop_planned(state):
            return
        would = (["redefined"] if self.planned is not None else []) + ["powered off"]
        if state == "absent":
            would.append("undefined")
        elif state != "stopped":
            would.append("started")
        if forced:
            reason = "is %s and cannot shut down gracefully" % domain_state(self.dom)[0]
        else:
            reason = "would have to stop, and shutdown_timeout 0 leaves it no time to shut down gracefully"
        self.refuse("The VM %s %s; set force_stop: true to power it off." % (self.name, reason), actions=would)

    # --- the run -----------------------------------------------------------------

    def run(self):
        params = self.params
        state = params["state"]
        spec = None
        wanted = None
        if params["xml"]:
            self.name, wanted = self._user_xml()
        else:
            spec = normalise_spec(params)
            spec.update(normalise_passthrough(params, normalise_mac))
            self.name = params["name"]
        gpu_request = list(spec["gpus"]) if spec and "gpus" in spec else None
        self.tags = validate_tags(params["tags"]) if params["tags"] is not None else None
        self.dom = lookup(self.conn.lookupByName, self.name)
        self._exists_before = self.dom is not None
        if state == "absent":
            self.refuse_unsafe(state)
            return self.absent()
        if wanted is not None:
            self.plan_xml(wanted)
        else:
            self.plan_spec(spec)
        self.refuse_unsafe(state)
        if self.planned is not None:
            self.define_planned()
        self.converge_metadata(gpu_request)
        self.converge_autostart()
        self.converge_power(state)
        self.check_restart(state)
        if params["wait_for_ip"] and not (self.check and not self._running_now()):
            self.wait_for_ip()
        return self.result()

    def _running_now(self):
        return self.dom is not None and self._exists_before and domain_state(self.dom)[0] == "running"

    def wait_for_ip(self):
        macs = [i["mac"] for i in domain_facts(self._tree())["interfaces"] if i["mac"]]

        def agent_ready():
            return agent_connected(parse_xml(self.dom.XMLDesc(0)))

        self.ip, self.addresses = wait_for_ipv4(self.dom, macs, self.params["wait_timeout"], agent_ready)

    def absent(self):
        result = dict(removed_volumes=[])
        if self.dom is None:
            return self.result(**result)
        facts = domain_facts(self._tree(inactive=True))
        self.tracker.add("state", domain_state(self.dom)[0], "absent")
        volumes = self._volumes_to_remove(facts) if self.params["remove_volumes"] else []
        result["removed_volumes"] = [v.path() for v in volumes]
        persistent = self.dom.isPersistent()
        if self.dom.isActive():
            self.act(self._stop_action())
        if not self.check and persistent:
            undefine(self.dom, uefi=facts["firmware"] == "uefi")
        self.act("undefined")
        for vol, path in zip(volumes, result["removed_volumes"]):
            self.do("removed volume %s" % path, "delete volume %s" % path, vol.delete, 0)
        self.dom = None
        return self.result(**result)

    def _volumes_to_remove(self, facts):
        from ansible_collections.iaas.kvm.plugins.module_utils._storage import get_volume

        disks = list(facts["disks"]) + ([facts["cloudinit_seed"]] if facts["cloudinit_seed"] else [])
        volumes = []
        for disk in disks:
            if disk["volume"]:
                pool = lookup(self.conn.storagePoolLookupByName, disk["pool"])
                vol = get_volume(pool, disk["volume"]) if pool is not None and pool.isActive() else None
            else:
                vol = lookup(self.conn.storageVolLookupByPath, disk["path"]) if disk["path"] else None
            if vol is None:
                continue
            users = [
                n for n in domains_using_volume(self.conn, vol.path(), disk["pool"], disk["volume"]) if n != self.name
            ]
            if users:
                self.warnings.append("Kept volume %s: the VM(s) %s use it too." % (vol.path(), ", ".join(users)))
                continue
            if vol.path() not in [v.path() for v in volumes]:
                volumes.append(vol)
        return volumes

    def result(self, **extra):
        vm = {}
        if self.dom is not None and not (self.check and not self._exists_before):
            vm = describe(self.dom, tree=self._tree(), addresses=self.addresses)
        elif self.planned is not None:
            vm = with_metadata(domain_facts(self.planned), self.planned)
            state = self.params["state"] if self.params["state"] in ("running", "paused") else "stopped"
            vm.update(state=state, persistent=True, autostart=bool(self.params["autostart"]), ip=None)
            for iface in vm["interfaces"]:
                iface["addresses"] = []
        if vm and self.check and self.wanted_tags is not None:
            vm["tags"] = self.wanted_tags
        result = dict(
            changed=self.changed or self.tracker.changed,
            restart_required=bool(self.reasons),
            restart_reasons=self.reasons,
            actions=self.actions,
            ip=self.ip or vm.get("ip"),
            vm=vm,
        )
        if self.planned is not None:
            result["xml"] = to_xml(self.planned)
        result.update(extra)
        if self.module._diff:
            diff = self.tracker.diff()
            result["diff"] = (
                [diff, dict(self.xml_diff, before_header="libvirt", after_header="xml")] if self.xml_diff else diff
            )
        return result


def argument_spec():
    spec = dict(
        name=dict(type="str"),
        state=dict(type="str", choices=list(STATES), default="present"),
        xml=dict(type="str"),
        domain_type=dict(type="str", choices=list(DOMAIN_TYPES)),
        machine=dict(type="str"),
        cpu_mode=dict(type="str", choices=list(CPU_MODES)),
        firmware=dict(type="str", choices=list(FIRMWARES)),
        vcpus=dict(type="int"),
        vcpus_max=dict(type="int"),
        memory=dict(type="raw"),
        memory_max=dict(type="raw"),
        numa_node=dict(type="int"),
        hugepages=dict(type="bool"),
        mmio64_mb=dict(type="int"),
        disks=dict(
            type="list",
            elements="dict",
            options=dict(
                volume=dict(type="str"),
                pool=dict(type="str", default="default"),
                path=dict(type="str"),
                device=dict(type="str", choices=list(DISK_DEVICES), default="disk"),
                bus=dict(type="str", choices=list(DISK_BUSES)),
                boot_order=dict(type="int"),
                format=dict(type="str"),
            ),
            mutually_exclusive=[("volume", "path")],
            required_one_of=[("volume", "path")],
        ),
        cloudinit_seed=dict(type="raw"),
        interfaces=dict(
            type="list",
            elements="dict",
            options=dict(
                network=dict(type="str"),
                bridge=dict(type="str"),
                mac=dict(type="str"),
                model=dict(type="str"),
            ),
            mutually_exclusive=[("network", "bridge")],
            required_one_of=[("network", "bridge")],
        ),
        gpus=dict(type="list", elements="str"),
        maxphysaddr=dict(type="raw"),
        topology=dict(type="str", choices=["host", "flat"]),
        vfs=dict(
            type="list",
            elements="dict",
            options=dict(address=dict(type="str", required=True), mac=dict(type="str")),
        ),
        vgpus=dict(
            type="list",
            elements="dict",
            options=dict(uuid=dict(type="str"), address=dict(type="str"), parent=dict(type="str")),
            mutually_exclusive=[("uuid", "address")],
            required_one_of=[("uuid", "address")],
        ),
        assume_vfio=dict(type="list", elements="str", default=[]),
        console_log=dict(type="str"),
        guest_agent=dict(type="bool"),
        graphics=dict(type="str", choices=list(GRAPHICS)),
        autostart=dict(type="bool"),
        restart=dict(type="bool", default=False),
        wait_for_ip=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        shutdown_timeout=dict(type="int", default=120),
        force_stop=dict(type="bool", default=False),
        remove_volumes=dict(type="bool", default=False),
        tags=dict(type="dict"),
    )
    spec.update(URI_ARGUMENT_SPEC)
    spec.update(SYSFS_ARGUMENT_SPEC)
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("xml", field) for field in SPEC_FIELDS],
        required_one_of=[("name", "xml")],
        supports_check_mode=True,
    )
    check_libraries(module)
    params = module.params
    if params["wait_for_ip"] and params["state"] != "running":
        module.fail_json(msg="wait_for_ip needs state: running.")
    for key in ("wait_timeout", "shutdown_timeout"):
        if params[key] < 0:
            module.fail_json(msg="%s must not be negative." % key)
    manager, result, error = run_manager(module, VmManager)
    exit_module(module, manager, result, error)


if __name__ == "__main__":
    main()
