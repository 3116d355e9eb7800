# -*- coding: utf-8 -*-
"""Facts of made-up hypervisors in the shape iaas.kvm.kvm_host_info returns them,
for the placement filter's tests and benchmark (the filter's unit tests also feed
it facts the module gathered from libvirt's test driver)."""

from __future__ import annotations

H100 = "10de:2330"
L40S = "10de:26b9"


def gpu(address, model=H100, node=0, free=True, used_by=()):
    vendor, device = model.split(":")
    return dict(
        address=address,
        model=model,
        vendor_id=vendor,
        device_id=device,
        numa_node=node,
        passthrough_ready=True,
        used_by=list(used_by),
        free=free and not used_by,
    )


def domain(name, vcpus=2, memory_mib=2048, running=True, gpus=(), numa_node=None, hugepages=False, tags=None):
    return dict(
        name=name,
        state="running" if running else "stopped",
        running=running,
        persistent=True,
        vcpus=vcpus,
        vcpus_max=vcpus,
        memory_mib=memory_mib,
        memory_max_mib=memory_mib,
        numa_node=numa_node,
        hugepages=hugepages,
        gpus=[dict(address=a, model=None) for a in gpus],
        tags=dict(tags or {}),
    )


def host(
    name="hv",
    cpus=32,
    memory_mib=131072,
    nodes=2,
    gpus=(),
    domains=(),
    drained=False,
    reason=None,
    hugepages=None,
):
    """One hypervisor: ``nodes`` NUMA nodes sharing the CPUs and memory evenly;
    ``hugepages``: ``{node: {size_kib: (total, free)}}``."""
    per_cpu = cpus // nodes
    per_mem = memory_mib // nodes
    numa = []
    for index in range(nodes):
        pages = (hugepages or {}).get(index, {})
        numa.append(
            dict(
                id=index,
                cpus=list(range(index * per_cpu, (index + 1) * per_cpu)),
                memory_mib=per_mem,
                free_mib=per_mem,
                hugepages=[dict(size_kib=s, total=t, free=f) for s, (t, f) in sorted(pages.items())],
            )
        )
    domains = list(domains)
    gpus = [dict(g) for g in gpus]
    for entry in gpus:
        holders = [d["name"] for d in domains if entry["address"] in [g["address"] for g in d["gpus"]]]
        if holders:
            entry.update(used_by=holders, free=False)
    return dict(
        hostname=name,
        drained=drained,
        drained_reason=reason,
        cpu=dict(cpus=cpus, sockets=nodes, cores=cpus // 2, threads_per_core=2),
        memory=dict(total_mib=memory_mib, free_mib=memory_mib),
        numa_nodes=numa,
        committed=dict(
            all=dict(
                domains=len(domains),
                vcpus=sum(d["vcpus_max"] for d in domains),
                memory_mib=sum(d["memory_max_mib"] for d in domains),
            )
        ),
        domains=domains,
        gpus=gpus,
    )


def gpu_box(name, count=8, model=H100, **kwargs):
    """An HGX-like host: ``count`` GPUs, half on each of its two NUMA nodes."""
    gpus = [
        gpu("0000:%02x:00.0" % (0x18 + index), model, node=0 if index < count // 2 else 1) for index in range(count)
    ]
    kwargs.setdefault("cpus", 128)
    kwargs.setdefault("memory_mib", 1024 * 1024)
    return host(name, gpus=gpus, **kwargs)
