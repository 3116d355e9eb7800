# -*- coding: utf-8 -*-
"""A read-only check of kvm_gpu_info's view of a real NVIDIA host.

Runs with the host's own ``python3`` alone (no Ansible, no network, no pytest): it imports the
collection's module_utils from this checkout, builds the same view kvm_gpu_info returns (NUMA
node, BAR sizes, IOMMU group, SR-IOV, NVSwitches and boards), and compares it with what
``lspci -D -vv -nn``, ``nvidia-smi topo -m`` and ``nvidia-smi -q`` say. It only reads: sysfs, and
the output of those tools. It never binds, unbinds, resets or changes a device.

    python3 tests/hardware/check_nvidia_host.py            # on the GPU host, from the checkout

Exit status: 0 when everything agrees, 1 when something differs (each difference is printed),
77 when the check cannot run here (no NVIDIA GPU, or neither tool installed), with the reason.
``--lspci``, ``--topo`` and ``--smi`` read saved outputs instead of running the tools, and
``--root``/``--sysfs-root`` point at another tree (the unit tests use both).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "collections"))

from ansible_collections.iaas.kvm.plugins.module_utils._cpus import format_cpus, parse_cpus  # noqa: E402
from ansible_collections.iaas.kvm.plugins.module_utils._gpu import (  # noqa: E402
    HostView,
    board_facts,
    gather_gpus,
    nvswitch_facts,
)
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import Sysfs  # noqa: E402

SKIP = 77
NVIDIA = "10de"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DEVICE_RE = re.compile(
    r"^([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) .*\[([0-9a-f]{4})\]: .*\[([0-9a-f]{4}):([0-9a-f]{4})\]"
)
_REGION_RE = re.compile(
    r"^\s+Region (\d+): Memory at \S+ \((64|32)-bit, (?:non-)?prefetchable\).*\[size=(\d+)([KMGT]?)\]"
)
_VFS_RE = re.compile(r"Total VFs: (\d+), Number of VFs: (\d+)")


# -- parsing the tools' output ------------------------------------------------------------


def parse_lspci(text):
    """``{address: {class, vendor, device, numa_node, iommu_group, regions, sriov}}`` from
    ``lspci -D -vv -nn``. ``numa_node`` and ``iommu_group`` are None where lspci does not print
    them (older pciutils); ``sriov`` is ``(total VFs, VFs)`` or None."""
    devices = {}
    current = None
    for line in text.splitlines():
        match = _DEVICE_RE.match(line)
        if match:
            address, pci_class, vendor, device = match.groups()
            current = dict(class_=pci_class, vendor=vendor, device=device, numa_node=None, iommu_group=None)
            current.update(regions={}, sriov=None)
            devices[address] = current
            continue
        if current is None:
            continue
        _parse_lspci_line(current, line)
    return devices


def _parse_lspci_line(current, line):
    stripped = line.strip()
    region = _REGION_RE.match(line)
    if region:
        index, _bits, size, unit = region.groups()
        current["regions"][int(index)] = int(size) * _UNITS[unit]
    elif stripped.startswith("NUMA node:"):
        current["numa_node"] = int(stripped.split(":", 1)[1])
    elif stripped.startswith("IOMMU group:"):
        current["iommu_group"] = int(stripped.split(":", 1)[1])
    elif _VFS_RE.search(stripped):
        total, enabled = _VFS_RE.search(stripped).groups()
        current["sriov"] = (int(total), int(enabled))


def parse_topo(text):
    """``{"GPU0": {links: {"GPU1": "NV18", ...}, cpus: "0-55", numa: 0 or None}}`` from
    ``nvidia-smi topo -m`` (the matrix above its legend)."""
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("Legend")]
    header = None
    result = {}
    for line in rows:
        cells = [c.strip() for c in line.split("\t")]
        if header is None and cells and cells[0] == "" and any(c.startswith("GPU") for c in cells):
            header = cells
            continue
        if header is None or not re.match(r"^GPU\d+$", cells[0]):
            continue
        values = dict(zip(header[1:], cells[1:]))
        links = {k: v for k, v in values.items() if re.match(r"^GPU\d+$", k) and k != cells[0]}
        numa = values.get("NUMA Affinity", "N/A")
        result[cells[0]] = dict(
            links=links,
            cpus=values.get("CPU Affinity"),
            numa=int(numa) if numa.isdigit() else None,
        )
    return result


def parse_smi(text):
    """``[{address, device, vendor, bar1_mib, product}]`` in nvidia-smi's GPU order, from ``nvidia-smi -q``."""
    gpus = []
    section = None
    for line in text.splitlines():
        header = re.match(r"^GPU ([0-9A-Fa-f]{8}):([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2})\.([0-7])$", line.strip())
        if header and not line.startswith(" "):
            domain, bus, slot, function = header.groups()
            gpus.append(dict(address="%04x:%s:%s.%s" % (int(domain, 16), bus.lower(), slot.lower(), function)))
            gpus[-1].update(device=None, vendor=None, bar1_mib=None, product=None)
            continue
        if not gpus or ":" not in line:
            section = line.strip() or section
            continue
        key, _sep, value = (part.strip() for part in line.partition(":"))
        if not value:
            section = key
        elif key == "Product Name":
            gpus[-1]["product"] = value
        elif key == "Device Id":
            ids = value.lower().replace("0x", "")
            gpus[-1]["device"], gpus[-1]["vendor"] = ids[:4], ids[4:]
        elif key == "Total" and section == "BAR1 Memory Usage":
            gpus[-1]["bar1_mib"] = int(value.split()[0])
    return gpus


# -- comparing -------------------------------------------------------------------------------


def _compare_lspci(gpu, seen, problems):
    address = gpu["address"]
    if seen is None:
        problems.append("%s: lspci does not show it" % address)
        return
    regions = {b["index"]: b["size"] for b in gpu["bars"]}
    if seen["regions"] != regions:
        problems.append("%s: BARs %s in kvm_gpu_info, %s in lspci" % (address, regions, seen["regions"]))
    for key, ours in (("numa_node", gpu["numa_node"]), ("iommu_group", gpu["iommu_group"])):
        if seen[key] is not None and seen[key] != ours:
            problems.append("%s: %s %s in kvm_gpu_info, %s in lspci" % (address, key, ours, seen[key]))
    sriov = gpu["sriov"]
    ours = (sriov["total_vfs"], sriov["num_vfs"]) if sriov else None
    if seen["sriov"] != ours:
        problems.append("%s: SR-IOV (total, enabled) %s in kvm_gpu_info, %s in lspci" % (address, ours, seen["sriov"]))


def _compare_smi(gpu, seen, problems):
    address = gpu["address"]
    if seen["device"] != gpu["device_id"]:
        problems.append("%s: device %s in kvm_gpu_info, %s in nvidia-smi" % (address, gpu["device_id"], seen["device"]))
    bar1 = [b["size"] for b in gpu["bars"] if b["index"] == 1]
    if seen["bar1_mib"] is not None and bar1 and bar1[0] // (1024 * 1024) != seen["bar1_mib"]:
        problems.append(
            "%s: BAR1 %d MiB in kvm_gpu_info, %d MiB in nvidia-smi" % (address, bar1[0] >> 20, seen["bar1_mib"])
        )


def _compare_topo(gpus, order, topo, problems):
    """NUMA and CPU affinity per GPU, and NVLink: GPUs joined by NV# links share a board."""
    boards = {g["address"]: g["board"] for g in gpus}
    by_name = {"GPU%d" % i: address for i, address in enumerate(order)}
    facts = {g["address"]: g for g in gpus}
    for name, row in topo.items():
        address = by_name.get(name)
        if address not in facts:
            problems.append("%s of nvidia-smi topo -m is not a GPU kvm_gpu_info shows" % name)
            continue
        gpu = facts[address]
        if row["numa"] is not None and row["numa"] != gpu["numa_node"]:
            problems.append(
                "%s: NUMA node %s in kvm_gpu_info, %s in topo -m" % (address, gpu["numa_node"], row["numa"])
            )
        if (
            row["cpus"]
            and gpu["local_cpus"]
            and format_cpus(parse_cpus(row["cpus"])) != format_cpus(parse_cpus(gpu["local_cpus"]))
        ):
            problems.append(
                "%s: local CPUs %s in kvm_gpu_info, %s in topo -m" % (address, gpu["local_cpus"], row["cpus"])
            )
        for other, link in row["links"].items():
            peer = by_name.get(other)
            if link.startswith("NV") and (boards.get(address) is None or boards.get(address) != boards.get(peer)):
                problems.append(
                    "%s and %s: NVLink (%s) in topo -m, not on one board in kvm_gpu_info" % (address, peer, link)
                )


def compare(view, lspci=None, topo=None, smi=None):
    """The differences between kvm_gpu_info's view and the tools' (sentences; empty: they agree)."""
    gpus, _window = gather_gpus(view)
    gpus = [g for g in gpus if g["vendor_id"] == NVIDIA and not g["physfn"]]
    problems = []
    if lspci is not None:
        for gpu in gpus:
            _compare_lspci(gpu, lspci.get(gpu["address"]), problems)
        switches = sorted(a for a, d in lspci.items() if d["vendor"] == NVIDIA and d["class_"] == "0680")
        ours = [s["address"] for s in nvswitch_facts(view)]
        if switches != ours:
            problems.append("NVSwitches %s in kvm_gpu_info, %s in lspci" % (ours, switches))
    order = [g["address"] for g in smi] if smi is not None else sorted(g["address"] for g in gpus)
    if smi is not None:
        facts = {g["address"]: g for g in gpus}
        if sorted(order) != sorted(facts):
            problems.append("GPUs %s in kvm_gpu_info, %s in nvidia-smi" % (sorted(facts), sorted(order)))
        for seen in smi:
            if seen["address"] in facts:
                _compare_smi(facts[seen["address"]], seen, problems)
    if topo is not None:
        _compare_topo(gpus, order, topo, problems)
    return problems


# -- running -----------------------------------------------------------------------------------


def _read_or_run(path, command):
    """A saved output, else the tool's output, else None when the tool is not installed."""
    if path:
        with open(path) as handle:
            return handle.read()
    if shutil.which(command[0]) is None:
        return None
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def skip_reason(view, outputs):
    """Why the check cannot run on this host, or None."""
    if not [a for a in view.gpus() if view.devices[a]["vendor_id"] == NVIDIA]:
        return "no NVIDIA GPU under %s" % view.sysfs.path("bus", "pci", "devices")
    if all(output is None for output in outputs):
        return "neither lspci (pciutils) nor nvidia-smi is installed"
    return None


def main(argv=None, out=sys.stdout):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--root", default="/")
    parser.add_argument("--sysfs-root")
    parser.add_argument("--lspci", help="a saved output of lspci -D -vv -nn")
    parser.add_argument("--topo", help="a saved output of nvidia-smi topo -m")
    parser.add_argument("--smi", help="a saved output of nvidia-smi -q")
    args = parser.parse_args(argv)
    view = HostView(Sysfs(args.sysfs_root or os.path.join(args.root, "sys")), args.root)
    lspci = _read_or_run(args.lspci, ["lspci", "-D", "-vv", "-nn"])
    topo = _read_or_run(args.topo, ["nvidia-smi", "topo", "-m"])
    smi = _read_or_run(args.smi, ["nvidia-smi", "-q"])
    reason = skip_reason(view, (lspci, topo, smi))
    if reason:
        print("SKIP: %s" % reason, file=out)
        return SKIP
    problems = compare(
        view,
        parse_lspci(lspci) if lspci is not None else None,
        parse_topo(topo) if topo is not None else None,
        parse_smi(smi) if smi is not None else None,
    )
    compared = [name for name, output in (("lspci", lspci), ("topo -m", topo), ("nvidia-smi -q", smi)) if output]
    gpus = [a for a in view.gpus() if view.devices[a]["vendor_id"] == NVIDIA]
    boards = board_facts(view)
    print(
        "GPUs: %s; NVSwitch boards: %s; compared with %s" % (", ".join(gpus), boards or "none", ", ".join(compared)),
        file=out,
    )
    for problem in problems:
        print("MISMATCH: %s" % problem, file=out)
    print("OK: kvm_gpu_info agrees with the tools" if not problems else "%d mismatch(es)" % len(problems), file=out)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
