#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_vgpu
short_description: Create or remove a vGPU of a named type for a VM - a mediated device, or an NVIDIA virtual function
version_added: 0.2.0
description:
  - Creates a vGPU of the type O(type) on the GPU O(parent), for the VM that will use it, in one of the two ways
    the GPU offers (M(iaas.kvm.kvm_gpu_info) lists them in RV(iaas.kvm.kvm_gpu_info#module:gpus[].vgpu_types)).
  - A B(mediated device) (NVIDIA vGPU before Ada, any mdev parent) with a stable UUID - O(uuid), or one derived
    from O(name), so the same task always means the same device. M(iaas.kvm.kvm_vm) attaches it with
    O(iaas.kvm.kvm_vm#module:vgpus[].uuid) (a C(<hostdev type='mdev'>)).
  - An NVIDIA B(SR-IOV virtual function) given the vGPU type (Ada, Hopper and later) - the VF's
    C(nvidia/current_vgpu_type) is set. The VF is O(vf), or the module picks one - the VF a libvirt domain named
    O(name) uses, else a VF that has the type already and no domain uses, else the first free VF that offers the
    type. Such VFs stay on the vendor's driver (never C(vfio-pci)); M(iaas.kvm.kvm_vm) attaches them with
    O(iaas.kvm.kvm_vm#module:vgpus[].address) and C(managed='no').
  - O(state=absent) removes the mediated device, or clears the VF's type.
  - Refuses, having changed nothing, a type the GPU does not offer, a type with no instance left, a VF that has
    another type already, a VF on C(vfio-pci), a UUID that exists with another type, and a change to a vGPU that a
    running libvirt guest uses (asked at O(uri)).
  - Writes nothing when the vGPU already is as asked. In check mode it writes nothing and returns the writes it
    would make.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - The vGPU's name, usually the VM's. A mediated device's UUID derives from it (unless O(uuid) is given);
        a VF that the libvirt domain of this name uses is the VF of this vGPU.
    type: str
    required: true
  parent:
    description: PCI address of the GPU (V(0000:41:00.0)); for an SR-IOV vGPU, the physical function.
    type: str
    required: true
  type:
    description:
      - The vGPU type, by ID (the mediated-device type V(nvidia-222), or the NVIDIA vGPU type ID V(1155)) or by
        name (V(GRID T4-1B), V(NVIDIA L40S-48Q)).
      - Required with O(state=present).
    type: str
  uuid:
    description:
      - The UUID of the mediated device; defaults to one derived from O(name) (a version 5 UUID).
    type: str
  vf:
    description: For an SR-IOV vGPU, the virtual function to use (by default the module picks one).
    type: str
  state:
    description: V(present) creates the vGPU, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  persistent:
    description:
      - Keep the vGPU across host reboots where the host has a way. For a mediated device with C(mdevctl) installed,
        the module writes C(mdevctl)'s definition (C(<root>/etc/mdevctl.d/<parent>/<uuid>), started at boot) and
        removes it with O(state=absent); without C(mdevctl) it warns.
      - The vGPU type of a VF does not survive a reboot and no host tool keeps it; run the task again at boot (the
        README's GPU section shows how).
    type: bool
    default: true
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
  - iaas.kvm.sysfs
notes:
  - A GPU with a time-sliced vGPU offers only that type to its other vGPUs; kvm_gpu_info shows the instances left.
  - For an SR-IOV vGPU, C(nvidia/creatable_vgpu_types) lists only the types a VF can still take, so a type given by
    name is found only while one can; give the type ID to keep the task working once every instance is in use.
  - For an SR-IOV vGPU the module asks libvirt which domains use the VFs even when nothing changes (to pick the VF).
  - Enable the VFs of an SR-IOV GPU first, with M(iaas.kvm.kvm_sriov) (O(iaas.kvm.kvm_sriov#module:vf_driver=host))
    or NVIDIA's C(sriov-manage).
seealso:
  - module: iaas.kvm.kvm_gpu_info
  - module: iaas.kvm.kvm_sriov
  - module: iaas.kvm.kvm_vm
  - name: VFIO mediated devices in the Linux kernel documentation
    description: The mdev_supported_types, create and remove interfaces.
    link: https://docs.kernel.org/driver-api/vfio-mediated-device.html
"""

EXAMPLES = r"""
- name: A T4-1B vGPU (a mediated device) for the VM desk1
  iaas.kvm.kvm_vgpu:
    name: desk1
    parent: "0000:3b:00.0"
    type: GRID T4-1B
  register: desk1_vgpu

- name: The VM with it
  iaas.kvm.kvm_vm:
    name: desk1
    memory: 8G
    firmware: uefi
    vgpus:
      - uuid: "{{ desk1_vgpu.vgpu.uuid }}"

- name: An L40S-24Q vGPU on a VF of the L40S (VFs enabled by iaas.kvm.kvm_sriov)
  iaas.kvm.kvm_vgpu:
    name: train1
    parent: "0000:41:00.0"
    type: NVIDIA L40S-24Q
  register: train1_vgpu

- name: The VM with that VF
  iaas.kvm.kvm_vm:
    name: train1
    memory: 64G
    vgpus:
      - address: "{{ train1_vgpu.vgpu.address }}"

- name: Remove the mediated device again
  iaas.kvm.kvm_vgpu:
    name: desk1
    parent: "0000:3b:00.0"
    state: absent
"""

RETURN = r"""
vgpu:
  description: The vGPU after the run (in check mode, what it would be); null when absent.
  returned: success
  type: dict
  contains:
    kind:
      description: V(mdev) (a mediated device) or V(sriov) (a virtual function with a vGPU type).
      type: str
      sample: mdev
    parent:
      description: The GPU.
      type: str
      sample: "0000:3b:00.0"
    type:
      description: The type ID.
      type: str
      sample: nvidia-222
    type_name:
      description: The type's name.
      type: str
      sample: GRID T4-1B
    uuid:
      description: The mediated device's UUID (for O(iaas.kvm.kvm_vm#module:vgpus[].uuid)); null for a VF.
      type: str
      sample: 2b8c8f9e-4c3e-5f0a-9d7e-1a2b3c4d5e6f
    address:
      description: The VF's PCI address (for O(iaas.kvm.kvm_vm#module:vgpus[].address)); null for a mediated device.
      type: str
      sample: null
actions:
  description: What the run did (in check mode, what it would do; on a refusal, what it would have done).
  returned: always
  type: list
  elements: str
  sample: ["create the mediated device 2b8c8f9e-4c3e-5f0a-9d7e-1a2b3c4d5e6f of type nvidia-222 on 0000:3b:00.0"]
writes:
  description: The writes made, in order (in check mode, the writes it would make); C(value) null removes a file.
  returned: always
  type: list
  elements: dict
  sample: [{path: /sys/bus/pci/devices/0000:3b:00.0/mdev_supported_types/nvidia-222/create, value: 2b8c8f9e-4c3e-5f0a-9d7e-1a2b3c4d5e6f}]
commands:
  description: Commands the change ran (none).
  returned: always
  type: list
  elements: dict
  sample: []
persistent_file:
  description: The mdevctl definition of O(persistent), null where there is none.
  returned: success
  type: str
  sample: /etc/mdevctl.d/0000:3b:00.0/2b8c8f9e-4c3e-5f0a-9d7e-1a2b3c4d5e6f
refusals:
  description: Every reason the request was refused (the message holds the first).
  returned: failure
  type: list
  elements: str
  sample: ["Refusing to create a vGPU of type nvidia-230 on 0000:3b:00.0: it has no instance left."]
"""

import uuid as uuid_lib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._gpu import GpuError, HostView
from ansible_collections.iaas.kvm.plugins.module_utils._host_devices import (
    HostDeviceManager,
    Refusal,
    in_use_refusal,
    run_host_module,
)
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    check_libraries,
    domains_using_pci,
)
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import SYSFS_ARGUMENT_SPEC
from ansible_collections.iaas.kvm.plugins.module_utils._vgpu import (
    domains_using_mdev,
    mdev_type,
    mdevctl_installed,
    mdevctl_path,
    offered_types,
    render_mdevctl,
    sriov_type,
    sriov_vgpus,
    vgpu_uuid,
)


class VgpuManager(HostDeviceManager):
    """Plans the vGPU (a mediated device or a VF's type), refuses what cannot be, then applies it."""

    def __init__(self, module):
        super().__init__(module)
        self.state = self.params["state"]
        self.view = None
        self.parent = None
        self.kind = None
        self.type_id = None
        self.type_name = None
        self.uuid = None
        self.vf = None
        self.vgpus = {}
        self.reasons = []
        self.exists_after = False

    def plan_all(self):
        self.resolve()
        if self.kind == "mdev":
            self.plan_mdev()
            self.plan_mdevctl()
        else:
            self.plan_vf()

    # -- plan ---------------------------------------------------------------------------

    def resolve(self):
        """The parent, the kind of vGPU and its type."""
        self.view = HostView(self.sysfs, self.root)
        self.parent = self.view.require(self.params["parent"])
        if self.params["vf"] is not None:
            self.vf = self.view.require(self.params["vf"])
        self.vgpus = sriov_vgpus(self.view, self.parent)
        wanted = self.params["type"]
        if self.params["uuid"] is not None:
            try:
                self.uuid = str(uuid_lib.UUID(self.params["uuid"]))
            except ValueError as exc:
                raise GpuError("uuid %r is not a UUID." % self.params["uuid"]) from exc
        found = mdev_type(self.view, self.parent, wanted) if wanted else None
        if found is not None or (not self.vgpus and self.vf is None):
            self.kind = "mdev"
            self.uuid = self.uuid or vgpu_uuid(self.params["name"])
            if found is not None:
                self.type_id, self.type_name = found["type"], found["name"]
        else:
            self.kind = "sriov"
            if self.params["uuid"] is not None:
                raise GpuError("uuid names a mediated device; %s offers vGPUs on its VFs." % self.parent)
            typed = sriov_type(self.vgpus, wanted) if wanted else None
            if typed is not None:
                self.type_id, self.type_name = typed
        if self.state == "present" and self.type_id is None:
            self.plan("create a vGPU of type %s on %s" % (wanted, self.parent))
            hint = ""
            if self.kind == "sriov":
                hint = "; a type given by name is found only while a VF can still take it, so give its ID"
            raise Refusal(
                [
                    "Refusing to create a vGPU of type %s on %s: it does not offer that type (it offers %s%s)."
                    % (wanted, self.parent, offered_types(self.view, self.parent, self.vgpus), hint)
                ]
            )

    def plan_mdev(self):
        existing = self.sysfs.mdev_devices().get(self.uuid)
        if self.state == "absent":
            if existing is not None:
                self.add_step(
                    dict(
                        path=self.sysfs.mdev_remove_path(self.uuid),
                        value="1",
                        wait=None,
                        action="remove the mediated device %s" % self.uuid,
                    )
                )
                self.type_id = existing["type"]
            return
        self.exists_after = True
        if existing is not None:
            if (existing["parent"], existing["type"]) != (self.parent, self.type_id):
                self.reasons.append(
                    "Refusing to create the mediated device %s of type %s on %s: it exists already as type %s on %s; "
                    "remove it (state: absent) or give another name or uuid."
                    % (self.uuid, self.type_id, self.parent, existing["type"], existing["parent"])
                )
            return
        action = "create the mediated device %s of type %s on %s" % (self.uuid, self.type_id, self.parent)
        self.add_step(
            dict(path=self.sysfs.mdev_create_path(self.parent, self.type_id), value=self.uuid, wait=None, action=action)
        )
        left = mdev_type(self.view, self.parent, self.type_id)["available_instances"] or 0
        if left < 1:
            self.reasons.append(
                "Refusing to create a vGPU of type %s on %s: it has no instance left (the GPU's vGPUs use them, "
                "or hold another type)." % (self.type_id, self.parent)
            )

    def plan_vf(self):
        if self.state == "absent":
            self.vf = self.vf or self._vf_of_domain()
            current = self.vgpus.get(self.vf, {}).get("current_type") if self.vf else None
            if current:
                self.type_id = current
                self._type_step(self.vf, "0", "clear the vGPU type of %s" % self.vf)
            elif self.vf is None:
                self.warnings.append(
                    "No libvirt domain named %s uses a VF of %s and vf is not given, so no vGPU was removed."
                    % (self.params["name"], self.parent)
                )
            return
        self.exists_after = True
        self.vf = self.vf or self._choose_vf()
        if self.vf is None:
            self.plan("give a VF of %s the vGPU type %s" % (self.parent, self.type_id))
            self.reasons.append(
                "Refusing to create a vGPU of type %s on %s: it has no instance left (no free VF offers the type)."
                % (self.type_id, self.parent)
            )
            return
        if self.vf not in self.vgpus:
            raise GpuError("%s is not a virtual function of %s with NVIDIA vGPU." % (self.vf, self.parent))
        vgpu = self.vgpus[self.vf]
        if vgpu["current_type"] == self.type_id:
            return
        named = " (%s)" % self.type_name if self.type_name else ""
        self._type_step(self.vf, self.type_id, "give %s the vGPU type %s%s" % (self.vf, self.type_id, named))
        if vgpu["current_type"]:
            self.reasons.append(
                "Refusing to give %s the vGPU type %s: it has the type %s already; remove that vGPU first."
                % (self.vf, self.type_id, vgpu["current_type"])
            )
        elif self.type_id not in [t["type"] for t in vgpu["creatable"]]:
            self.reasons.append(
                "Refusing to create a vGPU of type %s on %s: it has no instance left (%s cannot take it)."
                % (self.type_id, self.parent, self.vf)
            )
        driver = self.view.devices[self.vf]["driver"]
        if driver in ("vfio-pci", "pci-stub"):
            self.reasons.append(
                "Refusing to give %s a vGPU type: it is on %s, and a vGPU VF stays on the vendor's driver; return it "
                "with iaas.kvm.kvm_gpu_passthrough (state: host)." % (self.vf, driver)
            )

    def add_step(self, step):
        self.plan_steps([step])

    def _type_step(self, vf, value, action):
        self.add_step(dict(path=self.sysfs.vgpu_type_path(vf), value=value, wait=value, action=action))

    def _users(self, address, running_only=False):
        return self.call(
            "ask libvirt which guests use %s" % address, domains_using_pci, self.connection(), address, running_only
        )

    def _vf_of_domain(self):
        return next((vf for vf in sorted(self.vgpus) if self.params["name"] in self._users(vf)), None)

    def _choose_vf(self):
        """The VF of the domain ``name``, else one with the type that no domain uses, else a free one."""
        users = {vf: self._users(vf) for vf in sorted(self.vgpus)}
        name = self.params["name"]
        typed = [vf for vf in sorted(self.vgpus) if self.vgpus[vf]["current_type"] == self.type_id]
        for vf in typed:
            if name in users[vf]:
                return vf
        for vf in typed:
            if not users[vf]:
                return vf
        for vf in sorted(self.vgpus):
            vgpu = self.vgpus[vf]
            if not vgpu["current_type"] and not users[vf] and self.type_id in [t["type"] for t in vgpu["creatable"]]:
                return vf
        return None

    def plan_mdevctl(self):
        if not self.params["persistent"]:
            return
        if not mdevctl_installed(self.root):
            if self.state == "present":
                self.warnings.append(
                    "mdevctl is not installed, so the mediated device %s does not survive a reboot; install mdevctl "
                    "and run again, or create it again at boot." % self.uuid
                )
            return
        parent = self.parent if self.state == "present" else self._mdev_parent()
        path = mdevctl_path(self.root, parent, self.uuid)
        after = render_mdevctl(self.type_id) if self.state == "present" else None
        self.plan_file(path, after)

    def _mdev_parent(self):
        existing = self.sysfs.mdev_devices().get(self.uuid)
        return existing["parent"] if existing else self.parent

    # -- refuse -------------------------------------------------------------------------

    def refuse(self):
        if self.reasons:
            raise Refusal(self.reasons)
        if not self.steps:
            return
        if self.kind == "mdev":
            users = self.call(
                "ask libvirt which running guests use %s" % self.uuid, domains_using_mdev, self.connection(), self.uuid
            )
            refusals = [in_use_refusal("remove the mediated device", self.uuid, users)] if users else []
        else:
            refusals = self.users_refusals([self.vf], "change the vGPU type of")
        if refusals:
            raise Refusal(refusals)

    # -- apply --------------------------------------------------------------------------

    def apply(self):
        for step in self.steps:
            self.write(step["path"], step["value"], step["action"])
            self._wait(step)
        self.apply_file()

    def _wait(self, step):
        if self.kind == "mdev":
            present = self.state == "present"
            self.sysfs.wait_for(
                lambda: self.uuid in self.sysfs.mdev_devices(),
                lambda found: found == present,
                lambda _found: (
                    "The mediated device %s is %s after the request."
                    % (self.uuid, "missing" if present else "still there")
                ),
            )
            return
        self.sysfs.wait_for(
            lambda: str(self.sysfs.read_int("bus", "pci", "devices", self.vf, "nvidia", "current_vgpu_type")),
            lambda value: value == step["wait"],
            lambda value: "The vGPU type of %s is %s after %s was written." % (self.vf, value, step["wait"]),
        )

    # -- result -------------------------------------------------------------------------

    def result(self):
        vgpu = None
        if self.exists_after:
            vgpu = dict(
                kind=self.kind,
                parent=self.parent,
                type=self.type_id,
                type_name=self.type_name,
                uuid=self.uuid if self.kind == "mdev" else None,
                address=self.vf if self.kind == "sriov" else None,
            )
        before = None
        if self.state == "absent" and self.steps:
            before = dict(kind=self.kind, type=self.type_id, uuid=self.uuid, address=self.vf)
        elif self.state == "present" and not self.steps:
            before = dict(kind=self.kind, type=self.type_id, uuid=vgpu["uuid"], address=vgpu["address"])
        diff = DifferenceTracker()
        diff.add(
            "vgpu",
            before,
            {k: vgpu[k] for k in ("kind", "type", "uuid", "address")} if vgpu else None,
        )
        return self.finish(dict(vgpu=vgpu), diff)


def argument_spec():
    spec = dict(
        name=dict(type="str", required=True),
        parent=dict(type="str", required=True),
        type=dict(type="str"),
        uuid=dict(type="str"),
        vf=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        persistent=dict(type="bool", default=True),
    )
    spec.update(SYSFS_ARGUMENT_SPEC)
    spec.update(URI_ARGUMENT_SPEC)
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ("type",))],
        mutually_exclusive=[("uuid", "vf")],
        supports_check_mode=True,
    )
    check_libraries(module)
    run_host_module(module, VgpuManager)


if __name__ == "__main__":
    main()
