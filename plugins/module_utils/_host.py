# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts of one hypervisor for placement and for people (kvm_host_info).

From libvirt: the CPU topology and NUMA cells (getCapabilities, getInfo), free
memory (getFreeMemory, getCellsFreeMemory), the domains and what they hold,
the storage pools, and the PCI node devices where sysfs cannot be read. From
sysfs (through :class:`~._sysfs.Sysfs`, so tests use a fake tree): huge pages
per size and NUMA node, and the GPUs with the facts kvm_gpu_info gives. From a
file: whether the host is drained. Nothing parses the output of a command.

Memory sizes are MiB, pool sizes bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import re

from ansible_collections.iaas.kvm.plugins.module_utils._cpus import format_cpus
from ansible_collections.iaas.kvm.plugins.module_utils._domain import domain_facts
from ansible_collections.iaas.kvm.plugins.module_utils._domain_life import domain_state, with_metadata
from ansible_collections.iaas.kvm.plugins.module_utils._gpu import DISPLAY_CLASSES, HostView, gather_gpus
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    all_domains,
    is_not_found,
    libvirt,
    parse_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._pci import host_pci_functions, node_device_driver
from ansible_collections.iaas.kvm.plugins.module_utils._storage import pool_facts
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import sysfs_from_params

# The host's drain marker, below the module's ``root``: while the file exists the
# host takes no new VMs (place_vms skips it). Draining writes it, with the reason
# as its text; undraining removes it.
DRAIN_MARKER = os.path.join("var", "lib", "iaas-kvm", "drained")
_DRAIN_TEXT_LIMIT = 1024
_HUGEPAGES_DIR_RE = re.compile(r"^hugepages-([0-9]+)kB$")

# The keys of kvm_gpu_info's GPU facts that the host facts keep.
_GPU_KEYS = (
    "address",
    "vendor_id",
    "device_id",
    "vendor_name",
    "device_name",
    "numa_node",
    "driver",
    "iommu_group",
    "passthrough_ready",
    "refusals",
)


def drain_state(root):
    """``(drained, reason)`` from the drain marker below ``root``."""
    path = os.path.join(root, DRAIN_MARKER)
    if not os.path.lexists(path):
        return False, None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            reason = handle.read(_DRAIN_TEXT_LIMIT).strip()
    except OSError:
        reason = ""
    return True, reason or None


# -- CPUs, NUMA, memory ------------------------------------------------------------------


def cpu_topology(info, caps):
    """Sockets, cores and threads of the host: from the NUMA cells of the
    capabilities where libvirt gives them, else from virNodeGetInfo."""
    model, _memory, cpus, mhz, nodes, sockets, cores, threads = info
    cells = caps.findall("./host/topology/cells/cell/cpus/cpu")
    topology = dict(
        arch=caps.findtext("./host/cpu/arch") or model,
        model=caps.findtext("./host/cpu/model"),
        mhz=mhz,
        cpus=cpus,
        sockets=nodes * sockets,
        cores=nodes * sockets * cores,
        threads_per_core=threads,
    )
    if cells:
        socket_ids = {c.get("socket_id") for c in cells}
        core_ids = {(c.get("socket_id"), c.get("die_id"), c.get("core_id")) for c in cells}
        topology.update(
            cpus=len(cells),
            sockets=len(socket_ids),
            cores=len(core_ids),
            threads_per_core=max(1, len(cells) // max(1, len(core_ids))),
        )
    return topology


def _sysfs_hugepages(sysfs, node):
    base = ("devices", "system", "node", "node%d" % node, "hugepages")
    pages = []
    for name in sysfs.listdir(*base):
        match = _HUGEPAGES_DIR_RE.match(name)
        if match:
            pages.append(
                dict(
                    size_kib=int(match.group(1)),
                    total=sysfs.read_int(*base, name, "nr_hugepages") or 0,
                    free=sysfs.read_int(*base, name, "free_hugepages") or 0,
                )
            )
    return sorted(pages, key=lambda p: p["size_kib"]) if sysfs.exists(*base[:-1]) else None


def _libvirt_hugepages(conn, cell):
    """Huge pages of a NUMA cell from the capabilities (totals) and virNodeGetFreePages;
    the cell's smallest page size is the base page, not a huge one."""
    pages = []
    elements = cell.findall("./pages")
    base_size = min((int(e.get("size")) for e in elements), default=0)
    for element in elements:
        size = int(element.get("size"))
        if size == base_size:
            continue
        free = None
        with contextlib.suppress(libvirt.libvirtError):  # a driver that cannot tell
            free = (conn.getFreePages([size], int(cell.get("id")), 1) or {}).get(int(cell.get("id")), {}).get(size)
        pages.append(dict(size_kib=size, total=int(element.text or 0), free=free))
    return sorted(pages, key=lambda p: p["size_kib"])


def numa_nodes(conn, caps, sysfs):
    """Each NUMA node: its CPUs, memory, free memory and huge pages."""
    cells = caps.findall("./host/topology/cells/cell")
    free = []
    if cells:
        try:
            free = conn.getCellsFreeMemory(0, len(cells))
        except libvirt.libvirtError:
            free = []
    nodes = []
    for index, cell in enumerate(cells):
        node = int(cell.get("id"))
        cpus = sorted(int(c.get("id")) for c in cell.findall("./cpus/cpu"))
        memory = cell.find("./memory")
        hugepages = _sysfs_hugepages(sysfs, node)
        if hugepages is None:
            hugepages = _libvirt_hugepages(conn, cell)
        nodes.append(
            dict(
                id=node,
                cpus=cpus,
                cpu_list=format_cpus(cpus),
                memory_mib=int(memory.text) // 1024 if memory is not None and memory.text else None,
                free_mib=int(free[index]) // (1024 * 1024) if index < len(free) else None,
                hugepages=hugepages,
            )
        )
    return nodes


def hugepage_totals(nodes):
    """Huge pages per size summed over the NUMA nodes."""
    totals = {}
    for node in nodes:
        for pages in node["hugepages"]:
            entry = totals.setdefault(pages["size_kib"], dict(size_kib=pages["size_kib"], total=0, free=0))
            entry["total"] += pages["total"]
            entry["free"] = None if entry["free"] is None or pages["free"] is None else entry["free"] + pages["free"]
    return [totals[size] for size in sorted(totals)]


# -- domains -------------------------------------------------------------------------------


def _domain_summary(dom):
    """What one domain holds: resources from its live definition when it runs, else from
    its persistent one; the GPUs of both (a stopped VM keeps its GPUs)."""
    active = bool(dom.isActive())
    persistent = bool(dom.isPersistent())
    trees = []
    if active:
        trees.append(parse_xml(dom.XMLDesc(0)))
    if persistent:
        trees.append(parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
    facts = with_metadata(domain_facts(trees[0]), trees[0])
    gpus = {}
    for tree in trees:
        for gpu in with_metadata(domain_facts(tree), tree)["gpus"]:
            if gpus.get(gpu["address"]) is None:
                gpus[gpu["address"]] = gpu["model"]
    return dict(
        name=facts["name"],
        uuid=facts["uuid"],
        state=domain_state(dom)[0],
        running=active,
        persistent=persistent,
        vcpus=facts["vcpus"],
        vcpus_max=facts["vcpus_max"],
        memory_mib=facts["memory"],
        memory_max_mib=facts["memory_max"],
        numa_node=facts["numa_node"],
        hugepages=facts["hugepages"],
        gpus=[dict(address=a, model=gpus[a]) for a in sorted(gpus)],
        tags=facts["tags"],
    )


def domain_summaries(conn):
    """Every domain (sorted by name); one that vanishes while it is read is left out."""
    result = []
    for dom in all_domains(conn):
        try:
            result.append(_domain_summary(dom))
        except libvirt.libvirtError as exc:
            if not is_not_found(exc):
                raise
    return sorted(result, key=lambda d: d["name"])


def committed(domains):
    """vCPUs and memory the domains may use (their ceilings), running ones and all."""

    def total(selected):
        return dict(
            domains=len(selected),
            vcpus=sum(d["vcpus_max"] or 0 for d in selected),
            memory_mib=sum(d["memory_max_mib"] or 0 for d in selected),
        )

    return dict(running=total([d for d in domains if d["running"]]), all=total(domains))


# -- GPUs ----------------------------------------------------------------------------------


def _is_local(conn):
    """True for a URI without a host part: sysfs here is the hypervisor's."""
    return conn.getURI().partition("://")[2].startswith("/")


def _sysfs_gpus(view):
    gpus, _window = gather_gpus(view)
    return [{key: gpu[key] for key in _GPU_KEYS} for gpu in gpus]


def _node_device_gpus(conn):
    """GPUs from libvirt's PCI node devices (a remote hypervisor, or one whose sysfs is not
    readable here): IDs, NUMA node, driver, IOMMU group; readiness is unknown."""
    gpus = []
    for address, device in sorted((host_pci_functions(conn) or {}).items()):
        capability = parse_xml(device.XMLDesc(0)).find("./capability[@type='pci']")
        try:
            pci_class = int(capability.findtext("class"), 16)
        except (AttributeError, TypeError, ValueError):
            continue
        if pci_class >> 8 not in DISPLAY_CLASSES:
            continue
        numa = capability.find("numa")
        group = capability.find("iommuGroup")
        gpus.append(
            dict(
                address=address,
                vendor_id="%04x" % int(capability.find("vendor").get("id"), 16),
                device_id="%04x" % int(capability.find("product").get("id"), 16),
                vendor_name=capability.findtext("vendor") or None,
                device_name=capability.findtext("product") or None,
                numa_node=int(numa.get("node")) if numa is not None and int(numa.get("node")) >= 0 else None,
                driver=node_device_driver(device),
                iommu_group=int(group.get("number")) if group is not None else None,
                passthrough_ready=None,
                refusals=[],
            )
        )
    return gpus


def host_gpus(conn, params, domains):
    """``(gpus, source)``: the host's GPUs, each with its model, the domains that hold
    it (running or not) and whether it is free for a new VM."""
    view = HostView(sysfs_from_params(params), params["root"]) if _is_local(conn) else None
    if view is not None and view.devices:
        gpus, source = _sysfs_gpus(view), "sysfs"
    else:
        gpus, source = _node_device_gpus(conn), "libvirt"
    holders = {}
    for domain in domains:
        for gpu in domain["gpus"]:
            holders.setdefault(gpu["address"], []).append(domain["name"])
    for gpu in gpus:
        gpu["model"] = "%s:%s" % (gpu["vendor_id"], gpu["device_id"])
        gpu["used_by"] = sorted(holders.get(gpu["address"], []))
        gpu["free"] = not gpu["used_by"] and gpu["passthrough_ready"] is not False
    return gpus, source


# -- everything ----------------------------------------------------------------------------


def host_facts(conn, params):
    """The facts kvm_host_info returns."""
    caps = parse_xml(conn.getCapabilities())
    info = conn.getInfo()
    sysfs = sysfs_from_params(params)
    nodes = numa_nodes(conn, caps, sysfs)
    domains = domain_summaries(conn)
    gpus, gpu_source = host_gpus(conn, params, domains)
    drained, reason = drain_state(params["root"])
    try:
        free_mib = conn.getFreeMemory() // (1024 * 1024)
    except libvirt.libvirtError:
        free_mib = None
    pools = []
    for pool in sorted(conn.listAllStoragePools(0), key=lambda p: p.name()):
        facts = pool_facts(pool)
        pools.append({k: facts[k] for k in ("name", "type", "path", "active", "capacity", "allocation", "available")})
    return dict(
        hostname=conn.getHostname(),
        uri=conn.getURI(),
        drained=drained,
        drained_reason=reason,
        cpu=cpu_topology(info, caps),
        memory=dict(total_mib=int(info[1]), free_mib=free_mib),
        numa_nodes=nodes,
        hugepages=hugepage_totals(nodes),
        committed=committed(domains),
        domains=domains,
        gpus=gpus,
        gpu_source=gpu_source,
        pools=pools,
    )
