# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPUs for passthrough: facts, the safety checks, and the plan of sysfs writes.

Shared by kvm_gpu_info (facts and the refusals a request would meet) and
kvm_gpu_passthrough (which binds). All host I/O goes through
:class:`~._sysfs.Sysfs` (the sysfs root) and, for the boot-time configuration,
files below the ``root`` prefix; commands run through a callable the module
passes in.

The rules (docs/architecture.md, "GPU groups"): the other functions of a requested slot join the request (a GPU's
HDMI audio and USB-C functions cannot stay on the host while the GPU leaves);
PCI bridges in an IOMMU group stay on their driver; any other device of the
group on a host driver (not vfio-pci or pci-stub) makes the request fail unless
it is requested too, since the whole group goes to the guest at once.

NVSwitches (NVIDIA bridges of class 0x0680 on HGX boards) join the GPUs of
their board into one NVLink fabric; :func:`boards` says which GPUs share one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.iaas.kvm.plugins.module_utils._files import read_text
from ansible_collections.iaas.kvm.plugins.module_utils._host_devices import HostDeviceError, in_use_refusal
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    call,
    call_with_connection,
    domains_using_pci,
    etree,
    normalise_pci_address,
    parse_xml,
    to_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._mmio import window_mb
from ansible_collections.iaas.kvm.plugins.module_utils._pci import hostdev_element, slot_of
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import (
    HOST_PROBE_TIMEOUT,
    SysfsError,
    iommu_state,
    kernel_cmdline,
    modules_for_modaliases,
    pci_names,
)

VFIO_DRIVER = "vfio-pci"
# Drivers that leave a device harmless to the rest of a group that goes to a guest.
VFIO_COMPATIBLE_DRIVERS = (VFIO_DRIVER, "pci-stub")
DISPLAY_CLASSES = {0x0300: "VGA compatible controller", 0x0302: "3D controller"}
# NVSwitch chips show as "other bridge" devices of NVIDIA.
NVSWITCH_CLASS = 0x0680
NVIDIA_VENDOR = "10de"
# PCI-to-PCI bridges (normal and subtractive decode) stay on their driver (pcieport).
BRIDGE_CLASSES = (0x0604, 0x0609)
VENDOR_ALIASES = {"nvidia": "10de", "amd": "1002", "ati": "1002", "intel": "8086"}

PERSISTENT_FILE = os.path.join("etc", "modprobe.d", "iaas-kvm-vfio.conf")
_MODULE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_DEVICE_LINE_RE = re.compile(r"^# device ([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) (\S+)$")
# Modules that never need a softdep on vfio-pci (vfio-pci itself and the stub).
_NOT_HOST_MODULES = ("vfio_pci", "vfio-pci", "pci_stub", "pci-stub")
# Where the module looks for the tools it runs, below ``root``.
_TOOL_DIRS = ("usr/sbin", "sbin", "usr/bin", "bin")


class GpuError(HostDeviceError):
    """A request the module cannot or must not carry out, as a sentence."""


def _base_class(device):
    return (device.get("pci_class") or 0) >> 8


def is_display(device):
    return _base_class(device) in DISPLAY_CLASSES


def is_bridge(device):
    return _base_class(device) in BRIDGE_CLASSES


def is_nvswitch(device):
    return device.get("vendor_id") == NVIDIA_VENDOR and (device.get("pci_class") or 0) >> 8 == NVSWITCH_CLASS


def bar64_sizes(device):
    return [b["size"] for b in device["bars"] if b["is_64bit"]]


def normalise_vendor(value):
    """``10de`` for ``nvidia``, ``0x10de`` or ``10DE``; GpuError for anything else."""
    text = str(value).strip().lower()
    text = VENDOR_ALIASES.get(text, text)
    if text.startswith("0x"):
        text = text[2:]
    if not re.match(r"^[0-9a-f]{4}$", text):
        raise GpuError(
            "selector.vendor %r is not a PCI vendor ID such as 10de or a name among %s."
            % (value, ", ".join(sorted(VENDOR_ALIASES)))
        )
    return text


def normalise_device_id(value):
    text = str(value).strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if not re.match(r"^[0-9a-f]{4}$", text):
        raise GpuError("selector.device %r is not a PCI device ID such as 2330." % (value,))
    return text


class HostView:
    """One reading of the host: every PCI function, the IOMMU groups and state, the command line."""

    def __init__(self, sysfs, root="/"):
        self.sysfs = sysfs
        self.root = root
        self.cmdline = kernel_cmdline(root)
        self.iommu = iommu_state(sysfs, self.cmdline)
        self.devices = {address: sysfs.device(address) for address in sysfs.addresses()}
        self.groups = sysfs.iommu_groups()

    def require(self, address):
        """The device at ``address`` (normalised), or GpuError."""
        try:
            address = normalise_pci_address(address)
        except ValueError as exc:
            raise GpuError(str(exc)) from exc
        if address not in self.devices:
            raise GpuError("There is no PCI device %s on this host (%s)." % (address, self.sysfs.path("bus", "pci")))
        return address

    def gpus(self):
        return sorted(a for a, d in self.devices.items() if is_display(d))

    def nvswitches(self):
        return sorted(a for a, d in self.devices.items() if is_nvswitch(d))

    def boards(self):
        """The NVSwitch boards (HGX): ``[{id, gpus, nvswitches}]``, empty without NVSwitches.

        sysfs does not name the board a GPU sits on. The GPUs of one HGX board are
        identical SXM modules with the board's subsystem ID, so the board is the largest
        group of NVIDIA GPUs (physical functions) sharing device and subsystem IDs,
        together with every NVSwitch of the host (an HGX server has one board's
        fabric); a PCIe card added to such a host has other IDs and stays out.
        """
        switches = self.nvswitches()
        if not switches:
            return []
        groups = {}
        for address in self.gpus():
            device = self.devices[address]
            if device["vendor_id"] != NVIDIA_VENDOR or device["physfn"]:
                continue
            key = (device["device_id"], device["subsystem_vendor_id"], device["subsystem_device_id"])
            groups.setdefault(key, []).append(address)
        if not groups:
            return []
        members = sorted(groups.values(), key=lambda found: (-len(found), found))[0]
        return [dict(id=0, gpus=members, nvswitches=switches)]

    def board_of(self, address):
        for board in self.boards():
            if address in board["gpus"] or address in board["nvswitches"]:
                return board["id"]
        return None

    def slot_functions(self, address):
        """Every function of ``address``'s slot except bridges, sorted (the GPU's audio, USB-C...).

        SR-IOV virtual functions stand alone: they share a slot with their
        physical function (or with each other) without belonging together.
        """
        if self.devices[address]["physfn"]:
            return [address]
        slot = slot_of(address)
        return sorted(a for a, d in self.devices.items() if slot_of(a) == slot and not is_bridge(d) and not d["physfn"])

    def group_members(self, address):
        group = self.devices[address]["iommu_group"]
        if group is None:
            return []
        return sorted(self.groups.get(group, []))

    def vfio_loaded(self):
        return self.sysfs.driver_loaded(VFIO_DRIVER)


# -- facts -------------------------------------------------------------------------


def _member_facts(view, address, requested):
    device = view.devices.get(address) or {}
    return dict(
        address=address,
        vendor_id=device.get("vendor_id"),
        device_id=device.get("device_id"),
        pci_class="0x%06x" % device["pci_class"] if device.get("pci_class") is not None else None,
        driver=device.get("driver"),
        bridge=is_bridge(device),
        same_slot=slot_of(address) in [slot_of(a) for a in requested],
    )


def hostdev_snippet(view, address):
    """``<hostdev>`` elements for every function of the GPU's slot, as kvm_vm's ``gpus`` makes them:
    managed='no' for a function already on vfio-pci, managed='yes' (libvirt binds it) otherwise."""
    return "".join(
        to_xml(hostdev_element(function, managed=view.devices[function]["driver"] != VFIO_DRIVER))
        for function in view.slot_functions(address)
    )


def slot_bars(view, address):
    """The 64-bit BAR sizes of every function of ``address``'s slot (one guest root port)."""
    return [size for function in view.slot_functions(address) for size in bar64_sizes(view.devices[function])]


def vgpu_types(view, address):
    """The vGPU types a GPU offers: mediated-device types of the device itself, and for an
    SR-IOV physical function the NVIDIA vGPU types its VFs can take, each with how many
    instances are left (VFs that offer the type and have none yet)."""
    device = view.devices[address]
    found = [
        dict(kind="mdev", type=t["type"], name=t["name"], available_instances=t["available_instances"] or 0)
        for t in device["mdev_types"]
    ]
    per_type = {}
    for vf in view.sysfs.virtual_functions(address) if device["sriov_total_vfs"] else []:
        vgpu = view.sysfs.nvidia_vgpu(vf)
        if vgpu is None:
            continue
        for entry in vgpu["creatable"]:
            kind = per_type.setdefault(
                entry["type"], dict(kind="sriov", type=entry["type"], name=entry["name"], vfs=[])
            )
            if vgpu["current_type"] is None:
                kind["vfs"].append(vf)
    for entry in sorted(per_type.values(), key=lambda e: int(e["type"])):
        entry["available_instances"] = len(entry["vfs"])
        found.append(entry)
    return found


def gpu_facts(view, address, names, used_by=None):
    """The facts kvm_gpu_info returns for one GPU."""
    device = view.devices[address]
    functions = view.slot_functions(address)
    bar64 = sum(bar64_sizes(device))
    sriov = view.sysfs.sriov(address)
    members = [_member_facts(view, m, [address]) for m in view.group_members(address)]
    vendor, device_id = device["vendor_id"], device["device_id"]
    refusals = binding_refusals(view, functions, allow_boot_vga=False, allow_acs_override=False)
    if used_by:
        refusals.append(guest_refusal(address, used_by))
    return dict(
        address=address,
        slot=slot_of(address),
        vendor_id=vendor,
        device_id=device_id,
        subsystem_vendor_id=device["subsystem_vendor_id"],
        subsystem_device_id=device["subsystem_device_id"],
        vendor_name=names.get((vendor,)),
        device_name=names.get((vendor, device_id)),
        pci_class="0x%06x" % device["pci_class"],
        class_name=DISPLAY_CLASSES[_base_class(device)],
        driver=device["driver"],
        driver_override=device["driver_override"],
        functions=[_member_facts(view, f, [address]) for f in functions],
        iommu_group=device["iommu_group"],
        iommu_group_members=members,
        numa_node=device["numa_node"],
        local_cpus=device["local_cpus"],
        boot_vga=device["boot_vga"],
        reset_methods=device["reset_methods"],
        bars=device["bars"],
        bar64_bytes=bar64,
        mmio64_mb=window_mb([slot_bars(view, address)]),
        sriov=sriov,
        physfn=device["physfn"],
        mdev_types=device["mdev_types"],
        vgpu_types=vgpu_types(view, address),
        vgpu=view.sysfs.nvidia_vgpu(address) if device["physfn"] else None,
        board=view.board_of(address),
        used_by=used_by,
        passthrough_ready=not refusals,
        refusals=refusals,
        hostdev_xml=hostdev_snippet(view, address) if etree is not None else None,
    )


def gather_gpus(view, users=None):
    """Facts of every GPU and the 64-bit MMIO window that all of them together need."""
    addresses = view.gpus()
    wanted = set()
    for address in addresses:
        device = view.devices[address]
        wanted.add((device["vendor_id"], device["device_id"]))
    names = pci_names(view.root, wanted)
    gpus = [gpu_facts(view, a, names, None if users is None else users.get(a, [])) for a in addresses]
    slots = {}
    for address in addresses:
        slots[tuple(view.slot_functions(address))] = slot_bars(view, address)
    return gpus, window_mb(list(slots.values()))


def nvswitch_facts(view):
    """The NVSwitches of the host, with the facts a passthrough of them needs."""
    return [
        dict(
            address=address,
            device_id=view.devices[address]["device_id"],
            driver=view.devices[address]["driver"],
            iommu_group=view.devices[address]["iommu_group"],
            numa_node=view.devices[address]["numa_node"],
            board=view.board_of(address),
        )
        for address in view.nvswitches()
    ]


def board_facts(view):
    """The boards, each with the NUMA nodes of its GPUs."""
    return [
        dict(board, numa_nodes=sorted({view.devices[a]["numa_node"] for a in board["gpus"]} - {None}))
        for board in view.boards()
    ]


def board_warnings(view, targets):
    """A sentence per NVSwitch board of which ``targets`` holds some GPUs but not the whole board."""
    warnings = []
    for board in view.boards():
        whole = set(board["gpus"]) | set(board["nvswitches"])
        taken = sorted(whole & set(targets))
        if taken and not whole <= set(targets):
            warnings.append(
                "%s belong to NVSwitch board %d but its other GPUs and NVSwitches are not passed along: NVLink "
                "is not available in the guest unless the host runs NVIDIA's shared NVSwitch mode (Fabric Manager "
                "in a service VM that owns the NVSwitches); pass the whole board with selector board: %d."
                % (", ".join(taken), board["id"], board["id"])
            )
    return warnings


# -- requests --------------------------------------------------------------------------


def board_devices(view, board_id):
    """The GPUs and NVSwitches of board ``board_id``."""
    for board in view.boards():
        if board["id"] == board_id:
            return sorted(board["gpus"] + board["nvswitches"])
    known = ", ".join(str(b["id"]) for b in view.boards()) or "none: the host has no NVSwitch"
    raise GpuError("There is no NVSwitch board %s on this host (boards: %s)." % (board_id, known))


def select_gpus(view, selector, state):
    """GPUs (physical functions) matching ``selector``; with ``count``, those already in
    ``state`` first, then by address, so a second run picks the same ones."""
    if selector.get("board") is not None:
        return board_devices(view, selector["board"])
    vendor = normalise_vendor(selector["vendor"]) if selector.get("vendor") else None
    device_id = normalise_device_id(selector["device"]) if selector.get("device") else None
    node = selector.get("numa_node")
    matches = []
    for address in view.gpus():
        device = view.devices[address]
        if device["physfn"]:
            continue
        if vendor and device["vendor_id"] != vendor:
            continue
        if device_id and device["device_id"] != device_id:
            continue
        if node is not None and device["numa_node"] != node:
            continue
        matches.append(address)
    count = selector.get("count")
    if count is None:
        if not matches:
            raise GpuError("The selector %s matches no GPU on this host." % _describe(selector))
        return matches
    if count > len(matches):
        raise GpuError(
            "The selector %s matches %d GPU(s) (%s), fewer than count %d."
            % (_describe(selector), len(matches), ", ".join(matches) or "none", count)
        )

    def in_state(address):
        on_vfio = view.devices[address]["driver"] == VFIO_DRIVER
        return on_vfio if state == "vfio" else not on_vfio

    ordered = sorted(matches, key=lambda a: (not in_state(a), a))
    return sorted(ordered[:count])


def _describe(selector):
    parts = [
        "%s=%s" % (k, selector[k]) for k in ("vendor", "device", "numa_node", "count") if selector.get(k) is not None
    ]
    return "(%s)" % (", ".join(parts) or "any GPU")


def resolve_request(view, devices=None, selector=None, state="vfio"):
    """The requested addresses and the targets: every function of their slots."""
    if devices is not None:
        requested = []
        for given in devices:
            address = view.require(given)
            if is_bridge(view.devices[address]):
                raise GpuError("%s is a PCI bridge; bridges stay on their driver." % address)
            if address not in requested:
                requested.append(address)
    else:
        requested = select_gpus(view, selector, state)
    targets = []
    for address in requested:
        for function in view.slot_functions(address):
            if function not in targets:
                targets.append(function)
    return sorted(requested), sorted(targets)


def _device_words(view, address):
    device = view.devices[address]
    return "%s (class 0x%06x, on %s)" % (
        address,
        device["pci_class"] or 0,
        "driver %s" % device["driver"] if device["driver"] else "no driver",
    )


def binding_refusals(view, targets, allow_boot_vga, allow_acs_override):
    """Sentences that forbid binding ``targets`` to vfio-pci; empty when it is safe."""
    names = ", ".join(targets)
    if not view.iommu["enabled"]:
        return [
            "Refusing to bind %s to vfio-pci: the IOMMU is off (%s); turn on VT-d or AMD-Vi in the firmware "
            "and intel_iommu=on or amd_iommu=on on the kernel command line (the iaas.kvm.gpu_host role does), "
            "then reboot." % (names, view.iommu["evidence"].rstrip("."))
        ]
    refusals = []
    acs = view.iommu["acs_override"]
    if acs is not None and not allow_acs_override:
        refusals.append(
            "Refusing to bind %s to vfio-pci: the kernel runs with pcie_acs_override=%s, which splits IOMMU "
            "groups without isolation in hardware; set allow_acs_override to accept that." % (names, acs)
        )
    seen_groups = set()
    for address in targets:
        device = view.devices[address]
        if device["boot_vga"] and not allow_boot_vga:
            refusals.append(
                "Refusing to bind %s to vfio-pci: it is the boot VGA device, the host's console; "
                "set allow_boot_vga to take it anyway." % address
            )
        if device["sriov_num_vfs"]:
            refusals.append(
                "Refusing to bind %s to vfio-pci: it is an SR-IOV physical function with %d virtual functions "
                "enabled; set its sriov_numvfs to 0 first, or pass a virtual function instead."
                % (address, device["sriov_num_vfs"])
            )
        group = device["iommu_group"]
        if group is None:
            refusals.append(
                "Refusing to bind %s to vfio-pci: it has no IOMMU group although the IOMMU is on." % address
            )
            continue
        if group in seen_groups:
            continue
        seen_groups.add(group)
        for member in view.group_members(address):
            if member in targets:
                continue
            other = view.devices.get(member)
            if other is None or is_bridge(other) or other["driver"] in (None, *VFIO_COMPATIBLE_DRIVERS):
                continue
            refusals.append(
                "Refusing to bind %s to vfio-pci: IOMMU group %d is not viable, it also holds %s, which would "
                "have to leave the host too; list it in devices as well or move the card to another slot."
                % (address, group, _device_words(view, member))
            )
    return refusals


def guests_using(uri, addresses):
    """``(({address: [running guests]}, host capabilities), None)``, or ``(None, sentence)`` when
    libvirt at ``uri`` cannot be asked."""

    def ask(conn):
        users = {a: call("ask libvirt which running guests use %s" % a, domains_using_pci, conn, a) for a in addresses}
        return users, parse_xml(call("read the host capabilities", conn.getCapabilities))

    return call_with_connection(uri, ask)


def guest_refusal(address, users):
    return in_use_refusal("change the driver of", address, users)


def vfio_load_refusal(view):
    """A sentence when vfio-pci is not loaded and the module must not load it (a root prefix)."""
    if view.vfio_loaded() or view.root == "/":
        return None
    return "The vfio-pci driver is not loaded (no %s) and the module loads it only when root is /." % (
        view.sysfs.path("bus", "pci", "drivers", VFIO_DRIVER)
    )


# -- the plan of writes ---------------------------------------------------------------


def binding_state(device):
    return dict(driver=device["driver"], driver_override=device["driver_override"])


def plan_binding(view, targets, state, devices=None):
    """``(steps, predicted)``: the sysfs writes that bring ``targets`` to ``state`` (each a dict
    with address, path, value and what to wait for after it) and the binding they lead to.
    ``devices`` may stand in for ``view.devices`` (devices the kernel has yet to create)."""
    sysfs = view.sysfs
    steps = []
    predicted = {}
    for address in targets:
        device = (devices or view.devices)[address]
        driver, override = device["driver"], device["driver_override"]
        after = binding_state(device)
        if state == "vfio":
            action = "bind %s to vfio-pci" % address
            if override != VFIO_DRIVER:
                steps.append(_step(address, sysfs.override_path(address), VFIO_DRIVER, None, action))
            if driver != VFIO_DRIVER:
                if driver:
                    steps.append(_step(address, sysfs.unbind_path(driver), address, "unbound", action))
                steps.append(_step(address, sysfs.probe_path(), address, "vfio", action))
            after = dict(driver=VFIO_DRIVER, driver_override=VFIO_DRIVER)
        else:
            action = "return %s to its host driver" % address
            if override is not None:
                # A lone newline clears driver_override (an empty write would not reach the kernel).
                steps.append(_step(address, sysfs.override_path(address), "\n", None, action))
                after["driver_override"] = None
            if driver in VFIO_COMPATIBLE_DRIVERS:
                steps.append(_step(address, sysfs.unbind_path(driver), address, "unbound", action))
            if driver in VFIO_COMPATIBLE_DRIVERS or (driver is None and override is not None):
                steps.append(_step(address, sysfs.probe_path(), address, "host", action))
                # Which host driver claims it is the kernel's choice; unknown until it probes.
                after["driver"] = None
        predicted[address] = after
    return steps, predicted


def _step(address, path, value, wait, action):
    return dict(address=address, path=path, value=value, wait=wait, action=action)


def run_steps(sysfs, steps, write):
    """Carry out ``steps`` in order through ``write(path, value, action)`` (which records
    each write as it happens, so a failure still reports what was written), waiting for
    the kernel after each bind or unbind; return the addresses no host driver claimed."""
    unclaimed = []
    for step in steps:
        write(step["path"], step["value"], step["action"])
        address = step["address"]
        if step["wait"] == "unbound":
            sysfs.wait_for_driver(address, lambda driver: driver is None)
        elif step["wait"] == "vfio":
            sysfs.wait_for_driver(address, lambda driver: driver == VFIO_DRIVER)
        elif step["wait"] == "host":
            try:
                sysfs.wait_for_driver(address, lambda driver: driver is not None, timeout=HOST_PROBE_TIMEOUT)
            except SysfsError:
                unclaimed.append(address)
    return unclaimed


# -- the boot-time configuration (persistent: true) -------------------------------------


def persistent_path(root):
    return os.path.join(root, PERSISTENT_FILE)


def read_persistent(path):
    """``{address: [host modules]}`` from the module's modprobe.d file (empty when absent)."""
    entries = {}
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return entries
    for line in lines:
        match = _DEVICE_LINE_RE.match(line.strip())
        if match:
            modules = match.group(2)
            entries[match.group(1)] = [] if modules == "-" else modules.split(",")
    return entries


def render_persistent(entries):
    """The modprobe.d file for ``entries``, or None when no device is left.

    Per address, not per vendor:device ID, so that four of eight identical GPUs
    can stay on the host. When modprobe loads vfio-pci, its ``install`` command
    first sets driver_override of each listed function, so vfio-pci claims
    them as it loads; a ``softdep`` makes each host driver load vfio-pci first.
    """
    if not entries:
        return None
    addresses = sorted(entries)
    modules = sorted({m for found in entries.values() for m in found})
    lines = [
        "# Managed by iaas.kvm.kvm_gpu_passthrough (persistent: true); changes here are overwritten.",
        "# vfio-pci claims these PCI functions at boot: its install command sets their driver_override",
        "# before it loads, and their host drivers load vfio-pci first (softdep).",
    ]
    lines.extend("# device %s %s" % (a, ",".join(entries[a]) or "-") for a in addresses)
    lines.extend("softdep %s pre: vfio-pci" % m for m in modules)
    lines.append(
        "install vfio-pci for dev in %s; do if [ -e /sys/bus/pci/devices/$dev/driver_override ]; then "
        "echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override; fi; done; "
        "/sbin/modprobe --ignore-install vfio-pci $CMDLINE_OPTS" % " ".join(addresses)
    )
    return "\n".join(lines) + "\n"


def host_module(view, address):
    """The kernel module of the host driver that holds ``address`` now; None for none, for
    vfio-pci or pci-stub, and for a driver built into the kernel."""
    driver = view.devices[address]["driver"]
    if not driver or driver in VFIO_COMPATIBLE_DRIVERS:
        return None
    module = view.sysfs.driver_module(driver)
    return module if module and _MODULE_RE.match(module) else None


def host_modules(view, targets):
    """``{address: [modules]}``: the module of the host driver that holds the device now, and
    every module whose alias matches the device's modalias (what modprobe loads for it at boot)."""
    aliases = modules_for_modaliases(view.root, [view.devices[a]["modalias"] for a in targets])
    result = {}
    for address in targets:
        found = set(aliases.get(view.devices[address]["modalias"], []))
        module = host_module(view, address)
        if module:
            found.add(module)
        result[address] = sorted(m for m in found if m not in _NOT_HOST_MODULES and _MODULE_RE.match(m))
    return result


def plan_persistent(view, targets, state):
    """``(path, before, after)`` texts of the boot-time configuration (None: no file)."""
    path = persistent_path(view.root)
    before = read_text(path)
    entries = read_persistent(path)
    modules = host_modules(view, targets) if state == "vfio" else {}
    for address in targets:
        if state == "vfio":
            # Kept from earlier runs too, so a device that sits on vfio-pci now keeps its host modules.
            entries[address] = sorted(set(modules[address]) | set(entries.get(address, [])))
        else:
            entries.pop(address, None)
    return path, before, render_persistent(entries)


def initramfs_command(root):
    """The command that rebuilds the initramfs on this host (initramfs-tools or dracut), or None."""
    for tool, argv in (
        ("update-initramfs", ["update-initramfs", "-u", "-k", "all"]),
        ("dracut", ["dracut", "-f", "--regenerate-all"]),
    ):
        for directory in _TOOL_DIRS:
            if os.path.isfile(os.path.join(root, directory, tool)):
                return argv
    return None
