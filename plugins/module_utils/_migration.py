# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a VM needs from the hypervisor it moves to (kvm_vm_migrate).

Each check reads the VM's domain XML (lxml) and asks the destination's libvirt;
each returns None, or one sentence saying why the VM cannot move there. The
CPU check asks libvirt (virConnectCompareHypervisorCPU, then virConnectCompareCPU);
only a driver that answers neither (libvirt's test driver) gets the project's own
comparison of the CPU features the VM requires with the destination's host CPU.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    error_code,
    error_message,
    etree,
    hostdev_address,
    libvirt,
    lookup,
    parse_xml,
)

# The keys of libvirt's job statistics a migration returns (bytes and milliseconds).
JOB_STAT_KEYS = (
    "time_elapsed",
    "downtime",
    "setup_time",
    "data_total",
    "data_processed",
    "memory_total",
    "memory_processed",
    "memory_iteration",
    "memory_dirty_rate",
    "memory_postcopy_requests",
    "disk_total",
    "disk_processed",
    "auto_converge_throttle",
)


def passed_through_devices(tree):
    """Descriptions of the host devices a domain holds (PCI GPUs, VFs, mediated devices,
    USB devices, SR-IOV interfaces): they belong to the host and cannot move with the VM."""
    found = []
    for hostdev in tree.findall("./devices/hostdev"):
        kind = hostdev.get("type")
        if kind == "pci":
            found.append("PCI device %s" % (hostdev_address(hostdev) or "?"))
        elif kind == "mdev":
            address = hostdev.find("./source/address")
            found.append("mediated device %s" % (address.get("uuid") if address is not None else "?"))
        else:
            found.append("%s host device" % (kind or "a"))
    for iface in tree.findall("./devices/interface[@type='hostdev']"):
        found.append("SR-IOV interface %s" % (hostdev_address(iface) or "?"))
    return found


def networks_of(tree):
    """Names of the libvirt networks the domain's interfaces are on."""
    return sorted({s.get("network") for s in tree.findall("./devices/interface[@type='network']/source")} - {None})


def missing_networks(dest_conn, tree):
    """The domain's libvirt networks that the destination lacks or has not started."""
    missing = []
    for name in networks_of(tree):
        net = lookup(dest_conn.networkLookupByName, name)
        if net is None:
            missing.append("%s (not defined)" % name)
        elif not net.isActive():
            missing.append("%s (not active)" % name)
    return missing


def memory_shortfall(dest_conn, dom):
    """``(needed, free)`` in MiB when the destination's free memory is less than the
    VM's maximum memory, else None."""
    needed = int(dom.maxMemory()) * 1024
    free = int(dest_conn.getFreeMemory())
    if free < needed:
        return needed // 1048576, free // 1048576
    return None


def _host_cpu(conn):
    cpu = parse_xml(conn.getCapabilities()).find("./host/cpu")
    if cpu is None:
        return dict(arch=None, model=None, vendor=None, features=set())
    return dict(
        arch=cpu.findtext("./arch"),
        model=cpu.findtext("./model"),
        vendor=cpu.findtext("./vendor"),
        # <feature name='avx2'/> on QEMU hosts; the test driver lists <features><pae/>...</features>.
        features={f.get("name") for f in cpu.findall("./feature")} | {f.tag for f in cpu.findall("./features/*")},
    )


def _compare_by_features(src_conn, dest_conn, tree):
    """The fallback comparison: same architecture; host-passthrough needs the same host
    CPU (model, vendor, features); a named model needs the features the VM requires."""
    dest = _host_cpu(dest_conn)
    arch = tree.find("./os/type").get("arch") if tree.find("./os/type") is not None else None
    if arch and dest["arch"] and arch != dest["arch"]:
        return "the VM runs on %s CPUs and the destination's CPU is %s" % (arch, dest["arch"])
    cpu = tree.find("./cpu")
    if cpu is None:
        return None
    if cpu.get("mode") == "host-passthrough":
        src = _host_cpu(src_conn)
        if (src["model"], src["vendor"], src["features"]) != (dest["model"], dest["vendor"], dest["features"]):
            return "the VM passes its host's CPU through (%s) and the destination's CPU differs (%s)" % (
                src["model"] or src["arch"],
                dest["model"] or dest["arch"],
            )
        return None
    required = sorted(
        f.get("name") for f in cpu.findall("./feature") if f.get("policy", "require") in ("require", "force")
    )
    lacking = [name for name in required if name not in dest["features"]]
    if lacking:
        return "the destination's CPU lacks %s, which the VM's CPU model requires" % ", ".join(lacking)
    return None


def cpu_incompatibility(src_conn, dest_conn, tree):
    """Why the destination cannot run the domain's CPU (live ``tree``), or None."""
    cpu = tree.find("./cpu")
    if cpu is not None and cpu.get("mode") not in ("host-passthrough", "maximum") and cpu.find("./model") is not None:
        xml = etree.tostring(cpu, encoding="unicode")
        os_type = tree.find("./os/type")
        attempts = (
            lambda: dest_conn.compareHypervisorCPU(
                None,
                os_type.get("arch") if os_type is not None else None,
                os_type.get("machine") if os_type is not None else None,
                tree.get("type"),
                xml,
                0,
            ),
            lambda: dest_conn.compareCPU(xml, 0),
        )
        for attempt in attempts:
            try:
                answer = attempt()
            except libvirt.libvirtError as exc:
                if error_code(exc) == libvirt.VIR_ERR_NO_SUPPORT:
                    continue
                return "the destination cannot compare the VM's CPU with its own: %s" % error_message(exc)
            if answer == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
                return "the destination's CPU cannot run the VM's CPU model %s" % cpu.findtext("./model")
            return None
    return _compare_by_features(src_conn, dest_conn, tree)


def host_uuid(conn):
    """The host UUID from libvirt's capabilities (None when the driver has none)."""
    return parse_xml(conn.getCapabilities()).findtext("./host/uuid")


def job_stats(stats):
    """The figures of libvirt's job statistics that a migration reports."""
    return {key: int(stats[key]) for key in JOB_STAT_KEYS if key in stats}


def detach_media(tree):
    """Empty every read-only disk (cdroms, the cloud-init seed) of a domain ``tree``
    in place; return the target devices emptied."""
    emptied = []
    for disk in tree.findall("./devices/disk"):
        if disk.get("device") == "cdrom" or disk.find("./readonly") is not None:
            source = disk.find("./source")
            if source is None:
                continue
            disk.remove(source)
            if disk.get("type") == "volume":
                disk.set("type", "file")
            target = disk.find("./target")
            emptied.append(target.get("dev") if target is not None else "?")
    return emptied


def volume_disks_as_files(tree, resolve):
    """Turn the disks of a domain ``tree`` given as a pool's volume into file disks at the
    volume's path (``resolve(pool, volume)`` gives it)."""
    for disk in tree.findall("./devices/disk[@type='volume']"):
        source = disk.find("./source")
        if source is None or not source.get("volume"):
            continue
        path = resolve(source.get("pool"), source.get("volume"))
        for name in list(source.attrib):
            del source.attrib[name]
        source.set("file", path)
        disk.set("type", "file")
