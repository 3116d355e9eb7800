# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's PCI devices, drivers and IOMMU as the kernel shows them in sysfs.

The one seam for I/O is the sysfs root: :class:`Sysfs` reads and writes only
below it, so a test points it at a fake tree (with a fake kernel behind the
``bind``/``unbind``/``drivers_probe`` files) and a module runs unchanged.
Reads never raise for a missing or unreadable attribute (the kernel leaves out
what a device does not have); writes raise :class:`SysfsError` with a sentence.

Binding follows the kernel's rules: a driver without an ID table for the device
(vfio-pci) only takes it through ``driver_override`` and a re-probe, and only a
bound device can be unbound.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import os
import re
import time

# Flags of the lines of a device's ``resource`` file (include/linux/ioport.h).
IORESOURCE_IO = 0x00000100
IORESOURCE_MEM = 0x00000200
IORESOURCE_PREFETCH = 0x00002000
IORESOURCE_MEM_64 = 0x00100000
# The first six lines of ``resource`` are the BARs (the seventh is the ROM).
BAR_COUNT = 6

# How long the module waits for the kernel to finish a bind or unbind it asked for.
SETTLE_TIMEOUT = 10.0
# How long it waits for a host driver to claim a device it re-probed (none may match).
HOST_PROBE_TIMEOUT = 2.0

_ADDRESS_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")

# Kernel command line flags that tell about the IOMMU and VFIO.
_IOMMU_FLAG_RE = re.compile(
    r"^(intel_iommu|amd_iommu|iommu|iommu\.passthrough|iommu\.strict|pcie_acs_override|vfio-pci\.ids|vfio_pci\.ids"
    r"|vfio_iommu_type1\.allow_unsafe_interrupts)(=|$)"
)


# Merged into the argument_spec of the modules that read the host's kernel interfaces
# (documented once in the iaas.kvm.sysfs doc fragment).
SYSFS_ARGUMENT_SPEC = dict(root=dict(type="path", default="/"), sysfs_root=dict(type="path"))


# ``ID : name`` lines of NVIDIA's creatable_vgpu_types (a header line comes first).
_VGPU_TYPE_LINE_RE = re.compile(r"^\s*(\d+)\s*:\s*(\S.*)$")


class SysfsError(Exception):
    """A write to sysfs that the kernel refused, as a sentence."""


class Sysfs:
    """Reads and writes below one sysfs root (``/sys`` on a real host)."""

    def __init__(self, root="/sys"):
        self.root = root

    # -- plain reads ---------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, *parts):
        """The stripped text of an attribute, or None when it is missing or unreadable."""
        try:
            with open(self.path(*parts)) as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def read_int(self, *parts):
        text = self.read(*parts)
        if text is None or text == "":
            return None
        try:
            return int(text, 0)
        except ValueError:
            return None

    def link_name(self, *parts):
        """The last component of a symlink's target (a driver or group name), or None."""
        try:
            return os.path.basename(os.readlink(self.path(*parts)))
        except OSError:
            return None

    def listdir(self, *parts):
        try:
            return sorted(os.listdir(self.path(*parts)))
        except OSError:
            return []

    def exists(self, *parts):
        return os.path.lexists(self.path(*parts))

    # -- PCI devices -----------------------------------------------------------

    def addresses(self):
        """Every PCI function the kernel knows, sorted."""
        return [name for name in self.listdir("bus", "pci", "devices") if _ADDRESS_RE.match(name)]

    def driver(self, address):
        return self.link_name("bus", "pci", "devices", address, "driver")

    def driver_override(self, address):
        """The device's driver_override, None when it is unset (the kernel shows ``(null)``)."""
        text = self.read("bus", "pci", "devices", address, "driver_override")
        if text in (None, "", "(null)"):
            return None
        return text

    def device(self, address):
        """Everything sysfs tells about one PCI function, as a plain dictionary."""

        def attr(name):
            return self.read("bus", "pci", "devices", address, name)

        def hex_id(name):
            value = self.read_int("bus", "pci", "devices", address, name)
            return "%04x" % value if value is not None else None

        numa = self.read_int("bus", "pci", "devices", address, "numa_node")
        pci_class = self.read_int("bus", "pci", "devices", address, "class")
        group = self.link_name("bus", "pci", "devices", address, "iommu_group")
        total_vfs = self.read_int("bus", "pci", "devices", address, "sriov_totalvfs")
        reset = attr("reset_method")
        boot_vga = attr("boot_vga")
        return dict(
            address=address,
            vendor_id=hex_id("vendor"),
            device_id=hex_id("device"),
            subsystem_vendor_id=hex_id("subsystem_vendor"),
            subsystem_device_id=hex_id("subsystem_device"),
            pci_class=pci_class,
            driver=self.driver(address),
            driver_override=self.driver_override(address),
            iommu_group=int(group) if group is not None and group.isdigit() else None,
            numa_node=numa if numa is not None and numa >= 0 else None,
            local_cpus=attr("local_cpulist"),
            boot_vga=boot_vga == "1",
            reset_methods=reset.split() if reset else [],
            bars=self.bars(address),
            sriov_total_vfs=total_vfs,
            sriov_num_vfs=self.read_int("bus", "pci", "devices", address, "sriov_numvfs") if total_vfs else None,
            physfn=self._physfn(address),
            mdev_types=self.mdev_types(address),
            modalias=attr("modalias"),
        )

    # -- SR-IOV and vGPU -------------------------------------------------------

    def virtual_functions(self, address):
        """The addresses of a physical function's enabled VFs (its ``virtfn<N>`` links), in VF order."""
        found = []
        for name in self.listdir("bus", "pci", "devices", address):
            if name.startswith("virtfn") and name[6:].isdigit():
                target = self.link_name("bus", "pci", "devices", address, name)
                if target and _ADDRESS_RE.match(target):
                    found.append((int(name[6:]), target))
        return [target for _index, target in sorted(found)]

    def sriov(self, address):
        """A physical function's SR-IOV attributes, or None for a device without SR-IOV."""
        total = self.read_int("bus", "pci", "devices", address, "sriov_totalvfs")
        if not total:
            return None
        autoprobe = self.read_int("bus", "pci", "devices", address, "sriov_drivers_autoprobe")
        return dict(
            total_vfs=total,
            num_vfs=self.read_int("bus", "pci", "devices", address, "sriov_numvfs") or 0,
            vfs=self.virtual_functions(address),
            drivers_autoprobe=None if autoprobe is None else bool(autoprobe),
            vf_device_id=self.read("bus", "pci", "devices", address, "sriov_vf_device"),
        )

    def numvfs_path(self, address):
        return self.path("bus", "pci", "devices", address, "sriov_numvfs")

    def autoprobe_path(self, address):
        return self.path("bus", "pci", "devices", address, "sriov_drivers_autoprobe")

    def nvidia_vgpu(self, address):
        """NVIDIA's vGPU attributes of a virtual function (``nvidia/current_vgpu_type`` and
        ``nvidia/creatable_vgpu_types``), or None where the driver offers none."""
        text = self.read("bus", "pci", "devices", address, "nvidia", "creatable_vgpu_types")
        current = self.read_int("bus", "pci", "devices", address, "nvidia", "current_vgpu_type")
        if text is None and current is None:
            return None
        creatable = []
        for line in (text or "").splitlines():
            match = _VGPU_TYPE_LINE_RE.match(line)
            if match:
                creatable.append(dict(type=match.group(1), name=match.group(2).strip()))
        return dict(current_type=str(current) if current else None, creatable=creatable)

    def vgpu_type_path(self, address):
        return self.path("bus", "pci", "devices", address, "nvidia", "current_vgpu_type")

    def mdev_devices(self):
        """``{uuid: {parent, type}}`` of the mediated devices in /sys/bus/mdev/devices."""
        result = {}
        for uuid in self.listdir("bus", "mdev", "devices"):
            try:
                real = os.path.realpath(self.path("bus", "mdev", "devices", uuid))
            except OSError:
                continue
            parent = os.path.basename(os.path.dirname(real))
            result[uuid.lower()] = dict(
                parent=parent if _ADDRESS_RE.match(parent) else None,
                type=self.link_name("bus", "mdev", "devices", uuid, "mdev_type"),
            )
        return result

    def mdev_create_path(self, address, mdev_type):
        return self.path("bus", "pci", "devices", address, "mdev_supported_types", mdev_type, "create")

    def mdev_remove_path(self, uuid):
        return self.path("bus", "mdev", "devices", uuid, "remove")

    # -- NUMA ------------------------------------------------------------------

    def node_cpus(self, node):
        """The CPU list of host NUMA node ``node`` (``0-55,112-167``), or None."""
        return self.read("devices", "system", "node", "node%d" % node, "cpulist") or None

    def _physfn(self, address):
        name = self.link_name("bus", "pci", "devices", address, "physfn")
        return name if name and _ADDRESS_RE.match(name) else None

    def bars(self, address):
        """The device's memory BARs: index, size in bytes, 64-bit or not, prefetchable or not."""
        text = self.read("bus", "pci", "devices", address, "resource")
        result = []
        if not text:
            return result
        for index, line in enumerate(text.splitlines()[:BAR_COUNT]):
            fields = line.split()
            if len(fields) != 3:
                continue
            try:
                start, end, flags = (int(field, 16) for field in fields)
            except ValueError:
                continue
            if not flags & IORESOURCE_MEM or end <= start:
                continue
            result.append(
                dict(
                    index=index,
                    size=end - start + 1,
                    is_64bit=bool(flags & IORESOURCE_MEM_64),
                    prefetchable=bool(flags & IORESOURCE_PREFETCH),
                )
            )
        return result

    def mdev_types(self, address):
        """Mediated device types the device offers (vGPU profiles), with free instances."""
        base = ("bus", "pci", "devices", address, "mdev_supported_types")
        result = []
        for name in self.listdir(*base):
            result.append(
                dict(
                    type=name,
                    name=self.read(*base, name, "name"),
                    available_instances=self.read_int(*base, name, "available_instances"),
                )
            )
        return result

    # -- drivers ---------------------------------------------------------------

    def driver_loaded(self, name):
        return os.path.isdir(self.path("bus", "pci", "drivers", name))

    def driver_module(self, name):
        """The kernel module that provides a loaded driver; None for a built-in driver."""
        return self.link_name("bus", "pci", "drivers", name, "module")

    # -- IOMMU ---------------------------------------------------------------

    def iommu_groups(self):
        """``{group number: [member addresses]}`` from /sys/kernel/iommu_groups."""
        groups = {}
        for name in self.listdir("kernel", "iommu_groups"):
            if name.isdigit():
                groups[int(name)] = [
                    member
                    for member in self.listdir("kernel", "iommu_groups", name, "devices")
                    if _ADDRESS_RE.match(member)
                ]
        return groups

    def iommu_units(self):
        """The IOMMU hardware units the kernel drives (``dmar0``, ``ivhd0``...)."""
        return self.listdir("class", "iommu")

    # -- writes ----------------------------------------------------------------

    def write(self, path, value):
        """Write ``value`` to the attribute at ``path`` in one write, as ``echo`` would."""
        try:
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise SysfsError("The kernel refused %r written to %s: %s." % (value, path, reason)) from exc

    def override_path(self, address):
        return self.path("bus", "pci", "devices", address, "driver_override")

    def unbind_path(self, driver):
        return self.path("bus", "pci", "drivers", driver, "unbind")

    def probe_path(self):
        return self.path("bus", "pci", "drivers_probe")

    def wait_for_driver(self, address, accept, timeout=SETTLE_TIMEOUT):
        """Poll until ``accept(driver)`` holds for the device; return the driver or raise SysfsError.

        A real kernel binds and unbinds before the write returns; waiting keeps
        the module right where probing finishes a moment later.
        """
        return self.wait_for(
            lambda: self.driver(address),
            accept,
            lambda driver: (
                "%s is bound to %s %.0f seconds after the request, not as asked."
                % (address, driver or "no driver", timeout)
            ),
            timeout,
        )

    def wait_for(self, read, accept, failure, timeout=SETTLE_TIMEOUT):
        """Poll ``read()`` until ``accept(value)``; return the value, or raise SysfsError with
        ``failure(value)`` after ``timeout`` seconds (a real kernel is done when the write returns)."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            value = read()
            if accept(value):
                return value
            if time.monotonic() >= deadline:
                raise SysfsError(failure(value))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def sysfs_from_params(params):
    """The :class:`Sysfs` that a module's ``root`` and ``sysfs_root`` options name."""
    return Sysfs(params["sysfs_root"] or os.path.join(params["root"], "sys"))


def kernel_cmdline(root="/"):
    """The running kernel's command line from ``<root>/proc/cmdline`` (empty when unreadable)."""
    try:
        with open(os.path.join(root, "proc", "cmdline")) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def cmdline_value(cmdline, name):
    """The value of ``name=value`` on a kernel command line (the last one wins), or None."""
    value = None
    for token in cmdline.split():
        key, _sep, rest = token.partition("=")
        if key == name:
            value = rest
    return value


def iommu_state(sysfs, cmdline):
    """Whether the IOMMU is on, with the evidence: units, populated groups, command line flags."""
    units = sysfs.iommu_units()
    groups = sysfs.iommu_groups()
    flags = [token for token in cmdline.split() if _IOMMU_FLAG_RE.match(token)]
    enabled = bool(groups)
    if enabled:
        evidence = "%d IOMMU groups under %s" % (len(groups), sysfs.path("kernel", "iommu_groups"))
        if units:
            evidence += ", IOMMU units %s" % ", ".join(units)
    else:
        evidence = "no IOMMU groups under %s" % sysfs.path("kernel", "iommu_groups")
        evidence += (
            ", IOMMU units %s" % ", ".join(units) if units else ", no IOMMU unit in %s" % sysfs.path("class", "iommu")
        )
    if flags:
        evidence += ", kernel command line: %s" % " ".join(flags)
    return dict(
        enabled=enabled,
        groups=len(groups),
        units=units,
        cmdline_flags=flags,
        passthrough_mode=cmdline_value(cmdline, "iommu") == "pt" or cmdline_value(cmdline, "iommu.passthrough") == "1",
        acs_override=cmdline_value(cmdline, "pcie_acs_override"),
        evidence=evidence + ".",
    )


def modules_for_modaliases(root, modaliases):
    """``{modalias: [modules]}``: the kernel modules whose aliases match each device's modalias,
    from ``<root>/lib/modules/<running release>/modules.alias``, as modprobe matches them; empty
    lists where the host has no such file."""
    result = {alias: [] for alias in modaliases if alias}
    try:
        with open(os.path.join(root, "proc", "sys", "kernel", "osrelease")) as handle:
            release = handle.read().strip()
        with open(os.path.join(root, "lib", "modules", release, "modules.alias")) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return result
    for line in lines:
        fields = line.split()
        if len(fields) != 3 or fields[0] != "alias" or not fields[1].startswith("pci:"):
            continue
        for alias, modules in result.items():
            if fnmatch.fnmatchcase(alias, fields[1]) and fields[2] not in modules:
                modules.append(fields[2])
    return result


# -- PCI names (pci.ids, where the host has it) -----------------------------------

PCI_IDS_PATHS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids", "usr/share/pci.ids")


def pci_names(root, wanted):
    """``{(vendor,): name, (vendor, device): name}`` for the ``(vendor, device)`` pairs in
    ``wanted``, read from the host's pci.ids; empty when the host has none."""
    vendors = {vendor for vendor, _device in wanted}
    names = {}
    for relative in PCI_IDS_PATHS:
        path = os.path.join(root, relative)
        if not os.path.isfile(path):
            continue
        vendor = None
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.startswith("C "):
                        break  # the class list follows the vendors
                    if not line.strip() or line.startswith("#"):
                        continue
                    if not line.startswith("\t"):
                        vendor = line[:4].lower()
                        if vendor in vendors:
                            names[(vendor,)] = line[4:].strip()
                    elif not line.startswith("\t\t") and vendor in vendors:
                        device = line[1:5].lower()
                        if (vendor, device) in wanted:
                            names[(vendor, device)] = line[5:].strip()
        except OSError:
            continue
        break
    return names
