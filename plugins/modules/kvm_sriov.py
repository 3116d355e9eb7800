#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_sriov
short_description: Set the number of SR-IOV virtual functions of a GPU or NIC, and bind them for passthrough
version_added: 0.2.0
description:
  - Sets how many SR-IOV virtual functions (VFs) a physical function (PF) offers, through its
    C(sriov_numvfs), following the kernel's rules - the count changes only through the driver bound to the
    PF, never above C(sriov_totalvfs), and from a non-zero count only through 0, so a new count disables
    the VFs first.
  - With O(vf_driver=vfio) the VFs are for plain passthrough - the kernel stops probing host drivers for new
    VFs of the PF (C(sriov_drivers_autoprobe) 0) and each VF is bound to C(vfio-pci) (C(driver_override) and a
    re-probe), ready for M(iaas.kvm.kvm_vm)'s O(iaas.kvm.kvm_vm#module:gpus) (GPU VFs) or
    O(iaas.kvm.kvm_vm#module:vfs) (NIC VFs). With O(vf_driver=host) they stay on the driver the kernel
    picks (C(iavf) for a NIC VF; C(nvidia) for the VFs of an NVIDIA vGPU, see M(iaas.kvm.kvm_vgpu)), and VFs
    on C(vfio-pci) go back to it.
  - Refuses, having changed nothing, a count the PF does not offer, a PF without a driver, a change of the
    count while a running libvirt guest uses one of its VFs (asked at O(uri)), and VFs for C(vfio-pci) while the
    IOMMU is off.
  - Writes nothing when the PF already is as asked. In check mode it writes nothing and returns the writes
    it would make.
  - The count does not survive a reboot. With O(persistent=true) the module keeps udev rules that set it again
    when the PF's driver binds at boot (and bind the VFs of O(vf_driver=vfio) to C(vfio-pci) as they appear).
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  device:
    description: PCI address of the physical function (V(0000:3b:00.0) or V(3b:00.0)).
    type: str
    required: true
  num_vfs:
    description: The number of VFs it offers; V(0) disables them all.
    type: int
    required: true
  vf_driver:
    description:
      - V(vfio) binds the VFs to C(vfio-pci) for plain passthrough; V(host) leaves them on (or returns them to)
        the driver the kernel probes for them.
    type: str
    choices: [host, vfio]
    default: host
  persistent:
    description:
      - Keep C(<root>/etc/udev/rules.d/70-iaas-kvm-sriov.rules) - for every PF the module manages, a rule sets
        C(sriov_numvfs) when the PF's driver binds (a C(bind) event), after C(sriov_drivers_autoprobe) 0 for
        O(vf_driver=vfio), and a rule per VF sets its C(driver_override) to C(vfio-pci) and probes it when it
        appears. O(num_vfs=0) removes the PF from the file (and the file once it lists none).
      - Where the PF's driver has its own way (NVIDIA's C(sriov-manage) service for vGPU; a NIC driver's
        C(max_vfs) option), use that instead.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
  - iaas.kvm.sysfs
notes:
  - libvirt at O(uri) is asked only which guests use the VFs a change would remove or rebind; a libvirt guest
    that is defined but stopped and names a VF that goes away gets a warning.
  - The udev rules need udev (systemd-udevd) on the host; the tests check their text, not a boot.
seealso:
  - module: iaas.kvm.kvm_gpu_info
  - module: iaas.kvm.kvm_vgpu
  - module: iaas.kvm.kvm_vm
  - name: SR-IOV in the Linux kernel documentation
    description: The sriov_numvfs, sriov_totalvfs and sriov_drivers_autoprobe attributes.
    link: https://docs.kernel.org/PCI/pci-iov-howto.html
"""

EXAMPLES = r"""
- name: Eight VFs of the NIC for passthrough, at every boot too
  iaas.kvm.kvm_sriov:
    device: "0000:3b:00.0"
    num_vfs: 8
    vf_driver: vfio
    persistent: true
  register: nic

- name: A VM with the first VF of the NIC and a fixed MAC
  iaas.kvm.kvm_vm:
    name: rdma1
    memory: 8G
    vfs:
      - address: "{{ nic.vfs[0] }}"
        mac: "52:54:00:6b:00:01"

- name: Four VFs of an L40S for NVIDIA vGPU (they stay on the nvidia driver)
  iaas.kvm.kvm_sriov:
    device: "0000:41:00.0"
    num_vfs: 4

- name: No VFs any more
  iaas.kvm.kvm_sriov:
    device: "0000:3b:00.0"
    num_vfs: 0
    persistent: true
"""

RETURN = r"""
device:
  description: The physical function.
  returned: success
  type: str
  sample: "0000:3b:00.0"
num_vfs:
  description: Its number of VFs after the run (in check mode, what it would be).
  returned: success
  type: int
  sample: 8
vfs:
  description: The VFs after the run, each with its C(address) and C(driver) (in check mode, what they would be).
  returned: success
  type: list
  elements: dict
  sample: [{address: "0000:3b:02.0", driver: vfio-pci}]
actions:
  description: What the run did, in order (in check mode, what it would do; on a refusal, what it would have done).
  returned: always
  type: list
  elements: str
  sample: ["disable the 4 VFs of 0000:3b:00.0", "enable 8 VFs on 0000:3b:00.0"]
writes:
  description:
    - The writes made, in order (in check mode, the writes it would make). C(path) is a sysfs attribute or the
      rules file; C(value) is what was written to it, null where the file is removed.
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs, value: "0"}
    - {path: /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs, value: "8"}
commands:
  description: Commands the change ran (none, since the module only writes sysfs and one file).
  returned: always
  type: list
  elements: dict
  sample: []
persistent_file:
  description: The udev rules file of O(persistent), null without it.
  returned: success
  type: str
  sample: /etc/udev/rules.d/70-iaas-kvm-sriov.rules
refusals:
  description: Every reason the request was refused (the message holds the first).
  returned: failure
  type: list
  elements: str
  sample: ["Refusing to set 64 VFs on 0000:3b:00.0: it offers at most 8 (sriov_totalvfs)."]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._gpu import (
    GpuError,
    HostView,
    binding_refusals,
    plan_binding,
    run_steps,
    vfio_load_refusal,
)
from ansible_collections.iaas.kvm.plugins.module_utils._host_devices import (
    HostDeviceManager,
    Refusal,
    run_host_module,
)
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    check_libraries,
    domains_using_pci,
)
from ansible_collections.iaas.kvm.plugins.module_utils._sriov import (
    count_steps,
    read_rules,
    render_rules,
    rules_path,
    vf_addresses,
)
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import SYSFS_ARGUMENT_SPEC


class SriovManager(HostDeviceManager):
    """Plans the VF count and the VFs' driver, refuses what is unsafe, then applies it."""

    def __init__(self, module):
        super().__init__(module)
        self.vf_driver = self.params["vf_driver"]
        self.view = None
        self.pf = None
        self.sriov = None
        self.count_steps = []  # the writes of the count (then the kernel makes the VFs)
        self.bind_steps = []  # the writes that bind the VFs
        self.vfs = []
        self.new_vfs = {}  # devices the kernel has yet to create, as they will look
        self.drivers_before = {}

    def plan_all(self):
        self.plan_count()
        self.plan_vf_driver()
        self.plan_rules()

    # -- plan ---------------------------------------------------------------------------

    def plan_count(self):
        if self.params["num_vfs"] < 0:
            raise GpuError("num_vfs must not be negative, not %d." % self.params["num_vfs"])
        self.view = HostView(self.sysfs, self.root)
        self.pf = self.view.require(self.params["device"])
        self.sriov = self.sysfs.sriov(self.pf)
        if self.sriov is None:
            raise GpuError("%s is not an SR-IOV physical function (it has no sriov_totalvfs)." % self.pf)
        self.drivers_before = {a: self.view.devices[a]["driver"] for a in self.sriov["vfs"] if a in self.view.devices}
        wanted = self.params["num_vfs"]
        self.count_steps = count_steps(
            self.sysfs, self.pf, self.sriov["num_vfs"], wanted, self.sriov["drivers_autoprobe"], self.vf_driver
        )
        self.plan_steps(self.count_steps)
        if wanted == self.sriov["num_vfs"]:
            self.vfs = list(self.sriov["vfs"])
            return
        self.vfs = self._vf_addresses(self.pf, wanted)
        for address in self.vfs:
            self.new_vfs[address] = dict(address=address, driver=None, driver_override=None)

    def _vf_addresses(self, pf, count):
        offset = self.sysfs.read_int("bus", "pci", "devices", pf, "sriov_offset")
        stride = self.sysfs.read_int("bus", "pci", "devices", pf, "sriov_stride")
        if offset is None or stride is None:
            raise GpuError("%s does not say where its VFs sit (no sriov_offset or sriov_stride)." % pf)
        return vf_addresses(pf, offset, stride, count)

    def plan_vf_driver(self):
        """vfio: every VF on vfio-pci; host: VFs on vfio-pci back to their host driver. New VFs
        appear without a driver with vfio (autoprobe 0), on their host driver otherwise."""
        if self.vf_driver == "host" and self.new_vfs:
            return
        state = "vfio" if self.vf_driver == "vfio" else "host"
        self.bind_steps, _after = plan_binding(self.view, self.vfs, state, devices=self.new_vfs or None)
        self.plan_steps(self.bind_steps)

    def plan_rules(self):
        if not self.params["persistent"]:
            return
        path = rules_path(self.root)
        entries = read_rules(path)
        if self.params["num_vfs"]:
            entries[self.pf] = (self.params["num_vfs"], self.vf_driver)
        else:
            entries.pop(self.pf, None)
        self.plan_file(path, render_rules(entries, self._vf_addresses))

    # -- refuse -------------------------------------------------------------------------

    def refuse(self):
        refusals = []
        wanted, total = self.params["num_vfs"], self.sriov["total_vfs"]
        if wanted > total:
            refusals.append(
                "Refusing to set %d VFs on %s: it offers at most %d (sriov_totalvfs)." % (wanted, self.pf, total)
            )
        if self.count_steps and self.view.devices[self.pf]["driver"] is None:
            refusals.append(
                "Refusing to change the VFs of %s: no driver is bound to it, and the kernel changes VFs only "
                "through the driver of the physical function; bind its host driver first." % self.pf
            )
        if self.vf_driver == "vfio" and wanted:
            existing = [a for a in self.vfs if a in self.view.devices] if self.view.iommu["enabled"] else self.vfs
            refusals.extend(binding_refusals(self.view, existing, allow_boot_vga=True, allow_acs_override=True))
            refusal = vfio_load_refusal(self.view)
            if refusal and self.bind_steps:
                refusals.append(refusal)
        if refusals:
            raise Refusal(refusals)
        # Asked only once the request itself is sound: libvirt is needed only for a change.
        removed = self.sriov["vfs"] if self.count_steps else []
        rebound = sorted({s["address"] for s in self.bind_steps if s["address"] not in self.new_vfs})
        refusals.extend(self.users_refusals(removed, "remove the VF"))
        refusals.extend(self.users_refusals([a for a in rebound if a not in removed], "change the driver of"))
        if refusals:
            raise Refusal(refusals)
        self.warn_stopped_users([a for a in removed if a not in self.vfs])

    def warn_stopped_users(self, addresses):
        if not addresses:
            return
        conn = self.connection()
        for address in addresses:
            users = self.call("ask libvirt which guests use %s" % address, domains_using_pci, conn, address, False)
            if users:
                self.warnings.append(
                    "The VF %s goes away, and the stopped guest(s) %s name it; they cannot start until it is "
                    "back." % (address, ", ".join(users))
                )

    # -- apply --------------------------------------------------------------------------

    def apply(self):
        for step in self.count_steps:
            self.write(step["path"], step["value"], step["action"])
            if step["wait"] is not None:
                count = step["wait"]
                self.sysfs.wait_for(
                    lambda: len(self.sysfs.virtual_functions(self.pf)),
                    lambda found, count=count: found == count,
                    lambda found, count=count: (
                        "%s shows %d VFs, not %d, after %s was written to its sriov_numvfs."
                        % (self.pf, found, count, count)
                    ),
                )
        if self.count_steps:
            # The VFs exist now: bind them as they really are.
            self.view = HostView(self.sysfs, self.root)
            self.vfs = self.sysfs.virtual_functions(self.pf)
            self.new_vfs = {}
            self.bind_steps = []
            if self.vf_driver == "vfio":
                self.bind_steps, _after = plan_binding(self.view, self.vfs, "vfio")
        run_steps(self.sysfs, self.bind_steps, self.write)
        self.apply_file()

    # -- result -------------------------------------------------------------------------

    def _vf_driver_after(self, address):
        if not self.check:
            return self.sysfs.driver(address)
        if self.vf_driver == "vfio":
            return "vfio-pci"
        if address in self.new_vfs:
            return None  # the kernel's choice when it probes
        if address in {s["address"] for s in self.bind_steps}:
            return None
        return self.view.devices[address]["driver"]

    def result(self):
        num_vfs = self.params["num_vfs"] if self.check else self.sysfs.sriov(self.pf)["num_vfs"]
        vfs = [dict(address=a, driver=self._vf_driver_after(a)) for a in self.vfs]
        diff = DifferenceTracker()
        diff.add("num_vfs", self.sriov["num_vfs"], num_vfs)
        before_vfs = [dict(address=a, driver=self.drivers_before.get(a)) for a in self.sriov["vfs"]]
        diff.add("vfs", before_vfs, vfs)
        return self.finish(dict(device=self.pf, num_vfs=num_vfs, vfs=vfs), diff)


def argument_spec():
    spec = dict(
        device=dict(type="str", required=True),
        num_vfs=dict(type="int", required=True),
        vf_driver=dict(type="str", choices=["host", "vfio"], default="host"),
        persistent=dict(type="bool", default=False),
    )
    spec.update(SYSFS_ARGUMENT_SPEC)
    spec.update(URI_ARGUMENT_SPEC)
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    check_libraries(module)
    run_host_module(module, SriovManager)


if __name__ == "__main__":
    main()
