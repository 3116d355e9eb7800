#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_gpu_passthrough
short_description: Bind host GPUs to vfio-pci for passthrough, or return them to their host driver, safely
version_added: 0.1.0
description:
  - Binds the requested PCI devices, and every other function of their slots (a GPU's HDMI audio,
    USB-C and UCSI functions), to C(vfio-pci) through the kernel's C(driver_override) and a
    re-probe (O(state=vfio)), or returns them to the driver the kernel picks for them (O(state=host)).
  - Plans every write first and checks the plan before it writes anything - a refusal fails with a sentence
    that names the device and the reason, with C(changed=false) and the RV(actions) it would have done, having
    changed nothing, when the IOMMU is off; when an IOMMU group of the request holds another
    device on a host driver (anything but C(vfio-pci) or C(pci-stub); PCI bridges stay on their driver
    and do not count), unless that device is requested too; for the boot VGA device (the host's console)
    unless O(allow_boot_vga); for a device that a running libvirt guest uses (asked at O(uri); when
    libvirt cannot be reached the module says so and writes nothing); for an SR-IOV physical function
    with virtual functions enabled; and when the kernel runs with C(pcie_acs_override) unless
    O(allow_acs_override).
  - Writes nothing when the devices already are as requested. In check mode it writes nothing and
    returns in RV(writes) the exact writes it would make; in diff mode it shows each function's driver
    before and after. A failure after a write (the kernel refusing one, the boot-time file) returns
    C(changed=true) with the RV(actions) and RV(writes) done so far.
  - With O(persistent=true) it also writes the boot-time configuration, a modprobe.d file that binds
    the same functions, by address, at every boot, and rebuilds the initramfs. It never reboots.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  state:
    description:
      - V(vfio) binds the functions to C(vfio-pci), ready for a guest (use C(managed=no) hostdevs, which
        M(iaas.kvm.kvm_vm) does for functions already on C(vfio-pci)).
      - V(host) clears their C(driver_override) and hands the ones on C(vfio-pci) or C(pci-stub) back to the
        kernel, which binds the host driver that matches them (when one is loaded).
    type: str
    choices: [vfio, host]
    default: vfio
  devices:
    description:
      - PCI addresses of the devices (V(0000:01:00.0) or V(01:00.0)). The other functions of their slots
        join the request.
      - Another device of the same IOMMU group that sits on a host driver must be listed too for
        O(state=vfio) to proceed.
    type: list
    elements: str
  selector:
    description:
      - Pick the GPUs (display-class physical functions; list virtual functions in O(devices)) by their
        properties instead of listing addresses.
    type: dict
    suboptions:
      vendor:
        description: PCI vendor ID (V(10de)) or one of V(nvidia), V(amd), V(ati), V(intel).
        type: str
      device:
        description: PCI device ID (V(2330)).
        type: str
      numa_node:
        description: Only GPUs attached to this NUMA node.
        type: int
      count:
        description:
          - Take this many of the matching GPUs; those already in the requested O(state) count first,
            then the lowest addresses, so a second run picks the same GPUs. Fewer matches fail.
          - All matching GPUs when omitted.
        type: int
      board:
        description:
          - Every GPU and NVSwitch of this NVSwitch board (an HGX baseboard; M(iaas.kvm.kvm_gpu_info) numbers them in
            RV(iaas.kvm.kvm_gpu_info#module:boards)), for one VM that gets NVLink between its GPUs.
          - Excludes the other selector keys. Binding a part of a board warns that NVLink is not available in the
            guest unless the host runs NVIDIA's shared NVSwitch mode (Fabric Manager in a service VM that owns
            the NVSwitches), which the module does not set up.
        type: int
  persistent:
    description:
      - Also make the binding survive a reboot. The module keeps C(<root>/etc/modprobe.d/iaas-kvm-vfio.conf),
        which works per PCI address (so four of eight identical GPUs can stay on the host), vfio-pci's C(install)
        command sets C(driver_override) of the listed functions before it loads, and a C(softdep) makes each
        of their host drivers load vfio-pci first (the module of the driver that holds a function now, and
        every module whose alias in the running kernel's C(modules.alias) matches it). O(state=host) removes
        the functions from it (and the file once it lists none).
      - When the file changes, the initramfs is rebuilt (C(update-initramfs -u -k all) or
        C(dracut -f --regenerate-all), whichever the host has), so the configuration also applies where
        the host driver loads from the initramfs. Under a O(root) other than C(/) the command is not run,
        only reported in RV(commands).
      - A host driver built into the kernel binds before any module loads; the module then warns.
    type: bool
    default: false
  allow_boot_vga:
    description: Bind the boot VGA device too (the host loses its console on that card).
    type: bool
    default: false
  allow_acs_override:
    description:
      - Proceed although the kernel runs with C(pcie_acs_override), whose IOMMU groups do not prove that
        the devices are isolated from each other.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
  - iaas.kvm.sysfs
notes:
  - The module talks to libvirt at O(uri) only to ask which running guests use the devices it would
    change; the binding itself goes through sysfs on the host that runs the module.
  - Run M(iaas.kvm.kvm_gpu_info) first to see the GPUs, their IOMMU groups and what a request would meet.
seealso:
  - module: iaas.kvm.kvm_gpu_info
  - module: iaas.kvm.kvm_vm
  - name: VFIO in the Linux kernel documentation
    description: How vfio-pci, IOMMU groups and driver_override work.
    link: https://docs.kernel.org/driver-api/vfio.html
"""

EXAMPLES = r"""
- name: Give the GPU at 0000:01:00.0 (and its HDMI audio function) to vfio-pci
  iaas.kvm.kvm_gpu_passthrough:
    devices:
      - "0000:01:00.0"

- name: Four H100s of NUMA node 1, bound at every boot too
  iaas.kvm.kvm_gpu_passthrough:
    selector:
      vendor: nvidia
      device: "2330"
      numa_node: 1
      count: 4
    persistent: true
  register: gpus

- name: A GPU that shares its IOMMU group with a USB controller goes only with the controller
  iaas.kvm.kvm_gpu_passthrough:
    devices:
      - "0000:0a:00.0"
      - "0000:0b:00.0"

- name: Return the GPU to the host's driver
  iaas.kvm.kvm_gpu_passthrough:
    state: host
    devices:
      - "0000:01:00.0"
    persistent: true
"""

RETURN = r"""
actions:
  description:
    - What the run did, in order (in check mode, what it would do; on a refusal, what it would have done; on a
      failure after a change, what was done).
  returned: always
  type: list
  elements: str
  sample: ["bind 0000:01:00.0 to vfio-pci", "bind 0000:01:00.1 to vfio-pci", "write /etc/modprobe.d/iaas-kvm-vfio.conf"]
devices:
  description:
    - The functions of the request (the requested devices and the other functions of their slots), after
      the run. In check mode, what they would be; a function that would go back to the host shows
      C(driver) null there, since the kernel picks its driver when it probes.
  returned: success
  type: list
  elements: dict
  contains:
    address:
      description: PCI address of the function.
      type: str
      sample: "0000:01:00.1"
    requested:
      description: Whether it was requested itself (false for a function that joined with its slot).
      type: bool
      sample: true
    driver:
      description: The driver bound to it, null for none.
      type: str
      sample: vfio-pci
    driver_override:
      description: Its C(driver_override), null when unset.
      type: str
      sample: vfio-pci
    iommu_group:
      description: Its IOMMU group.
      type: int
      sample: 13
writes:
  description:
    - The writes made, in order (in check mode, the writes it would make). C(path) is a sysfs attribute or a
      configuration file; C(value) is what was written to it (a whole file's text), null where a file is removed.
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /sys/bus/pci/devices/0000:01:00.0/driver_override, value: vfio-pci}
    - {path: /sys/bus/pci/drivers/nvidia/unbind, value: "0000:01:00.0"}
    - {path: /sys/bus/pci/drivers_probe, value: "0000:01:00.0"}
commands:
  description:
    - Commands the change needs (C(modprobe vfio-pci) when the driver is not loaded, the initramfs rebuild
      after a change of the boot-time configuration), each with whether it ran. They do not run in check
      mode or under a O(root) other than C(/).
  returned: always
  type: list
  elements: dict
  sample: [{cmd: [update-initramfs, -u, -k, all], ran: true}]
reboot_required:
  description:
    - Whether this run changed the boot-time configuration (O(persistent)). The devices are bound already;
      the next boot is the first that binds them through the new configuration. The module never reboots.
  returned: success
  type: bool
  sample: false
persistent_file:
  description: The modprobe.d file of O(persistent), null without it.
  returned: success
  type: str
  sample: /etc/modprobe.d/iaas-kvm-vfio.conf
refusals:
  description: Every reason the request was refused (the message holds the first).
  returned: failure
  type: list
  elements: str
  sample:
    - "Refusing to bind 0000:01:00.0 to vfio-pci: it is the boot VGA device, the host's console; set allow_boot_vga to take it anyway."
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._gpu import (
    VFIO_DRIVER,
    GpuError,
    HostView,
    binding_refusals,
    binding_state,
    board_warnings,
    host_module,
    initramfs_command,
    plan_binding,
    plan_persistent,
    resolve_request,
    run_steps,
    vfio_load_refusal,
)
from ansible_collections.iaas.kvm.plugins.module_utils._host_devices import (
    HostDeviceManager,
    Refusal,
    run_host_module,
)
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import URI_ARGUMENT_SPEC, check_libraries
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import SYSFS_ARGUMENT_SPEC

SELECTOR_KEYS = ("vendor", "device", "numa_node", "count", "board")


class GpuPassthrough(HostDeviceManager):
    """Plans the binding of the requested functions, refuses what is unsafe, then applies it."""

    def __init__(self, module):
        super().__init__(module)
        self.state = self.params["state"]
        self.view = None
        self.requested = []
        self.targets = []
        self.predicted_bindings = {}

    def plan_all(self):
        self.validate()
        self.plan_binding()
        self.plan_persistent()
        self.plan_commands()

    # -- plan ---------------------------------------------------------------------------

    def validate(self):
        """What the argument spec cannot declare."""
        devices, selector = self.params["devices"], self.params["selector"]
        if devices is not None and not devices:
            raise GpuError("devices must list at least one PCI address.")
        if selector is not None and selector.get("count") is not None and selector["count"] < 1:
            raise GpuError("selector.count must be at least 1, not %d." % selector["count"])

    def plan_binding(self):
        self.view = HostView(self.sysfs, self.root)
        self.requested, self.targets = resolve_request(
            self.view, self.params["devices"], self.params["selector"], self.state
        )
        steps, self.predicted_bindings = plan_binding(self.view, self.targets, self.state)
        self.plan_steps(steps)
        if self.state == "vfio":
            self.warnings.extend(board_warnings(self.view, self.targets))

    def plan_persistent(self):
        if not self.params["persistent"]:
            return
        path, _before, after = plan_persistent(self.view, self.targets, self.state)
        self.plan_file(path, after)
        if self.state != "vfio":
            return
        for address in self.targets:
            driver = self.view.devices[address]["driver"]
            if driver and driver != VFIO_DRIVER and host_module(self.view, address) is None:
                self.warnings.append(
                    "The driver %s of %s is built into the kernel; it claims the device at boot "
                    "before vfio-pci can, so the binding will not survive a reboot." % (driver, address)
                )

    def plan_commands(self):
        if self.state == "vfio" and self.steps and not self.view.vfio_loaded():
            self.commands.append(dict(cmd=["modprobe", VFIO_DRIVER], ran=False))
            self.plan("load vfio-pci")
        if not self.file_changed:
            return
        initramfs = initramfs_command(self.root)
        if initramfs is None:
            self.warnings.append(
                "No initramfs tool (update-initramfs, dracut) was found; rebuild the initramfs by hand "
                "if the host driver loads from it."
            )
        else:
            self.commands.append(dict(cmd=initramfs, ran=False))
            self.plan("rebuild the initramfs")

    # -- refuse -------------------------------------------------------------------------

    def refuse(self):
        """Raise Refusal, before anything is written, when the plan is unsafe."""
        refusals = []
        if self.state == "vfio":
            refusals.extend(
                binding_refusals(
                    self.view, self.targets, self.params["allow_boot_vga"], self.params["allow_acs_override"]
                )
            )
            refusal = vfio_load_refusal(self.view)
            if refusal:
                refusals.append(refusal)
        changing = sorted({step["address"] for step in self.steps})
        refusals.extend(self.users_refusals(changing, "change the driver of"))
        if refusals:
            raise Refusal(refusals)

    # -- apply --------------------------------------------------------------------------

    def apply(self):
        for command in self.commands:
            if command["cmd"][0] == "modprobe":
                self.run_command(command, "load vfio-pci")
        for address in run_steps(self.sysfs, self.steps, self.write):
            self.warnings.append(
                "No host driver claimed %s after it left vfio-pci; load its driver, then run drivers_probe." % address
            )
        if not self.file_changed:
            return
        self.apply_file()
        for command in self.commands:
            if command["cmd"][0] == "modprobe":
                continue
            if self.root == "/":
                self.run_command(command, "rebuild the initramfs")
            else:
                self.warnings.append(
                    "The initramfs of %s was not rebuilt (root is not /); run %s inside it."
                    % (self.root, " ".join(command["cmd"]))
                )

    # -- result -------------------------------------------------------------------------

    def result(self):
        if self.check:
            after = self.predicted_bindings
        else:
            after = {
                a: dict(driver=self.sysfs.driver(a), driver_override=self.sysfs.driver_override(a))
                for a in self.targets
            }
        diff = DifferenceTracker()
        for address in self.targets:
            diff.add(address, binding_state(self.view.devices[address]), after[address])
        result = dict(
            devices=[
                dict(
                    address=address,
                    requested=address in self.requested,
                    driver=after[address]["driver"],
                    driver_override=after[address]["driver_override"],
                    iommu_group=self.view.devices[address]["iommu_group"],
                )
                for address in self.targets
            ],
            reboot_required=self.file_changed,
        )
        return self.finish(result, diff)


def argument_spec():
    spec = dict(
        state=dict(type="str", choices=["vfio", "host"], default="vfio"),
        devices=dict(type="list", elements="str"),
        selector=dict(
            type="dict",
            options=dict(
                vendor=dict(type="str"),
                device=dict(type="str"),
                numa_node=dict(type="int"),
                count=dict(type="int"),
                board=dict(type="int"),
            ),
            required_one_of=[SELECTOR_KEYS],
            mutually_exclusive=[("board", key) for key in SELECTOR_KEYS if key != "board"],
        ),
        persistent=dict(type="bool", default=False),
        allow_boot_vga=dict(type="bool", default=False),
        allow_acs_override=dict(type="bool", default=False),
    )
    spec.update(SYSFS_ARGUMENT_SPEC)
    spec.update(URI_ARGUMENT_SPEC)
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("devices", "selector")],
        required_one_of=[("devices", "selector")],
        supports_check_mode=True,
    )
    check_libraries(module)
    run_host_module(module, GpuPassthrough)


if __name__ == "__main__":
    main()
