# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter iaas.kvm.place_vms: VM requests onto hypervisors, from the facts
kvm_host_info returns. Its documentation is place_vms.yml beside this file.

A pure function: the same requests and facts give the same mapping (requests
are placed in an order of their own, hosts are compared by sorted name, and no
randomness is used), nothing outside its arguments is read.

The model, per hypervisor:

- memory for VMs = (total - reserve - the huge page pool) x memory_ratio, less
  the ceilings (memory_max) of the defined VMs that do not use huge pages;
- vCPUs for VMs = logical CPUs x vcpu_ratio, less the ceilings (vcpus_max) of
  the defined VMs;
- GPUs: those kvm_host_info calls free (held by no domain, stopped ones
  included, and not refused for passthrough);
- huge pages: the free pages of the size, less those that stopped VMs backed
  by huge pages take when they start;
- a NUMA node offers its share: its memory (less its share of the reserve and
  of the huge page pool) and CPUs, less what VMs pinned to it hold.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping

from ansible_collections.iaas.kvm.plugins.module_utils._units import SizeError, parse_size

STRATEGIES = ("spread", "pack")
DEFAULT_HUGEPAGE_KIB = 2048
_MIB = 1024 * 1024


class PlacementError(ValueError):
    """A request that fits nowhere, or input that is not what the filter takes, as a sentence.
    The filter raises it as Ansible's AnsibleFilterError (see FilterModule)."""


def _mib(value, name, allow_zero=False):
    try:
        size = parse_size(value, default_unit="MiB", name=name)
    except SizeError as exc:
        raise PlacementError(str(exc)) from exc
    if size < 0 or (size == 0 and not allow_zero):
        raise PlacementError("%s must be more than 0 MiB, got %r." % (name, value))
    return -(-size // _MIB)


def _count(value, name, minimum=0):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # a templated number
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PlacementError("%s must be a whole number of at least %d, got %r." % (name, minimum, value))
    return value


# -- requests ---------------------------------------------------------------------------


class Request:
    __slots__ = ("anti_affinity", "gpus", "hugepage_kib", "memory", "model", "name", "pinned", "vcpus")

    def __init__(self, entry, index):
        if not isinstance(entry, Mapping):
            raise PlacementError("requests[%d] must be a dict with name, vcpus and memory, got %r." % (index, entry))
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise PlacementError("requests[%d] needs a name." % index)
        unknown = set(entry) - {"name", "vcpus", "memory", "gpus", "hugepages", "anti_affinity", "host"}
        if unknown:
            raise PlacementError(
                "The request for VM %s has unknown keys %s; it takes vcpus, memory, gpus, hugepages, "
                "anti_affinity and host." % (name, ", ".join(sorted(unknown)))
            )
        self.name = name
        self.vcpus = _count(entry.get("vcpus", 1), "vcpus of VM %s" % name, 1)
        if entry.get("memory") is None:
            raise PlacementError("The request for VM %s needs memory (such as 4GiB, or MiB)." % name)
        self.memory = _mib(entry["memory"], "memory of VM %s" % name)
        gpus = entry.get("gpus") or 0
        self.model = None
        if isinstance(gpus, Mapping):
            unknown = set(gpus) - {"count", "model"}
            if unknown:
                raise PlacementError(
                    "gpus of VM %s takes count and model, not %s." % (name, ", ".join(sorted(unknown)))
                )
            self.model = _model(gpus.get("model"), name)
            gpus = gpus.get("count", 1)
        self.gpus = _count(gpus, "gpus of VM %s" % name)
        hugepages = entry.get("hugepages")
        if hugepages in (None, False):
            self.hugepage_kib = None
        elif hugepages is True:
            self.hugepage_kib = DEFAULT_HUGEPAGE_KIB
        else:
            try:
                self.hugepage_kib = parse_size(hugepages, default_unit="KiB", name="hugepages of VM %s" % name) // 1024
            except SizeError as exc:
                raise PlacementError(str(exc)) from exc
            if not self.hugepage_kib:
                raise PlacementError("hugepages of VM %s must be true or a page size such as 2M or 1G." % name)
        self.anti_affinity = entry.get("anti_affinity") or None
        self.pinned = entry.get("host") or None

    def words(self):
        text = "%d vCPU%s, %d MiB" % (self.vcpus, "" if self.vcpus == 1 else "s", self.memory)
        if self.gpus:
            text += ", %d GPU%s" % (self.gpus, "" if self.gpus == 1 else "s")
            if self.model:
                text += " of model %s" % self.model
        if self.hugepage_kib:
            text += ", huge pages of %d KiB" % self.hugepage_kib
        return text

    def order(self):
        """Pinned requests first, then GPU requests, larger ones first; the name settles ties."""
        return (self.pinned is None, -self.gpus, -self.memory, -self.vcpus, self.name)


def _model(value, name):
    if value is None:
        return None
    text = str(value).strip().lower().replace("0x", "")
    parts = text.split(":")
    if not 1 <= len(parts) <= 2 or not all(len(p) == 4 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise PlacementError(
            "gpus.model of VM %s must be a PCI vendor:device such as 10de:2330 (or a vendor such as 10de), got %r."
            % (name, value)
        )
    return text


def _matches(model, wanted):
    return wanted is None or model == wanted or model.split(":")[0] == wanted


# -- hosts ----------------------------------------------------------------------------------


def _facts_value(facts, host, *keys):
    value = facts
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            raise PlacementError(
                "The facts of hypervisor %s have no %s; give the result of iaas.kvm.kvm_host_info."
                % (host, ".".join(keys))
            )
        value = value[key]
    return value


class Node:
    __slots__ = ("cpus", "gpus", "id", "memory", "pages")

    def __init__(self, node_id, memory, cpus, pages):
        self.id = node_id
        self.memory = memory
        self.cpus = cpus
        self.pages = pages  # {size_kib: free pages}
        self.gpus = []  # free GPUs: [(address, model)]


class Host:
    """What one hypervisor has left while the filter places requests on it."""

    def __init__(self, name, facts, options):
        self.name = name
        if isinstance(facts, Mapping) and facts.get("failed"):
            raise PlacementError("The facts of hypervisor %s are a failed task: %s" % (name, facts.get("msg")))
        self.drained = bool(_facts_value(facts, name, "drained"))
        self.drained_reason = facts.get("drained_reason")
        total = int(_facts_value(facts, name, "memory", "total_mib"))
        cpus = int(_facts_value(facts, name, "cpu", "cpus"))
        domains = _facts_value(facts, name, "domains")
        reserve = options["memory_reserve"]
        ratio = options["memory_ratio"]
        self.domains = {d["name"]: d for d in domains}
        pool_mib = self._read_nodes(facts.get("numa_nodes") or [], total, options)
        self.memory_capacity = (total - reserve - pool_mib) * ratio
        self.memory = self.memory_capacity
        self.vcpu_capacity = cpus * options["vcpu_ratio"]
        self.vcpus = self.vcpu_capacity
        self.pages = {}
        for node in self.nodes.values():
            for size, free in node.pages.items():
                self.pages[size] = self.pages.get(size, 0) + free
        for domain in domains:
            self._count_domain(domain)
        self.free_gpus = []  # [(node id or None, address, model)], sorted
        for gpu in sorted(_facts_value(facts, name, "gpus"), key=lambda g: g["address"]):
            if gpu.get("free"):
                model = gpu.get("model") or "%s:%s" % (gpu.get("vendor_id"), gpu.get("device_id"))
                self.free_gpus.append((gpu.get("numa_node"), gpu["address"], model.lower()))
        self.placed = 0

    def _read_nodes(self, nodes, total, options):
        """The NUMA nodes with their memory above the reserve (a share of it each) and
        their huge pages; returns the MiB held by huge page pools."""
        self.nodes = {}
        pool_mib = 0
        node_total = sum(n.get("memory_mib") or 0 for n in nodes) or total
        for node in nodes:
            pages = {}
            node_pool = 0
            for entry in node.get("hugepages") or []:
                pages[entry["size_kib"]] = entry.get("free") or 0
                node_pool += entry["size_kib"] * (entry.get("total") or 0) // 1024
            pool_mib += node_pool
            share = (node.get("memory_mib") or 0) / node_total
            self.nodes[node["id"]] = Node(
                node["id"],
                ((node.get("memory_mib") or 0) - options["memory_reserve"] * share - node_pool)
                * options["memory_ratio"],
                len(node.get("cpus") or []) * options["vcpu_ratio"],
                pages,
            )
        return pool_mib

    def _count_domain(self, domain):
        """Take what a defined VM holds (at its ceilings) from the host and its node."""
        small = min(self.pages) if self.pages else DEFAULT_HUGEPAGE_KIB
        self.vcpus -= domain.get("vcpus_max") or domain.get("vcpus") or 0
        memory = domain.get("memory_max_mib") or domain.get("memory_mib") or 0
        node = self.nodes.get(domain.get("numa_node"))
        if node is not None:
            node.cpus -= domain.get("vcpus_max") or domain.get("vcpus") or 0
        if domain.get("hugepages"):
            if not domain.get("running"):  # its pages are still free until it starts
                self._take_pages(node, small, memory)
        else:
            self.memory -= memory
            if node is not None:
                node.memory -= memory

    def _take_pages(self, node, size, memory):
        pages = -(-memory * 1024 // size)
        self.pages[size] = self.pages.get(size, 0) - pages
        if node is not None and size in node.pages:
            node.pages[size] -= pages

    # -- fitting ------------------------------------------------------------------------

    def gpus_for(self, request):
        return [g for g in self.free_gpus if _matches(g[2], request.model)]

    def reasons(self, request, groups):
        """Why ``request`` does not fit here (empty when it does)."""
        reasons = []
        if self.drained:
            reasons.append("drained" + (" (%s)" % self.drained_reason if self.drained_reason else ""))
        if request.anti_affinity:
            holders = groups.get(request.anti_affinity, {}).get(self.name)
            if holders:
                reasons.append(
                    "holds %s of anti-affinity group %s" % (", ".join(sorted(holders)), request.anti_affinity)
                )
        if request.hugepage_kib:
            free = self.pages.get(request.hugepage_kib, 0)
            needed = -(-request.memory * 1024 // request.hugepage_kib)
            if free < needed:
                reasons.append(
                    "%d free huge pages of %d KiB (%d MiB), %d MiB asked"
                    % (max(free, 0), request.hugepage_kib, max(free, 0) * request.hugepage_kib // 1024, request.memory)
                )
        elif self.memory < request.memory:
            reasons.append("%d MiB of memory free, %d MiB asked" % (max(int(self.memory), 0), request.memory))
        if self.vcpus < request.vcpus:
            reasons.append("%d vCPUs free, %d asked" % (max(int(self.vcpus), 0), request.vcpus))
        if request.gpus:
            free = len(self.gpus_for(request))
            if free < request.gpus:
                reasons.append(
                    "%d free GPU%s%s, %d asked"
                    % (
                        free,
                        "" if free == 1 else "s",
                        " of model %s" % request.model if request.model else "",
                        request.gpus,
                    )
                )
        return reasons

    def fits(self, request, groups):
        if self.drained or self.vcpus < request.vcpus:
            return False
        if request.hugepage_kib:
            if self.pages.get(request.hugepage_kib, 0) * request.hugepage_kib < request.memory * 1024:
                return False
        elif self.memory < request.memory:
            return False
        if request.anti_affinity and groups.get(request.anti_affinity, {}).get(self.name):
            return False
        return not request.gpus or len(self.gpus_for(request)) >= request.gpus

    def numa_choice(self, request):
        """``(node, gpus)``: a NUMA node that holds the request with its GPUs, or ``(None, gpus)``."""
        candidates = self.gpus_for(request)
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            local = [g for g in candidates if g[0] == node_id]
            if len(local) < request.gpus or node.cpus < request.vcpus:
                continue
            if request.hugepage_kib:
                if node.pages.get(request.hugepage_kib, 0) * request.hugepage_kib < request.memory * 1024:
                    continue
            elif node.memory < request.memory:
                continue
            return node, local[: request.gpus]
        return None, candidates[: request.gpus]

    def take(self, request, node, gpus):
        self.vcpus -= request.vcpus
        if request.hugepage_kib:
            self._take_pages(node, request.hugepage_kib, request.memory)
        else:
            self.memory -= request.memory
            if node is not None:
                node.memory -= request.memory
        if node is not None:
            node.cpus -= request.vcpus
        taken = {g[1] for g in gpus}
        self.free_gpus = [g for g in self.free_gpus if g[1] not in taken]
        self.placed += 1

    def score(self, request, strategy, numa_fit):
        """Smaller is better. Spread: the most memory and vCPUs left, by share; pack: the least."""
        memory = (self.memory - (0 if request.hugepage_kib else request.memory)) / max(self.memory_capacity, 1)
        vcpus = (self.vcpus - request.vcpus) / max(self.vcpu_capacity, 1)
        if strategy == "pack":
            key = (len(self.gpus_for(request)) - request.gpus if request.gpus else 0, memory, vcpus)
        else:
            key = (-memory, -vcpus, self.placed)
        return (0 if numa_fit else 1, *key, self.name)


# -- the filter -----------------------------------------------------------------------------


def _options(strategy, memory_reserve, memory_ratio, vcpu_ratio):
    if strategy not in STRATEGIES:
        raise PlacementError("strategy must be spread or pack, got %r." % (strategy,))
    options = dict(memory_reserve=_mib(memory_reserve, "memory_reserve", allow_zero=True))
    for name, value in (("memory_ratio", memory_ratio), ("vcpu_ratio", vcpu_ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise PlacementError("%s must be a number above 0, got %r." % (name, value))
        options[name] = float(value)
    if options["memory_ratio"] > 1.0:
        raise PlacementError(
            "memory_ratio must not be above 1.0 (%r): memory is never overcommitted." % (options["memory_ratio"],)
        )
    return options


def _existing(name, hosts):
    """The host of an existing VM: a running definition first, then the first host by name."""
    found = [h for h in sorted(hosts) if name in hosts[h].domains]
    if not found:
        return None
    running = [h for h in found if hosts[h].domains[name].get("running")]
    return (running or found)[0]


def _note_group(request, host_name, groups):
    if request.anti_affinity:
        groups.setdefault(request.anti_affinity, {}).setdefault(host_name, []).append(request.name)


def _keep_existing(request, state, groups, result):
    """An existing VM stays where it is (sticky): True when ``request`` names one."""
    host = _existing(request.name, state)
    if host is None:
        return False
    domain = state[host].domains[request.name]
    result[request.name] = dict(
        host=host,
        gpus=sorted(g["address"] for g in domain.get("gpus") or []),
        numa_node=domain.get("numa_node"),
        existing=True,
    )
    _note_group(request, host, groups)
    return True


def _place_one(request, state, groups, result, strategy):
    """Place ``request`` on the best host that fits it; return None, or why it fits nowhere."""
    if request.pinned is not None and request.pinned not in state:
        return "%s: no facts for this hypervisor (there are facts for %s)" % (
            request.pinned,
            ", ".join(sorted(state)) or "none",
        )
    candidates = [state[request.pinned]] if request.pinned is not None else list(state.values())
    best = None
    for host in candidates:
        if not host.fits(request, groups):
            continue
        node, gpus = host.numa_choice(request) if request.gpus else (None, [])
        score = host.score(request, strategy, node is not None or not request.gpus)
        if best is None or score < best[0]:
            best = (score, host, node, gpus)
    if best is None:
        reason = "; ".join("%s: %s" % (h.name, ", ".join(h.reasons(request, groups))) for h in candidates)
        return reason or "there is no hypervisor"
    _score, host, node, gpus = best
    host.take(request, node, gpus)
    result[request.name] = dict(
        host=host.name,
        gpus=[g[1] for g in gpus],
        numa_node=node.id if node is not None else None,
        existing=False,
    )
    _note_group(request, host.name, groups)
    return None


def place_vms(
    requests, hosts, strategy="spread", memory_reserve="2GiB", memory_ratio=1.0, vcpu_ratio=4.0, fail_unplaced=True
):
    """``{vm name: {host, gpus, numa_node, existing}}`` for ``requests`` on ``hosts``
    (``{hypervisor name: kvm_host_info facts}``). See place_vms.yml."""
    if not isinstance(hosts, Mapping):
        raise PlacementError("The hypervisors must be a dict of kvm_host_info facts by name, got %r." % (hosts,))
    if requests is None:
        requests = []
    if isinstance(requests, (str, bytes, Mapping)) or not hasattr(requests, "__iter__"):
        raise PlacementError("The requests must be a list of dicts, got %r." % (requests,))
    options = _options(strategy, memory_reserve, memory_ratio, vcpu_ratio)
    parsed = [Request(entry, index) for index, entry in enumerate(requests)]
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise PlacementError("The requests name VM(s) %s more than once." % ", ".join(twice))
    state = {name: Host(name, hosts[name], options) for name in sorted(hosts, key=str)}
    groups = {}  # anti-affinity group -> {host: [VMs]}
    result = {}
    pending = [r for r in parsed if not _keep_existing(r, state, groups, result)]
    failures = []
    for request in sorted(pending, key=Request.order):
        reason = _place_one(request, state, groups, result, strategy)
        if reason is not None:
            failures.append((request, reason))
            result[request.name] = dict(host=None, gpus=[], numa_node=None, existing=False, reason=reason)
    if failures and fail_unplaced:
        raise PlacementError(
            " ".join(
                "VM %s (%s) fits on no hypervisor: %s." % (request.name, request.words(), reason)
                for request, reason in sorted(failures, key=lambda f: f[0].name)
            )
        )
    return {name: result[name] for name in sorted(result)}


def _place_vms_filter(*args, **kwargs):
    # Ansible's controller modules are imported here, not at the top, so the function
    # above stays importable (and testable) without them.
    from ansible.errors import AnsibleFilterError

    try:
        return place_vms(*args, **kwargs)
    except PlacementError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"place_vms": _place_vms_filter}
