# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domains, read side: the managed fields of a domain definition (``facts``),
the user's spec normalised to the same shape, and the comparison of the two.

kvm_vm compares ``normalise_spec(params)`` with ``domain_facts(tree)`` of the
inactive definition; kvm_vm_info returns ``domain_facts``. The write side
(building and merging XML) lives in ``_domain_xml``, the life cycle (start,
stop, undefine, addresses) in ``_domain_life``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import re

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    hostdev_address,
    normalise_pci_address,
)
from ansible_collections.iaas.kvm.plugins.module_utils._passthrough import (
    device_facts,
    is_vgpu_hostdev,
    project_passthrough,
)
from ansible_collections.iaas.kvm.plugins.module_utils._units import SizeError, parse_size

# The cloud-init seed cdrom carries this user alias, so a later run finds it
# among the disks (libvirt keeps ``ua-`` aliases in the inactive definition).
SEED_ALIAS = "ua-iaas-seed"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
MMIO64_FW_CFG = "opt/ovmf/X-PciMmio64Mb"

STATES = ("present", "running", "stopped", "paused", "absent")
DOMAIN_TYPES = ("kvm", "qemu")
CPU_MODES = ("host-passthrough", "host-model", "maximum")
FIRMWARES = ("bios", "uefi")
GRAPHICS = ("none", "vnc", "spice")
DISK_DEVICES = ("disk", "cdrom")
DISK_BUSES = ("virtio", "scsi", "sata", "ide", "usb")

# The fields of a spec (mutually exclusive with ``xml``), in the order the diff shows them.
SPEC_FIELDS = (
    "domain_type",
    "machine",
    "cpu_mode",
    "firmware",
    "vcpus",
    "vcpus_max",
    "memory",
    "memory_max",
    "numa_node",
    "hugepages",
    "mmio64_mb",
    "disks",
    "cloudinit_seed",
    "interfaces",
    "gpus",
    "vfs",
    "vgpus",
    "topology",
    "maxphysaddr",
    "console_log",
    "guest_agent",
    "graphics",
)

# libvirt's virDomainState numbers, as the module reports them.
STATE_NAMES = {
    0: "nostate",
    1: "running",
    2: "running",  # blocked on a resource: the guest runs
    3: "paused",
    4: "shutting_down",
    5: "stopped",
    6: "crashed",
    7: "pmsuspended",
}

_UNIT_KIB = {
    "b": 1.0 / 1024,
    "bytes": 1.0 / 1024,
    "k": 1,
    "kb": 1000.0 / 1024,
    "kib": 1,
    "m": 1024,
    "mb": 1000**2 / 1024.0,
    "mib": 1024,
    "g": 1024**2,
    "gb": 1000**3 / 1024.0,
    "gib": 1024**2,
    "t": 1024**3,
    "tb": 1000**4 / 1024.0,
    "tib": 1024**3,
}
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def state_name(state_code):
    return STATE_NAMES.get(state_code, "unknown")


# ---------------------------------------------------------------------------
# Reading a definition
# ---------------------------------------------------------------------------


def xml_kib(element):
    """The size in an element such as ``<memory unit='MiB'>2</memory>``, in KiB."""
    if element is None or not (element.text or "").strip():
        return None
    unit = (element.get("unit") or "KiB").lower()
    if unit not in _UNIT_KIB:
        raise LibvirtModuleError("Unknown memory unit %r in the domain definition." % element.get("unit"))
    return round(int(element.text.strip()) * _UNIT_KIB[unit])


def _mib(kib):
    if kib is None:
        return None
    return kib // 1024 if kib % 1024 == 0 else kib / 1024.0


def _int(text, default=None):
    try:
        return int(str(text).strip(), 0)
    except (TypeError, ValueError):
        return default


def disk_facts(disk):
    """Source, device, bus, target, format and boot order of one ``<disk>``."""
    source = disk.find("./source")
    target = disk.find("./target")
    driver = disk.find("./driver")
    boot = disk.find("./boot")
    src = source if source is not None else {}
    facts = dict(
        device=disk.get("device", "disk"),
        bus=target.get("bus") if target is not None else None,
        target=target.get("dev") if target is not None else None,
        format=driver.get("type") if driver is not None else None,
        boot_order=_int(boot.get("order")) if boot is not None else None,
        readonly=disk.find("./readonly") is not None,
        path=None,
        pool=None,
        volume=None,
    )
    if disk.get("type") == "volume":
        facts["pool"] = src.get("pool")
        facts["volume"] = src.get("volume")
    else:
        facts["path"] = src.get("file") or src.get("dev") or src.get("dir") or src.get("name")
    return facts


def is_seed_disk(disk):
    alias = disk.find("./alias")
    return alias is not None and alias.get("name") == SEED_ALIAS


def interface_facts(iface):
    source = iface.find("./source")
    mac = iface.find("./mac")
    model = iface.find("./model")
    kind = iface.get("type")
    return dict(
        type=kind,
        network=source.get("network") if source is not None and kind == "network" else None,
        bridge=source.get("bridge") if source is not None and kind == "bridge" else None,
        mac=mac.get("address").lower() if mac is not None and mac.get("address") else None,
        model=model.get("type") if model is not None else None,
    )


def _firmware(os_el):
    if os_el is None:
        return "bios"
    if os_el.get("firmware") == "efi":
        return "uefi"
    loader = os_el.find("./loader")
    if loader is not None and (loader.get("type") == "pflash" or "OVMF" in (loader.text or "").upper()):
        return "uefi"
    return "bios"


def _mmio64(tree):
    args = [a.get("value") or "" for a in tree.findall("./{%s}commandline/{%s}arg" % (QEMU_NS, QEMU_NS))]
    prefix = "name=%s,string=" % MMIO64_FW_CFG
    for index, value in enumerate(args):
        if value == "-fw_cfg" and index + 1 < len(args) and args[index + 1].startswith(prefix):
            return _int(args[index + 1][len(prefix) :])
    return None


def domain_facts(tree):
    """The managed fields of a domain definition (inactive or live) as a dict."""
    os_el = tree.find("./os")
    type_el = os_el.find("./type") if os_el is not None else None
    vcpu = tree.find("./vcpu")
    vcpus_max = _int(vcpu.text, 1) if vcpu is not None else 1
    memory_max = xml_kib(tree.find("./memory"))
    current = xml_kib(tree.find("./currentMemory"))
    cpu = tree.find("./cpu")
    cpu_mode = None
    if cpu is not None:
        cpu_mode = cpu.get("mode") or ("custom" if cpu.find("./model") is not None else None)
    disks, seed = [], None
    for disk in tree.findall("./devices/disk"):
        if is_seed_disk(disk) and seed is None:
            seed = disk_facts(disk)
        else:
            disks.append(disk_facts(disk))
    numa = tree.find("./numatune/memory")
    serial_log = tree.find("./devices/serial[@type='pty']/log")
    if serial_log is None:
        serial_log = tree.find("./devices/console[@type='pty']/log")
    graphics = tree.find("./devices/graphics")
    channels = tree.findall("./devices/channel/target[@type='virtio']")
    gpus = []
    for hostdev in tree.findall("./devices/hostdev[@type='pci']"):
        address = hostdev_address(hostdev)
        if address and not is_vgpu_hostdev(hostdev):
            gpus.append(dict(address=address, managed=hostdev.get("managed", "no") == "yes"))
    facts = dict(
        name=tree.findtext("./name"),
        uuid=tree.findtext("./uuid"),
        domain_type=tree.get("type"),
        arch=type_el.get("arch") if type_el is not None else None,
        machine=type_el.get("machine") if type_el is not None else None,
        firmware=_firmware(os_el),
        cpu_mode=cpu_mode,
        vcpus=_int(vcpu.get("current"), vcpus_max) if vcpu is not None else 1,
        vcpus_max=vcpus_max,
        memory=_mib(current if current is not None else memory_max),
        memory_max=_mib(memory_max),
        numa_node=_int(numa.get("nodeset")) if numa is not None else None,
        hugepages=tree.find("./memoryBacking/hugepages") is not None,
        mmio64_mb=_mmio64(tree),
        disks=disks,
        cloudinit_seed=seed,
        # A VF of vfs is an <interface type='hostdev'>, not one of these.
        interfaces=[interface_facts(i) for i in tree.findall("./devices/interface") if i.get("type") != "hostdev"],
        gpus=sorted(gpus, key=lambda g: g["address"]),
        console_log=serial_log.get("file") if serial_log is not None else None,
        guest_agent=any(c.get("name") == GUEST_AGENT_CHANNEL for c in channels),
        graphics=graphics.get("type") if graphics is not None else "none",
    )
    facts.update(device_facts(tree))
    return facts


def numa_node_cpus(capabilities, node):
    """``'0,1,2,3'``: the host CPUs of NUMA ``node`` from the parsed host capabilities."""
    cell = capabilities.find("./host/topology/cells/cell[@id='%d']" % node)
    if cell is None:
        nodes = [c.get("id") for c in capabilities.findall("./host/topology/cells/cell")]
        raise LibvirtModuleError(
            "The host has no NUMA node %d (it has %s)." % (node, ", ".join(nodes) or "no NUMA information")
        )
    cpus = sorted(int(c.get("id")) for c in cell.findall("./cpus/cpu"))
    return ",".join(str(c) for c in cpus) or None


def default_domain_type(capabilities):
    """``kvm`` when the host offers it for its own architecture, else ``qemu``."""
    arch = capabilities.findtext("./host/cpu/arch")
    for guest in capabilities.findall("./guest"):
        arch_el = guest.find("arch")
        if (
            guest.findtext("os_type") == "hvm"
            and arch_el is not None
            and arch_el.get("name") == arch
            and arch_el.find("domain[@type='kvm']") is not None
        ):
            return "kvm"
    return "qemu"


def agent_connected(live_tree):
    """True when the live definition says the guest agent's channel is connected."""
    for target in live_tree.findall("./devices/channel/target[@type='virtio']"):
        if target.get("name") == GUEST_AGENT_CHANNEL and target.get("state") == "connected":
            return True
    return False


# ---------------------------------------------------------------------------
# The user's spec
# ---------------------------------------------------------------------------


def _size_mib(value, name):
    try:
        size = parse_size(value, default_unit="MiB", name=name)
    except SizeError as exc:
        raise LibvirtModuleError(str(exc)) from exc
    if size <= 0:
        raise LibvirtModuleError("%s must be at least 1 MiB, got %r." % (name, value))
    if size % (1024 * 1024):
        raise LibvirtModuleError("%s must be a whole number of MiB, got %r." % (name, value))
    return size // (1024 * 1024)


def _source(entry, what):
    """``{'pool': p, 'volume': v, 'path': None}`` or ``{'path': p, ...}`` of a disk or seed."""
    volume, path = entry.get("volume"), entry.get("path")
    if bool(volume) == bool(path):
        raise LibvirtModuleError("Each %s needs exactly one of volume (with pool) or path." % what)
    if path:
        if not os.path.isabs(path):
            raise LibvirtModuleError("The %s path %r must be absolute." % (what, path))
        return dict(path=os.path.normpath(path), pool=None, volume=None)
    return dict(path=None, pool=entry.get("pool") or "default", volume=volume)


def normalise_seed(value):
    if isinstance(value, str):
        return _source(dict(path=value), "cloudinit_seed")
    if isinstance(value, dict):
        unknown = set(value) - {"volume", "pool", "path"}
        if unknown:
            raise LibvirtModuleError(
                "cloudinit_seed takes volume and pool (or a path), not %s." % ", ".join(sorted(unknown))
            )
        return _source(value, "cloudinit_seed")
    raise LibvirtModuleError("cloudinit_seed must be a path on the hypervisor or a dict with volume and pool.")


def normalise_disk(entry, index):
    disk = _source(entry, "disk")
    device = entry.get("device") or "disk"
    if device not in DISK_DEVICES:
        raise LibvirtModuleError("disks[%d].device must be disk or cdrom, got %r." % (index, device))
    boot_order = entry.get("boot_order")
    if boot_order is not None and boot_order < 1:
        raise LibvirtModuleError("disks[%d].boot_order must be 1 or more, got %d." % (index, boot_order))
    disk.update(device=device, bus=entry.get("bus"), boot_order=boot_order, format=entry.get("format"))
    return disk


def normalise_mac(value, what):
    """A unicast MAC address in lower case (None stays None); LibvirtModuleError otherwise."""
    if value is None:
        return None
    mac = value.strip().lower()
    if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise LibvirtModuleError("%s %r is not a unicast MAC address." % (what, value))
    return mac


def normalise_interface(entry, index):
    network, bridge = entry.get("network"), entry.get("bridge")
    if bool(network) == bool(bridge):
        raise LibvirtModuleError("interfaces[%d] needs exactly one of network or bridge." % index)
    mac = normalise_mac(entry.get("mac"), "interfaces[%d].mac" % index)
    return dict(
        type="network" if network else "bridge",
        network=network or None,
        bridge=bridge or None,
        mac=mac,
        model=entry.get("model"),
    )


def normalise_spec(params):
    """The spec fields the user gave, validated and in the shape of ``domain_facts``.

    Fields the user left out are absent from the result. Raises
    LibvirtModuleError with one sentence on the first bad value. References
    to libvirt objects (volumes, networks, host devices) are checked later,
    against the hypervisor.
    """
    spec = {}
    _normalise_settings(params, spec)
    _normalise_resources(params, spec)
    _normalise_devices(params, spec)
    return spec


def _normalise_settings(params, spec):
    for key in ("domain_type", "machine", "cpu_mode", "firmware", "graphics", "console_log"):
        if params.get(key) is not None:
            spec[key] = params[key]
    for key in ("guest_agent", "hugepages"):
        if params.get(key) is not None:
            spec[key] = bool(params[key])
    if "console_log" in spec and not os.path.isabs(spec["console_log"]):
        raise LibvirtModuleError("console_log must be an absolute path, got %r." % spec["console_log"])


def _normalise_resources(params, spec):
    """vCPUs and memory with their ceilings, the NUMA node and the MMIO window."""
    for key in ("vcpus", "vcpus_max"):
        if params.get(key) is not None:
            if params[key] < 1:
                raise LibvirtModuleError("%s must be at least 1, got %d." % (key, params[key]))
            spec[key] = params[key]
    for key in ("memory", "memory_max"):
        if params.get(key) is not None:
            spec[key] = _size_mib(params[key], key)
    if spec.get("vcpus", 0) > spec.get("vcpus_max", float("inf")):
        raise LibvirtModuleError("vcpus (%d) must not exceed vcpus_max (%d)." % (spec["vcpus"], spec["vcpus_max"]))
    if spec.get("memory", 0) > spec.get("memory_max", float("inf")):
        raise LibvirtModuleError(
            "memory (%d MiB) must not exceed memory_max (%d MiB)." % (spec["memory"], spec["memory_max"])
        )
    for key in ("numa_node", "mmio64_mb"):
        if params.get(key) is not None:
            if params[key] < 0 or (key == "mmio64_mb" and params[key] == 0):
                raise LibvirtModuleError("%s must be a positive number, got %d." % (key, params[key]))
            spec[key] = params[key]


def _normalise_devices(params, spec):
    """Disks, the seed, interfaces and GPUs, each listed once."""
    if params.get("disks") is not None:
        spec["disks"] = [normalise_disk(d, i) for i, d in enumerate(params["disks"])]
        keys = [(d["path"], d["pool"], d["volume"]) for d in spec["disks"]]
        if len(set(keys)) != len(keys):
            raise LibvirtModuleError("disks lists the same volume or path twice.")
    if params.get("cloudinit_seed") is not None:
        spec["cloudinit_seed"] = normalise_seed(params["cloudinit_seed"])
    if params.get("interfaces") is not None:
        spec["interfaces"] = [normalise_interface(n, i) for i, n in enumerate(params["interfaces"])]
        macs = [n["mac"] for n in spec["interfaces"] if n["mac"]]
        if len(set(macs)) != len(macs):
            raise LibvirtModuleError("interfaces lists the same MAC address twice.")
    if params.get("gpus") is not None:
        gpus = []
        for given in params["gpus"]:
            try:
                address = normalise_pci_address(given)
            except ValueError as exc:
                raise LibvirtModuleError("gpus: %s" % exc) from exc
            if address not in gpus:
                gpus.append(address)
        spec["gpus"] = gpus


# ---------------------------------------------------------------------------
# Comparing the spec with a definition
# ---------------------------------------------------------------------------

# Machine aliases and the family of versioned names libvirt expands them to.
_MACHINE_FAMILIES = {"pc": "pc-i440fx-", "q35": "pc-q35-"}


def machine_family(machine):
    if not machine:
        return None
    for alias, prefix in _MACHINE_FAMILIES.items():
        if machine == alias or machine.startswith(prefix):
            return alias
    return machine.split("-")[0]


def machine_matches(wanted, current):
    """True when ``current`` (as libvirt stored it) is what ``wanted`` asks for:
    ``q35`` is satisfied by ``pc-q35-7.2``, ``pc`` by ``pc-i440fx-7.2``."""
    if wanted == current:
        return True
    if not current:
        return False
    prefix = _MACHINE_FAMILIES.get(wanted)
    return bool(prefix and current.startswith(prefix))


DISK_KEYS = ("path", "pool", "volume", "device", "bus", "boot_order", "format")
INTERFACE_KEYS = ("type", "network", "bridge", "mac", "model")


def same_source(a, b):
    return (a.get("path"), a.get("pool"), a.get("volume")) == (b.get("path"), b.get("pool"), b.get("volume"))


def _project(current, wanted, keys, optional):
    """``current`` limited to ``keys``, where an ``optional`` key the user left
    out (None in ``wanted``) takes ``wanted``'s None: not compared."""
    result = {}
    for key in keys:
        if key in optional and wanted.get(key) is None:
            result[key] = None
        else:
            result[key] = current.get(key)
    return result


def _project_list(current, wanted, keys, optional):
    """Interfaces pair by position."""
    result = []
    for index, entry in enumerate(current):
        if index < len(wanted):
            result.append(_project(entry, wanted[index], keys, optional))
        else:
            result.append({k: entry.get(k) for k in keys})
    return result


def _project_disks(current, wanted):
    """Disks pair by source (libvirt sorts them by bus and target), in the order of ``wanted``."""
    remaining = list(current)
    result = []
    for want in wanted:
        match = next((d for d in remaining if same_source(d, want)), None)
        if match is not None:
            remaining.remove(match)
            result.append(_project(match, want, DISK_KEYS, ("bus", "format")))
    return result + [{k: d.get(k) for k in DISK_KEYS} for d in remaining]


def project_current(spec, facts):
    """The current values of the fields in ``spec``, shaped so that ``==``
    with ``spec[field]`` is the comparison the module makes."""
    current = {}
    for field in spec:
        value = facts.get(field)
        wanted = spec[field]
        if field == "machine" and machine_matches(wanted, value):
            value = wanted
        elif field == "disks":
            value = _project_disks(value, wanted)
        elif field == "cloudinit_seed":
            value = _project(value, wanted, ("path", "pool", "volume"), ()) if value else None
        elif field == "interfaces":
            value = _project_list(value, wanted, INTERFACE_KEYS, ("mac", "model"))
        elif field == "gpus":
            value = [g["address"] for g in value]
        elif field == "vfs":
            value = project_passthrough(field, value, wanted)
        current[field] = value
    return current


def wanted_view(spec):
    """``spec`` as the comparison and the diff see it."""
    view = copy.deepcopy(spec)
    for disk in view.get("disks", ()):
        for key in list(disk):
            if key not in DISK_KEYS:
                del disk[key]
    if "gpus" in view:
        view["gpus"] = sorted(g if isinstance(g, str) else g["address"] for g in view["gpus"])
    return view


def compare(spec, facts, tracker):
    """Record every field of ``spec`` in ``tracker`` (a DifferenceTracker)
    with its current value in ``facts`` (None for a VM that does not exist);
    return the names of the fields that differ."""
    wanted = wanted_view(spec)
    if facts is None:  # a new VM
        facts = dict(disks=[], interfaces=[], gpus=[])
    current = project_current(wanted, facts)
    differs = [f for f in SPEC_FIELDS if f in wanted and current[f] != wanted[f]]
    for field in SPEC_FIELDS:
        if field in wanted:
            before, after = current[field], wanted[field]
            if field in ("disks", "interfaces"):
                before, after = _readable(before, after)
            tracker.add(field, before, after)
    return differs


def _readable(before, after):
    """List entries without the keys that are unset on both sides (for the diff)."""
    readable_before, readable_after = [], []
    for index in range(max(len(before), len(after))):
        old = before[index] if index < len(before) else None
        new = after[index] if index < len(after) else None
        keys = set(old or {}) | set(new or {})
        blank = {k for k in keys if (old or {}).get(k) is None and (new or {}).get(k) is None}
        if old is not None:
            readable_before.append({k: v for k, v in old.items() if k not in blank})
        if new is not None:
            readable_after.append({k: v for k, v in new.items() if k not in blank})
    return readable_before, readable_after


# Fields that differ between a live and an inactive definition without the
# guest needing a restart (memory inside the ceiling applies through the balloon).
_LIVE_ONLY = ("name", "uuid", "memory")


def restart_reasons(live, inactive):
    """The managed fields whose inactive (next boot) value differs from the running one."""
    reasons = []
    disk_keys = ("path", "pool", "volume", "device", "bus", "target", "boot_order", "format")
    for field, value in inactive.items():
        if field in _LIVE_ONLY:
            continue
        now = live.get(field)
        if field == "cpu_mode" and (value is None or (value == "host-model" and now == "custom")):
            continue  # libvirt's default model, or the host model it expanded in the live definition
        if field == "machine" and machine_matches(value, now):
            continue
        if field == "disks":
            then = [{k: d.get(k) for k in disk_keys} for d in value]
            now = [{k: d.get(k) for k in disk_keys} for d in now or []]
        else:
            then = value
        if now != then:
            reasons.append(field)
    memory, ceiling = inactive.get("memory"), live.get("memory_max")
    if memory is not None and ceiling is not None and memory > ceiling:
        reasons.append("memory")
    return reasons
