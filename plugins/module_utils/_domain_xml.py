# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domains, write side: domain XML built from a spec with lxml.

``build_domain`` applies a normalised spec (``_domain.normalise_spec``) to the
inactive definition of an existing domain, changing only the managed fields
the spec names, so what libvirt added (UUID, MACs, controllers, device
addresses) survives a redefine; with no definition it builds a new one.
``xml_matches`` and ``carry_over`` do the same job for a domain given as raw
XML.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import itertools
import string

from ansible_collections.iaas.kvm.plugins.module_utils._domain import (
    GUEST_AGENT_CHANNEL,
    MMIO64_FW_CFG,
    QEMU_NS,
    SEED_ALIAS,
    disk_facts,
    domain_facts,
    hostdev_address,
    interface_facts,
    is_seed_disk,
    machine_family,
    machine_matches,
    same_source,
    xml_kib,
)
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError, etree
from ansible_collections.iaas.kvm.plugins.module_utils._passthrough import (
    apply_maxphysaddr,
    apply_vfs,
    apply_vgpus,
    is_vgpu_hostdev,
)
from ansible_collections.iaas.kvm.plugins.module_utils._pci import (
    guest_address,
    hostdev_element,
    slot_of,
    split_pci_address,
)
from ansible_collections.iaas.kvm.plugins.module_utils._topology import apply_cells, place_devices

_TARGET_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd"}
_DEFAULT_BUS = {"disk": "virtio", "cdrom": "scsi"}


def _child(parent, tag, **attrib):
    """The first child ``tag`` of ``parent``, created (with ``attrib``) when missing."""
    node = parent.find(tag)
    if node is None:
        node = etree.SubElement(parent, tag, **attrib)
    return node


def _remove(node):
    if node is not None and node.getparent() is not None:
        node.getparent().remove(node)


def creation_defaults(spec, default_domain_type):
    """``spec`` plus what a new domain needs and the user left out.

    One vCPU; the domain type the host supports; VMs with GPUs, vGPUs or VFs on q35
    with UEFI. Everything else stays unset, so libvirt's defaults apply.
    """
    spec = dict(spec)
    spec.setdefault("vcpus", 1)
    spec.setdefault("domain_type", default_domain_type)
    if spec.get("gpus") or spec.get("vgpus") or spec.get("vfs"):
        spec.setdefault("machine", "q35")
        spec.setdefault("firmware", "uefi")
    return spec


def _new_domain(name, spec):
    root = etree.Element("domain", type=spec["domain_type"])
    etree.SubElement(root, "name").text = name
    os_el = etree.SubElement(root, "os")
    etree.SubElement(os_el, "type").text = "hvm"
    features = etree.SubElement(root, "features")
    etree.SubElement(features, "acpi")
    etree.SubElement(features, "apic")
    devices = etree.SubElement(root, "devices")
    # A serial console, so that ``virsh console`` works (as in the seed project).
    etree.SubElement(devices, "serial", type="pty")
    etree.SubElement(devices, "console", type="pty")
    return root


def _kib(mib):
    return round(mib * 1024)


def _amount_and_ceiling(spec, facts, key, ceiling_key, unit=""):
    """The new (amount, ceiling) of memory or vCPUs. An unnamed ceiling stays where
    an earlier run put it (above the amount), else follows the amount."""
    current = facts[key] if facts else None
    ceiling = facts[ceiling_key] if facts else None
    amount = spec.get(key, current)
    if ceiling_key in spec:
        maximum = spec[ceiling_key]
    elif ceiling is not None and current is not None and ceiling > current and ceiling >= amount:
        maximum = ceiling
    else:
        maximum = amount
    if amount is None:
        amount = maximum
    if amount > maximum:
        raise LibvirtModuleError(
            "%s (%s%s) must not exceed %s (%s%s) of the VM."
            % (key, _num(amount), unit, ceiling_key, _num(maximum), unit)
        )
    return amount, maximum, (current, ceiling) != (amount, maximum)


def _num(value):
    return int(value) if value == int(value) else value


def _apply_memory(root, spec, facts):
    if "memory" not in spec and "memory_max" not in spec:
        return
    memory, maximum, _changed = _amount_and_ceiling(spec, facts, "memory", "memory_max", " MiB")
    for tag, mib in (("memory", maximum), ("currentMemory", memory)):
        node = _child(root, tag)
        node.attrib.clear()
        node.set("unit", "KiB")
        node.text = str(_kib(mib))


def _apply_vcpus(root, spec, facts, hints):
    if "vcpus" not in spec and "vcpus_max" not in spec and "numa_node" not in spec:
        return
    vcpus, maximum, changed = _amount_and_ceiling(spec, facts, "vcpus", "vcpus_max")
    vcpu = _child(root, "vcpu")
    if changed:
        _remove(root.find("./vcpus"))  # per-vCPU details must match the count
    vcpu.text = str(maximum)
    vcpu.set("placement", "static")
    if vcpus < maximum:
        vcpu.set("current", str(vcpus))
    elif "current" in vcpu.attrib:
        del vcpu.attrib["current"]
    if "numa_node" in spec and hints.get("numa_cpus"):
        vcpu.set("cpuset", hints["numa_cpus"])


def _apply_os(root, spec, facts):
    os_el = _child(root, "os")
    type_el = _child(os_el, "type")
    if not (type_el.text or "").strip():
        type_el.text = "hvm"
    if "machine" in spec and not machine_matches(spec["machine"], type_el.get("machine")):
        if facts and facts["machine"] and machine_family(facts["machine"]) != machine_family(spec["machine"]):
            raise LibvirtModuleError(
                "Cannot change the machine type of the existing VM %s from %s to %s: its devices are "
                "addressed for the old one; remove and recreate the VM."
                % (facts["name"], facts["machine"], spec["machine"])
            )
        type_el.set("machine", spec["machine"])
    firmware = spec.get("firmware")
    if firmware == "uefi" and (not facts or facts["firmware"] != "uefi"):
        os_el.set("firmware", "efi")
        fw = os_el.find("./firmware")
        if fw is None:
            # Auto-selection without Secure Boot: out-of-tree drivers (NVIDIA's) load unsigned.
            fw = etree.SubElement(os_el, "firmware")
            etree.SubElement(fw, "feature", enabled="no", name="secure-boot")
    elif firmware == "bios" and facts and facts["firmware"] == "uefi":
        os_el.attrib.pop("firmware", None)
        for tag in ("loader", "nvram", "firmware"):
            _remove(os_el.find(tag))


def _apply_cpu(root, spec, facts):
    mode = spec.get("cpu_mode")
    if mode is None or (facts and facts["cpu_mode"] == mode):
        return
    cpu = _child(root, "cpu")
    for key in list(cpu.attrib):
        del cpu.attrib[key]
    cpu.set("mode", mode)
    for tag in ("model", "vendor", "feature"):
        for node in cpu.findall(tag):
            cpu.remove(node)


def _apply_tuning(root, spec, facts):
    if "numa_node" in spec:
        numatune = _child(root, "numatune")
        memory = _child(numatune, "memory")
        memory.set("mode", "strict")
        memory.set("nodeset", str(spec["numa_node"]))
    if "hugepages" in spec:
        backing = root.find("./memoryBacking")
        if spec["hugepages"]:
            _child(_child(root, "memoryBacking"), "hugepages")
        elif backing is not None:
            _remove(backing.find("hugepages"))
            if len(backing) == 0:
                _remove(backing)
    return root


def _with_qemu_namespace(root):
    """``root`` declaring the qemu: prefix (lxml cannot add one to an element)."""
    if root.nsmap.get("qemu") == QEMU_NS:
        return root
    nsmap = dict(root.nsmap)
    nsmap["qemu"] = QEMU_NS
    new = etree.Element(root.tag, attrib=dict(root.attrib), nsmap=nsmap)
    new.text = root.text
    for child in list(root):
        new.append(child)
    return new


def _apply_mmio64(root, spec, facts):
    if "mmio64_mb" not in spec or (facts and facts["mmio64_mb"] == spec["mmio64_mb"]):
        return root
    root = _with_qemu_namespace(root)
    cmdline = root.find("{%s}commandline" % QEMU_NS)
    if cmdline is None:
        cmdline = etree.SubElement(root, "{%s}commandline" % QEMU_NS)
    args = cmdline.findall("{%s}arg" % QEMU_NS)
    for index, arg in enumerate(args):
        value = arg.get("value") or ""
        if value.startswith("name=%s," % MMIO64_FW_CFG) and index and args[index - 1].get("value") == "-fw_cfg":
            cmdline.remove(args[index - 1])
            cmdline.remove(arg)
    etree.SubElement(cmdline, "{%s}arg" % QEMU_NS, value="-fw_cfg")
    etree.SubElement(cmdline, "{%s}arg" % QEMU_NS, value="name=%s,string=%d" % (MMIO64_FW_CFG, spec["mmio64_mb"]))
    return root


# --- disks -------------------------------------------------------------------


def _disk_name(prefix, index):
    """libvirt's target names: vda … vdz, vdaa …"""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = string.ascii_lowercase[rest] + letters
    return prefix + letters


def _free_target(bus, used):
    prefix = _TARGET_PREFIX.get(bus, "sd")
    for index in itertools.count():
        name = _disk_name(prefix, index)
        if name not in used:
            used.add(name)
            return name
    return None  # pragma: no cover - itertools.count never ends


def _new_disk(want, used_targets, alias=None):
    device = want.get("device") or "cdrom"
    bus = want.get("bus") or _DEFAULT_BUS[device]
    if want.get("volume"):
        kind = "volume"
    elif want["path"].startswith("/dev/"):
        kind = "block"
    else:
        kind = "file"
    disk = etree.Element("disk", type=kind, device=device)
    fmt = want.get("format") or want.get("volume_format")
    if fmt:
        etree.SubElement(disk, "driver", name="qemu", type=fmt)
    if kind == "volume":
        etree.SubElement(disk, "source", pool=want["pool"], volume=want["volume"])
    elif kind == "block":
        etree.SubElement(disk, "source", dev=want["path"])
    else:
        etree.SubElement(disk, "source", file=want["path"])
    etree.SubElement(disk, "target", dev=_free_target(bus, used_targets), bus=bus)
    if device == "cdrom":
        etree.SubElement(disk, "readonly")
    if want.get("boot_order"):
        etree.SubElement(disk, "boot", order=str(want["boot_order"]))
    if alias:
        etree.SubElement(disk, "alias", name=alias)
    return disk


def _update_disk(disk, want, used_targets):
    current = disk_facts(disk)
    device = want.get("device") or current["device"]
    if device != current["device"]:
        disk.set("device", device)
        if device == "cdrom":
            _child(disk, "readonly")
        else:
            _remove(disk.find("readonly"))
    bus = want.get("bus")
    if bus and bus != current["bus"]:
        target = _child(disk, "target")
        used_targets.discard(current["target"])
        target.set("dev", _free_target(bus, used_targets))
        target.set("bus", bus)
        _remove(disk.find("address"))  # the drive address belongs to the old bus
    if "boot_order" in want and want["boot_order"] != current["boot_order"]:
        _remove(disk.find("boot"))
        if want["boot_order"]:
            etree.SubElement(disk, "boot", order=str(want["boot_order"]))
    if want.get("format") and want["format"] != current["format"]:
        driver = _child(disk, "driver", name="qemu")
        driver.set("type", want["format"])


def _apply_disks(root, devices, spec):
    if "disks" not in spec and "cloudinit_seed" not in spec:
        return
    existing = devices.findall("disk")
    seed_el = next((d for d in existing if is_seed_disk(d)), None)
    if "disks" in spec:
        _apply_regular_disks(devices, [d for d in existing if d is not seed_el], spec["disks"])
    if "cloudinit_seed" in spec:
        _apply_seed_disk(devices, seed_el, spec["cloudinit_seed"])
    # Per-device boot order and <os><boot dev=…> exclude each other.
    if root.find("./devices/disk/boot") is not None:
        for boot in root.findall("./os/boot"):
            boot.getparent().remove(boot)
    # A scsi disk or cdrom needs a SCSI controller; virtio-scsi works on pc and q35 and
    # with the cloud kernels, which lack the LSI driver that libvirt picks otherwise.
    if root.find("./devices/disk/target[@bus='scsi']") is not None and devices.find("controller[@type='scsi']") is None:
        etree.SubElement(devices, "controller", type="scsi", index="0", model="virtio-scsi")


def _apply_regular_disks(devices, regular, wanted):
    """Keep the disks whose source is wanted (updated), remove the others, add the new ones."""
    keep = []
    for want in wanted:
        match = next((d for d in regular if d not in keep and same_source(disk_facts(d), want)), None)
        if match is not None:
            keep.append(match)
    for disk in regular:
        if disk not in keep:
            devices.remove(disk)
    used = {t.get("dev") for t in devices.findall("disk/target")}
    for want, disk in _pair(wanted, keep):
        if disk is None:
            devices.append(_new_disk(want, used))
        else:
            _update_disk(disk, want, used)


def _apply_seed_disk(devices, seed_el, seed):
    """The seed as a cdrom, replaced when its source changed."""
    want = dict(seed, device="cdrom", bus=None)
    used = {t.get("dev") for t in devices.findall("disk/target")}
    if seed_el is not None and not same_source(disk_facts(seed_el), want):
        used.discard(disk_facts(seed_el)["target"])
        devices.remove(seed_el)
        seed_el = None
    if seed_el is None:
        devices.append(_new_disk(want, used, alias=SEED_ALIAS))


def _pair(wanted, kept):
    """(wanted disk, its kept element or None) in the order of ``wanted``."""
    result = []
    remaining = list(kept)
    for want in wanted:
        match = next((d for d in remaining if same_source(disk_facts(d), want)), None)
        if match is not None:
            remaining.remove(match)
        result.append((want, match))
    return result


# --- interfaces ----------------------------------------------------------------


def _set_iface_source(iface, want):
    iface.set("type", want["type"])
    _remove(iface.find("source"))
    source = etree.Element("source", **{want["type"]: want[want["type"]]})
    iface.insert(0, source)


def _apply_interfaces(devices, spec):
    if "interfaces" not in spec:
        return
    existing = devices.findall("interface")
    chosen = []
    for want in spec["interfaces"]:
        match = None
        if want["mac"]:
            match = next((i for i in existing if i not in chosen and interface_facts(i)["mac"] == want["mac"]), None)
        if match is None:
            match = next(
                (
                    i
                    for i in existing
                    if i not in chosen
                    and interface_facts(i)["type"] == want["type"]
                    and interface_facts(i)[want["type"]] == want[want["type"]]
                    and not want["mac"]
                ),
                None,
            )
        chosen.append(match)
    for iface in existing:
        devices.remove(iface)
    for want, match in zip(spec["interfaces"], chosen):
        iface = match
        if iface is None:
            iface = etree.Element("interface", type=want["type"])
            if want["mac"]:
                etree.SubElement(iface, "mac", address=want["mac"])
            etree.SubElement(iface, "source", **{want["type"]: want[want["type"]]})
            etree.SubElement(iface, "model", type=want["model"] or "virtio")
        else:
            have = interface_facts(iface)
            if (have["type"], have[want["type"]] if have["type"] == want["type"] else None) != (
                want["type"],
                want[want["type"]],
            ):
                _set_iface_source(iface, want)
            if want["model"] and want["model"] != have["model"]:
                _child(iface, "model").set("type", want["model"])
        devices.append(iface)


# --- GPUs ------------------------------------------------------------------------


def _next_pci_index(devices):
    indexes = [int(c.get("index", "0")) for c in devices.findall("controller[@type='pci']")]
    return max([*indexes, 0]) + 1


def _apply_gpus(root, devices, spec):
    """One <hostdev> per host function; the functions of a host slot share one
    guest slot behind their own PCIe root port, function 0 multifunction='on'."""
    if "gpus" not in spec:
        return
    wanted = {g["address"]: g for g in spec["gpus"]}
    if wanted:
        machine = root.find("./os/type").get("machine") or ""
        if machine_family(machine) != "q35":
            raise LibvirtModuleError(
                "gpus need a q35 machine (PCIe root ports); this VM uses %s." % (machine or "the default machine")
            )
    present = {}
    for hostdev in devices.findall("hostdev[@type='pci']"):
        if is_vgpu_hostdev(hostdev):
            continue  # a vGPU of vgpus
        address = hostdev_address(hostdev)
        if address not in wanted:
            devices.remove(hostdev)
            continue
        present[address] = hostdev
        hostdev.set("managed", "yes" if wanted[address]["managed"] else "no")
    slots = {}
    for address in sorted(wanted):
        if address not in present:
            # Functions of a host slot share a guest slot; a VF (its own group) stands alone.
            slots.setdefault(wanted[address].get("group") or slot_of(address), []).append(address)
    for slot in sorted(slots):
        functions = sorted(slots[slot], key=lambda a: split_pci_address(a)[3])
        index = _next_pci_index(devices)
        etree.SubElement(devices, "controller", type="pci", index=str(index), model="pcie-root-port")
        for guest_function, address in enumerate(functions):
            hostdev = hostdev_element(address, managed=wanted[address]["managed"])
            guest_address(hostdev, index, 0, guest_function, multifunction=guest_function == 0 and len(functions) > 1)
            devices.append(hostdev)


def _apply_topology(root, devices, spec):
    """topology host: NUMA cells and devices on expander buses (``_topology``); flat: neither."""
    if "topology" not in spec:
        return
    topology = spec["topology"]
    if topology is not None:
        machine = root.find("./os/type").get("machine") or ""
        if machine_family(machine) != "q35":
            raise LibvirtModuleError(
                "topology host needs a q35 machine (PCIe expander buses); this VM uses %s."
                % (machine or "the default machine")
            )
    apply_cells(root, topology, keep_binding="numa_node" in spec)
    cells = {d["id"]: d["cell"] for d in topology["devices"]} if topology else {}
    place_devices(devices, topology, cells)


# --- consoles, agent, graphics -------------------------------------------------


def _apply_console(devices, spec):
    if "console_log" not in spec:
        return
    serial = devices.find("serial[@type='pty']")
    if serial is None:
        serial = etree.SubElement(devices, "serial", type="pty")
    if devices.find("console") is None:
        etree.SubElement(devices, "console", type="pty")
    for device in (serial, devices.find("console[@type='pty']")):
        if device is None:
            continue
        log = device.find("log")
        if device is serial or log is not None:
            if log is None:
                log = etree.Element("log")
                device.insert(0, log)
            log.set("file", spec["console_log"])
            log.set("append", "on")


def _apply_agent(devices, spec):
    if "guest_agent" not in spec:
        return
    channels = [
        t.getparent() for t in devices.findall("channel/target[@type='virtio']") if t.get("name") == GUEST_AGENT_CHANNEL
    ]
    if spec["guest_agent"] and not channels:
        channel = etree.SubElement(devices, "channel", type="unix")
        etree.SubElement(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    elif not spec["guest_agent"]:
        for channel in channels:
            devices.remove(channel)


def _apply_graphics(devices, spec):
    kind = spec.get("graphics")
    if kind is None:
        return
    existing = devices.findall("graphics")
    if kind == "none":
        for node in existing:
            devices.remove(node)
        return
    if any(g.get("type") == kind for g in existing) and len(existing) == 1:
        return
    for node in existing:
        devices.remove(node)
    graphics = etree.SubElement(devices, "graphics", type=kind, autoport="yes", listen="127.0.0.1")
    etree.SubElement(graphics, "listen", type="address", address="127.0.0.1")


def build_domain(name, spec, current=None, hints=None):
    """The domain XML tree for ``spec``.

    ``current`` is the parsed inactive definition of an existing domain (left
    untouched: the result is a changed copy) or None for a new domain, whose
    spec should have passed through ``creation_defaults``. ``spec['gpus']``
    holds dicts ``{address, managed}`` (host functions already expanded);
    disks may carry ``volume_format`` (the pool's format for the volume).
    ``hints`` may give ``numa_cpus``, the host CPUs of ``numa_node``.
    """
    hints = hints or {}
    if current is None:
        root, facts = _new_domain(name, spec), None
    else:
        root, facts = copy.deepcopy(current), domain_facts(current)
    if spec.get("domain_type"):
        root.set("type", spec["domain_type"])
    _apply_memory(root, spec, facts)
    _apply_vcpus(root, spec, facts, hints)
    _apply_os(root, spec, facts)
    _apply_cpu(root, spec, facts)
    _apply_tuning(root, spec, facts)
    devices = _child(root, "devices")
    _apply_disks(root, devices, spec)
    _apply_interfaces(devices, spec)
    _apply_gpus(root, devices, spec)
    apply_vfs(devices, spec, hints.get("vf_managed", {}))
    apply_vgpus(devices, spec)
    _apply_topology(root, devices, spec)
    apply_maxphysaddr(root, spec)
    _apply_console(devices, spec)
    _apply_agent(devices, spec)
    _apply_graphics(devices, spec)
    return _apply_mmio64(root, spec, facts)


# ---------------------------------------------------------------------------
# Raw XML
# ---------------------------------------------------------------------------


def _elements(node):
    return [c for c in node if isinstance(c.tag, str)]


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _values_equal(tag, key, wanted, current):
    if wanted == current:
        return True
    if current is None:
        return False
    if key == "machine":
        return machine_matches(wanted, current)
    if (key == "address" and _local(tag) == "mac") or _local(tag) == "uuid":
        return wanted.lower() == current.lower()
    try:
        return int(wanted, 0) == int(current, 0)
    except ValueError:
        return False


def _element_matches(wanted, current):
    if wanted.tag != current.tag:
        return False
    sized = "unit" in wanted.attrib or _local(wanted.tag) in ("memory", "currentMemory", "maxMemory")
    for key, value in wanted.attrib.items():
        if sized and key == "unit":
            continue
        if not _values_equal(wanted.tag, key, value, current.get(key)):
            return False
    text = (wanted.text or "").strip()
    if text:
        if sized:
            try:
                if xml_kib(wanted) != xml_kib(current):
                    return False
            except (LibvirtModuleError, ValueError):
                return False
        elif not _values_equal(wanted.tag, None, text, (current.text or "").strip()):
            return False
    used = []
    candidates = _elements(current)
    for child in _elements(wanted):
        match = next((c for c in candidates if c not in used and _element_matches(child, c)), None)
        if match is None:
            return False
        used.append(match)
    return True


def xml_matches(wanted, current):
    """True when everything the user's XML says is in the current definition.

    What libvirt adds (UUID, MACs, addresses, controllers, defaults) is not
    compared; sizes compare by value (``2 GiB`` equals ``2097152 KiB``), numbers
    by value (``0x3`` equals ``0x03``), machine aliases by family.
    """
    return _element_matches(wanted, current)


def _device_key(device, ordinal):
    tag = device.tag
    if tag == "disk":
        target = device.find("target")
        return (tag, target.get("dev") if target is not None else ordinal)
    if tag == "interface":
        mac = device.find("mac")
        return (tag, mac.get("address").lower() if mac is not None else ordinal)
    if tag == "controller":
        return (tag, device.get("type"), device.get("index", "0"))
    if tag == "hostdev":
        return (tag, hostdev_address(device) or ordinal)
    return (tag, device.get("type"), ordinal)


def _device_keys(devices):
    keys = {}
    counts = {}
    for device in _elements(devices):
        kind = (device.tag, device.get("type"))
        ordinal = counts.get(kind, 0)
        counts[kind] = ordinal + 1
        keys[_device_key(device, ordinal)] = device
    return keys


def carry_over(wanted, current):
    """The user's XML with what libvirt assigned to the existing domain: its
    UUID, the MACs of its interfaces (by position) and the addresses of its
    devices, so a redefine renumbers nothing."""
    result = copy.deepcopy(wanted)
    if result.find("uuid") is None and current.find("uuid") is not None:
        uuid = etree.Element("uuid")
        uuid.text = current.findtext("uuid")
        result.insert(list(result).index(result.find("name")) + 1, uuid)
    new_devices, old_devices = result.find("devices"), current.find("devices")
    if new_devices is None or old_devices is None:
        return result
    old_ifaces = old_devices.findall("interface")
    for index, iface in enumerate(new_devices.findall("interface")):
        if iface.find("mac") is None and index < len(old_ifaces) and old_ifaces[index].find("mac") is not None:
            iface.insert(0, copy.deepcopy(old_ifaces[index].find("mac")))
    old = _device_keys(old_devices)
    taken = {tuple(sorted(a.attrib.items())) for a in new_devices.findall("*/address")}
    for key, device in _device_keys(new_devices).items():
        if device.find("address") is not None or key not in old:
            continue
        address = old[key].find("address")
        if address is not None and tuple(sorted(address.attrib.items())) not in taken:
            device.append(copy.deepcopy(address))
            taken.add(tuple(sorted(address.attrib.items())))
    return result
