# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A guest topology that follows the host's NUMA layout (kvm_vm's ``topology: host``).

For the host NUMA nodes that the VM's passed-through devices sit on, the guest
gets one NUMA cell each (its share of the vCPUs and memory, vCPUs pinned to the
node's host CPUs, memory bound with ``<numatune><memnode>``) and one
``pcie-expander-bus`` each (``<target><node>`` = the cell), with the node's
devices behind PCIe root ports on it. Guest drivers (NCCL, CUDA) then see
which CPUs and memory are near which GPU, as on the host.

A plan is plain data, compared with what a definition holds
(:func:`topology_facts`), so a converged VM is no change:

    {"cells": [{"node": host node, "cpus": host CPU list, "vcpus": guest CPU
     list, "memory": MiB}, ...],
     "devices": [{"id": PCI address or mdev UUID, "cell": guest cell}, ...]}

Placing devices (:func:`place_devices`) works on the passed-through device
elements of a definition: PCI ``<hostdev>``, ``<hostdev type='mdev'>`` and
``<interface type='hostdev'>``. Functions that share a guest slot stay together.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.iaas.kvm.plugins.module_utils._cpus import format_cpus, parse_cpus
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError, etree, hostdev_address
from ansible_collections.iaas.kvm.plugins.module_utils._pci import guest_address

EXPANDER = "pcie-expander-bus"
ROOT_PORT = "pcie-root-port"


def _shares(total, parts):
    """``total`` split into ``parts`` whole shares, the first ones one larger."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


# -- the plan -------------------------------------------------------------------------------


def plan(devices, node_cpus, vcpus, memory_mib):
    """The topology for ``devices`` (``[(id, host node)]``) over their host nodes: one cell per
    node in node order, ``vcpus`` and ``memory_mib`` shared out evenly. ``node_cpus`` maps a
    host node to its CPU list. A device whose node is unknown goes to the first cell."""
    nodes = sorted({node for _id, node in devices if node is not None})
    if not nodes:
        return None
    if vcpus < len(nodes):
        raise LibvirtModuleError(
            "topology host gives each of the host NUMA nodes %s a guest NUMA cell, so the VM needs at least %d vCPUs, "
            "not %d." % (", ".join(str(n) for n in nodes), len(nodes), vcpus)
        )
    cells = []
    first = 0
    for node, count, memory in zip(nodes, _shares(vcpus, len(nodes)), _shares(int(memory_mib), len(nodes))):
        # CPU lists in libvirt's own form (0-7, not 0,1,...,7), so a stored definition compares equal.
        cpus = format_cpus(parse_cpus(node_cpus[node]))
        cells.append(dict(node=node, cpus=cpus, vcpus=format_cpus(range(first, first + count)), memory=memory))
        first += count
    placed = [dict(id=device_id, cell=nodes.index(node) if node is not None else 0) for device_id, node in devices]
    return dict(cells=cells, devices=sorted(placed, key=lambda d: d["id"]))


# -- reading a definition ----------------------------------------------------------------


def device_id(element):
    """The id of a passed-through device element (its host PCI address or mdev UUID), or None."""
    if element.tag == "hostdev" and element.get("type") == "mdev":
        address = element.find("./source/address")
        return (address.get("uuid") or "").lower() if address is not None else None
    if element.tag in ("hostdev", "interface"):
        return hostdev_address(element)
    return None


def passthrough_elements(devices):
    """The passed-through device elements of ``<devices>``."""
    return [
        e
        for e in devices
        if (e.tag == "hostdev" and e.get("type") in ("pci", "mdev"))
        or (e.tag == "interface" and e.get("type") == "hostdev")
    ]


def _controllers(devices):
    return {int(c.get("index", "0")): c for c in devices.findall("controller[@type='pci']")}


def _guest_bus(element):
    address = element.find("./address[@type='pci']")
    if address is None or address.get("bus") is None:
        return None
    return int(address.get("bus"), 0)


def _cell_of(element, controllers):
    """The guest cell of the expander bus that ``element`` hangs on (through its root port), or None."""
    seen = set()
    bus = _guest_bus(element)
    while bus is not None and bus in controllers and bus not in seen:
        seen.add(bus)
        controller = controllers[bus]
        if controller.get("model") == EXPANDER:
            node = controller.findtext("./target/node")
            return int(node) if node is not None and node.strip().isdigit() else None
        bus = _guest_bus(controller)
    return None


def topology_facts(tree):
    """The topology of a definition in the shape of :func:`plan`, or None when it has neither
    guest NUMA cells nor devices on an expander bus."""
    devices = tree.find("./devices")
    controllers = _controllers(devices) if devices is not None else {}
    placed = []
    for element in passthrough_elements(devices) if devices is not None else []:
        identity = device_id(element)
        if identity:
            placed.append(dict(id=identity, cell=_cell_of(element, controllers)))
    cells = []
    pins = {int(p.get("vcpu")): p.get("cpuset") for p in tree.findall("./cputune/vcpupin")}
    for cell in tree.findall("./cpu/numa/cell"):
        cell_id = cell.get("id")
        memnode = tree.find("./numatune/memnode[@cellid='%s']" % cell_id)
        vcpus = parse_cpus(cell.get("cpus"))
        cells.append(
            dict(
                node=int(memnode.get("nodeset"))
                if memnode is not None and memnode.get("nodeset", "").isdigit()
                else None,
                cpus=format_cpus(parse_cpus(pins[vcpus[0]])) if vcpus and pins.get(vcpus[0]) else None,
                vcpus=format_cpus(vcpus),
                memory=_cell_mib(cell),
            )
        )
    if not cells and not any(d["cell"] is not None for d in placed):
        return None
    return dict(cells=cells, devices=sorted(placed, key=lambda d: d["id"]))


def _cell_mib(cell):
    units = {"kib": 1.0 / 1024, "k": 1.0 / 1024, "mib": 1, "m": 1, "gib": 1024, "g": 1024}
    unit = (cell.get("unit") or "KiB").lower()
    value = int(cell.get("memory", "0")) * units.get(unit, 1.0 / 1024)
    return int(value) if value == int(value) else value


# -- writing a definition ----------------------------------------------------------------


def _child(parent, tag):
    node = parent.find(tag)
    if node is None:
        node = etree.SubElement(parent, tag)
    return node


def apply_cells(root, topology, keep_binding=False):
    """Guest NUMA cells, vCPU pinning and memory binding of ``topology``; with None, remove them
    (all but the VM-wide memory binding and vCPU set with ``keep_binding``: kvm_vm's numa_node)."""
    cpu = root.find("./cpu")
    numatune = root.find("./numatune")
    cputune = root.find("./cputune")
    for parent, tag in ((cpu, "numa"), (numatune, "memnode"), (cputune, "vcpupin")):
        for node in parent.findall(tag) if parent is not None else []:
            parent.remove(node)
    vcpu = root.find("./vcpu")
    if topology is None:
        if numatune is not None and numatune.find("memory") is not None and not keep_binding:
            numatune.remove(numatune.find("memory"))
        for parent in (numatune, cputune):
            if parent is not None and len(parent) == 0:
                root.remove(parent)
        if vcpu is not None and not keep_binding:
            vcpu.attrib.pop("cpuset", None)
        return
    numa = etree.SubElement(_child(root, "cpu"), "numa")
    cputune = _child(root, "cputune")
    numatune = _child(root, "numatune")
    memory = _child(numatune, "memory")
    memory.attrib.clear()
    memory.set("mode", "strict")
    memory.set("nodeset", format_cpus(c["node"] for c in topology["cells"]))
    all_cpus = []
    for index, cell in enumerate(topology["cells"]):
        etree.SubElement(numa, "cell", id=str(index), cpus=cell["vcpus"], memory=str(cell["memory"]), unit="MiB")
        etree.SubElement(numatune, "memnode", cellid=str(index), mode="strict", nodeset=str(cell["node"]))
        for guest_cpu in parse_cpus(cell["vcpus"]):
            etree.SubElement(cputune, "vcpupin", vcpu=str(guest_cpu), cpuset=cell["cpus"])
        all_cpus.extend(parse_cpus(cell["cpus"]))
    if vcpu is not None:
        vcpu.set("cpuset", format_cpus(all_cpus))


def _groups(elements):
    """Passed-through elements in groups that share a guest slot (a multifunction device)."""
    groups = {}
    order = []
    for element in elements:
        address = element.find("./address[@type='pci']")
        key = (address.get("bus"), address.get("slot")) if address is not None else ("new", id(element))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(element)
    return [groups[key] for key in order]


def _remove_placement(devices, elements):
    """Remove the root ports that carry only ``elements``, then the expander buses left empty."""
    mine = {id(e) for e in elements}
    carried = {}
    for device in devices:
        bus = _guest_bus(device)
        if bus is not None:
            carried.setdefault(bus, []).append(device)
    controllers = _controllers(devices)
    for index, controller in controllers.items():
        if controller.get("model") == ROOT_PORT and carried.get(index) and all(id(d) in mine for d in carried[index]):
            devices.remove(controller)
    remaining = {_guest_bus(d) for d in devices if d.tag == "controller"} | {
        _guest_bus(d) for d in devices if d.tag != "controller" and id(d) not in mine
    }
    for index, controller in _controllers(devices).items():
        if controller.get("model") == EXPANDER and index not in remaining:
            devices.remove(controller)
    for element in elements:
        address = element.find("./address[@type='pci']")
        if address is not None:
            element.remove(address)


def place_devices(devices, topology, cells_of, elements=None, ident=device_id):
    """Put the passed-through devices of ``<devices>`` (or the given PCI device ``elements``, named
    by ``ident(element)``) behind root ports: on the expander bus of their cell (``cells_of``: id ->
    cell) with a topology, on the root complex without one. Nothing moves when the placement
    already is so."""
    if elements is None:
        elements = [e for e in passthrough_elements(devices) if device_id(e)]
    controllers = _controllers(devices)
    if not elements:
        if topology is None:
            for index, controller in controllers.items():
                if controller.get("model") == EXPANDER and not [d for d in devices if _guest_bus(d) == index]:
                    devices.remove(controller)
        return
    current = {ident(e): _cell_of(e, controllers) for e in elements}
    wanted = {ident(e): (cells_of.get(ident(e), 0) if topology else None) for e in elements}
    if current == wanted and all(e.find("./address[@type='pci']") is not None for e in elements):
        return
    groups = _groups(elements)
    _remove_placement(devices, elements)
    next_index = max([*_controllers(devices), 0]) + 1
    expanders = {}
    if topology is not None:
        for cell in sorted({wanted[ident(g[0])] for g in groups}):
            etree.SubElement(devices, "controller", type="pci", index=str(next_index), model=EXPANDER)
            target = etree.SubElement(devices[-1], "target")
            etree.SubElement(target, "node").text = str(cell)
            expanders[cell] = [next_index, 0]
            next_index += 1
    for group in groups:
        port = etree.SubElement(devices, "controller", type="pci", index=str(next_index), model=ROOT_PORT)
        if topology is not None:
            expander = expanders[wanted[ident(group[0])]]
            guest_address(port, expander[0], expander[1])
            expander[1] += 1
        for function, element in enumerate(group):
            guest_address(element, next_index, 0, function, multifunction=function == 0 and len(group) > 1)
        next_index += 1
