# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_vm and the host its passed-through devices sit on.

Reads the host's sysfs (through ``_gpu.HostView``, below the ``root`` and
``sysfs_root`` options) for the functions of a GPU's slot, their drivers, NUMA
nodes and BAR sizes, and works out what the guest needs: the NUMA-faithful
topology (``_topology``), the 64-bit MMIO window and the physical address width
(``_mmio``). Where the task names a value, it wins; where it contradicts what
the devices need, the task fails with a sentence. Nothing is changed here.

A device sysfs does not show (another host's, the test driver's) has no facts:
it gets no topology and adds nothing to the window, as before these facts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

from ansible_collections.iaas.kvm.plugins.module_utils._domain import numa_node_cpus
from ansible_collections.iaas.kvm.plugins.module_utils._domain_xml import _amount_and_ceiling
from ansible_collections.iaas.kvm.plugins.module_utils._gpu import VFIO_DRIVER, HostView, bar64_sizes, board_warnings
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    normalise_pci_address,
    parse_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._mmio import (
    MmioError,
    check_window,
    choose_maxphysaddr,
    host_phys_bits,
    needed_phys_bits,
    window_mb,
)
from ansible_collections.iaas.kvm.plugins.module_utils._pci import slot_of
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import sysfs_from_params
from ansible_collections.iaas.kvm.plugins.module_utils._topology import plan

DEVICE_FIELDS = ("gpus", "vfs", "vgpus")


def needs_host(spec):
    """Whether the task's spec involves passed-through devices or what they need."""
    return any(f in spec for f in (*DEVICE_FIELDS, "topology", "maxphysaddr"))


class HostDevices:
    """The host's view of the VM's devices, read once."""

    def __init__(self, params):
        self.view = HostView(sysfs_from_params(params), params["root"])
        self.assume = set()
        for given in params.get("assume_vfio") or []:
            try:
                self.assume.add(normalise_pci_address(given))
            except ValueError as exc:
                raise LibvirtModuleError("assume_vfio: %s" % exc) from exc
        self._mdevs = None
        # The parents the task names for mediated devices that may not exist yet.
        self.mdev_parents = {}
        for vgpu in params.get("vgpus") or []:
            if vgpu.get("uuid") and vgpu.get("parent"):
                try:
                    parent = normalise_pci_address(vgpu["parent"])
                except ValueError as exc:
                    raise LibvirtModuleError("vgpus: parent %s" % exc) from exc
                self.mdev_parents[str(uuid.UUID(vgpu["uuid"]))] = parent

    def known(self, address):
        return address in self.view.devices

    def managed(self, address):
        """Whether libvirt must bind the device: not when it is on vfio-pci (or an earlier task binds it)."""
        if address in self.assume:
            return False
        return not self.known(address) or self.view.devices[address]["driver"] != VFIO_DRIVER

    def group(self, address):
        """The guest slot a function shares: its host slot, but a VF stands alone."""
        if self.known(address) and self.view.devices[address]["physfn"]:
            return address
        return slot_of(address)

    def expand_gpus(self, addresses):
        """``[{address, managed, group}]`` for every function of the slots of ``addresses``, or None
        when sysfs does not show one of them (libvirt's node devices are asked then)."""
        if not all(self.known(a) for a in addresses):
            return None
        result = []
        for address in addresses:
            for function in self.view.slot_functions(address):
                if function not in [g["address"] for g in result]:
                    result.append(dict(address=function, managed=self.managed(function), group=self.group(function)))
        return result

    def node(self, device):
        """The host NUMA node of a PCI address or a mediated device's UUID, None when unknown."""
        if device in self.view.devices:
            return self.view.devices[device]["numa_node"]
        if self._mdevs is None:
            self._mdevs = self.view.sysfs.mdev_devices()
        parent = (self._mdevs.get(device) or {}).get("parent") or self.mdev_parents.get(device)
        return self.view.devices[parent]["numa_node"] if parent in self.view.devices else None

    def bars(self, address):
        return bar64_sizes(self.view.devices[address]) if self.known(address) else []


def _final(spec, facts, field):
    """The VM's devices of ``field`` after this run: the task's, else what it has."""
    if field in spec:
        return spec[field]
    return (facts or {}).get(field) or []


def _ceiling(spec, facts, key, ceiling_key, default):
    if ceiling_key in spec:
        return spec[ceiling_key]
    if facts and facts.get(key) is not None:
        return _amount_and_ceiling(spec, facts, key, ceiling_key)[1]
    return spec.get(key, default)


def _devices(host, spec, facts):
    """``(ids with nodes, 64-bit BAR sizes per guest slot)`` of every passed-through device."""
    nodes = []
    slots = {}
    for gpu in _final(spec, facts, "gpus"):
        address = gpu if isinstance(gpu, str) else gpu["address"]
        nodes.append((address, host.node(address)))
        slots.setdefault(host.group(address), []).extend(host.bars(address))
    for vf in _final(spec, facts, "vfs"):
        nodes.append((vf["address"], host.node(vf["address"])))
        slots[vf["address"]] = host.bars(vf["address"])
    for vgpu in _final(spec, facts, "vgpus"):
        key = vgpu["uuid"] or vgpu["address"]
        nodes.append((key, host.node(key)))
        if vgpu["address"]:
            slots[vgpu["address"]] = host.bars(vgpu["address"])
    return nodes, list(slots.values())


def _node_cpus(host, conn, nodes):
    result = {}
    capabilities = None
    for node in nodes:
        cpus = host.view.sysfs.node_cpus(node)
        if cpus is None:
            if capabilities is None:
                capabilities = parse_xml(conn.getCapabilities())
            cpus = numa_node_cpus(capabilities, node)
        if not cpus:
            raise LibvirtModuleError("The host's NUMA node %d has no CPUs to pin the guest's vCPUs to." % node)
        result[node] = cpus
    return result


def resolve_topology(host, spec, facts, params, conn):
    """``spec['topology']``: the plan for ``topology: host`` (the default of a VM with devices whose
    NUMA nodes the host shows), None for ``flat``; left out when neither applies."""
    wanted = spec.get("topology")
    if wanted == "flat":
        spec["topology"] = None
        return
    devices, _slots = _devices(host, spec, facts)
    nodes = sorted({node for _id, node in devices if node is not None})
    if not nodes:
        if wanted == "host":
            raise LibvirtModuleError(
                "topology host needs the host NUMA nodes of the VM's GPUs, VFs or vGPUs, and sysfs (%s) shows none; "
                "set topology: flat." % host.view.sysfs.path("bus", "pci", "devices")
            )
        spec.pop("topology", None)
        return
    if wanted is None and not any(f in spec for f in DEVICE_FIELDS):
        return
    if "numa_node" in spec and nodes != [spec["numa_node"]]:
        raise LibvirtModuleError(
            "numa_node %d contradicts topology host: the VM's devices sit on host NUMA node(s) %s; leave numa_node out, "
            "or set topology: flat to pin the VM to node %d anyway."
            % (spec["numa_node"], ", ".join(str(n) for n in nodes), spec["numa_node"])
        )
    memory = _ceiling(spec, facts, "memory", "memory_max", None)
    if memory is None:
        return  # a new VM without memory: kvm_vm says so
    vcpus = _ceiling(spec, facts, "vcpus", "vcpus_max", 1)
    spec["topology"] = plan(devices, _node_cpus(host, conn, nodes), vcpus, memory)


def _window(spec, current, needed, firmware):
    """The 64-bit window the VM gets: the task's, else the VM's own where it is enough, else the
    computed one (then in ``spec``)."""
    kept = current.get("mmio64_mb")
    if spec.get("mmio64_mb") is None and kept and needed and kept >= needed and firmware != "bios":
        return kept
    window = check_window(needed, spec.get("mmio64_mb"), firmware)
    if window is not None:
        spec["mmio64_mb"] = window
    return window


def resolve_addressing(host, spec, facts, params, conn):
    """``spec['mmio64_mb']`` and ``spec['maxphysaddr']`` from the devices' 64-bit BARs. Left out of
    the task, the VM's own values stay while they are enough."""
    _nodes, slots = _devices(host, spec, facts)
    needed = window_mb(slots)
    current = facts or {}
    has_devices = any(_final(spec, facts, f) for f in DEVICE_FIELDS)
    firmware = spec.get("firmware") or current.get("firmware") or ("uefi" if has_devices and not facts else "bios")
    try:
        window = _window(spec, current, needed, firmware)
        memory = _ceiling(spec, facts, "memory", "memory_max", None)
        if memory is None or not (needed or "maxphysaddr" in spec):
            return
        need = needed_phys_bits(memory, window if firmware != "bios" else None)  # None: the default window
        choose = (
            need,
            host_phys_bits(parse_xml(conn.getCapabilities()), params["root"]),
            spec.get("cpu_mode") or current.get("cpu_mode"),
            conn.getLibVersion(),
        )
        if spec.get("maxphysaddr") is None and current.get("maxphysaddr") is not None:
            try:
                choose_maxphysaddr(*choose, explicit=current["maxphysaddr"])
                return  # what the VM has is enough
            except MmioError:
                pass
        choice = choose_maxphysaddr(*choose, explicit=spec.get("maxphysaddr"))
    except MmioError as exc:
        raise LibvirtModuleError(str(exc)) from exc
    if choice is not None:
        spec["maxphysaddr"] = choice


def resolve(spec, facts, params, conn, hints, warnings):
    """Everything the VM's devices need, into ``spec`` (and ``hints['vf_managed']``); board warnings."""
    host = HostDevices(params)
    if "gpus" in spec:
        warnings.extend(board_warnings(host.view, [g["address"] for g in spec["gpus"]]))
    hints["vf_managed"] = {vf["address"]: host.managed(vf["address"]) for vf in spec.get("vfs", [])}
    resolve_topology(host, spec, facts, params, conn)
    resolve_addressing(host, spec, facts, params, conn)
    return host
