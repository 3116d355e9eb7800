# -*- coding: utf-8 -*-
"""kvm_gpu_info on this machine's real sysfs, read-only.

On any machine the query runs and reports the IOMMU state and exactly the display-class devices
that sysfs shows (none on the development machines). Where an NVIDIA GPU exists, the query must
find it with the right IDs, NUMA node, IOMMU group and BAR sizes, checked against lspci and
nvidia-smi where they are installed. Nothing here binds, unbinds or resets a device: the tests
compare every device's driver and driver_override before and after.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.integration.conftest import LAB_URI

pytestmark = [pytest.mark.lab]

SYS_PCI = "/sys/bus/pci/devices"
DISPLAY_CLASSES = (0x0300, 0x0302)


def _read(address, name):
    try:
        with open(os.path.join(SYS_PCI, address, name)) as handle:
            return handle.read().strip()
    except OSError:
        return None


def display_devices():
    """Display-class PCI functions as sysfs lists them, read here without the collection's code."""
    found = []
    for address in sorted(os.listdir(SYS_PCI)):
        pci_class = _read(address, "class")
        if pci_class and int(pci_class, 16) >> 8 in DISPLAY_CLASSES:
            found.append(address)
    return found


def nvidia_gpus():
    return [a for a in display_devices() if _read(a, "vendor") == "0x10de"]


def bindings():
    """Every PCI function's driver and driver_override: proof that a test changed nothing."""
    result = {}
    for address in os.listdir(SYS_PCI):
        link = os.path.join(SYS_PCI, address, "driver")
        driver = os.path.basename(os.readlink(link)) if os.path.islink(link) else None
        result[address] = (driver, _read(address, "driver_override"))
    return result


@pytest.fixture
def query(run_module):
    def run():
        before = bindings()
        result = run_module("kvm_gpu_info", dict(uri=LAB_URI))
        assert bindings() == before, "the query changed a device's driver"
        assert not result.failed, result.get("msg")
        assert not result.changed
        return result

    return run


def test_query_on_this_machine(query):
    result = query()
    groups = os.listdir("/sys/kernel/iommu_groups") if os.path.isdir("/sys/kernel/iommu_groups") else []
    assert result["iommu"]["enabled"] is bool(groups)
    assert result["iommu"]["groups"] == len(groups)
    assert result["iommu"]["evidence"]
    assert [gpu["address"] for gpu in result["gpus"]] == display_devices()
    if not display_devices():
        assert result["mmio64_mb"] is None


def _lspci_regions(address):
    """``{BAR index: size in bytes}`` of the memory regions lspci shows, or None without lspci."""
    lspci = shutil.which("lspci")
    if not lspci:
        return None
    text = subprocess.run([lspci, "-vv", "-s", address], capture_output=True, text=True, check=True).stdout
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    regions = {}
    for index, size, unit in re.findall(r"Region (\d+): Memory at .*?\[size=(\d+)([KMGT]?)\]", text):
        regions[int(index)] = int(size) * units[unit]
    return regions


@pytest.mark.skipif(not nvidia_gpus(), reason="no NVIDIA GPU on this machine")
def test_nvidia_gpu_facts(query):
    gpus = {gpu["address"]: gpu for gpu in query()["gpus"]}
    for address in nvidia_gpus():
        gpu = gpus[address]
        assert gpu["vendor_id"] == "10de"
        assert gpu["device_id"] == _read(address, "device")[2:].lower()
        assert int(gpu["pci_class"], 16) == int(_read(address, "class"), 16)
        node = int(_read(address, "numa_node") or -1)
        assert gpu["numa_node"] == (node if node >= 0 else None)
        group_link = os.path.join(SYS_PCI, address, "iommu_group")
        expected_group = int(os.path.basename(os.readlink(group_link))) if os.path.islink(group_link) else None
        assert gpu["iommu_group"] == expected_group
        if expected_group is not None:
            members = sorted(os.listdir("/sys/kernel/iommu_groups/%d/devices" % expected_group))
            assert [m["address"] for m in gpu["iommu_group_members"]] == members

        # BARs: from the resource file (start, end, flags per line), and from lspci where present.
        sizes = {}
        with open(os.path.join(SYS_PCI, address, "resource")) as handle:
            for index, line in enumerate(handle.read().splitlines()[:6]):
                start, end, flags = (int(field, 16) for field in line.split())
                if flags & 0x200 and end > start:
                    sizes[index] = end - start + 1
        assert {region["index"]: region["size"] for region in gpu["bars"]} == sizes
        assert gpu["bar64_bytes"] > 0, "an NVIDIA GPU has at least one 64-bit BAR"
        assert gpu["mmio64_mb"] * 1024 * 1024 >= gpu["bar64_bytes"]
        regions = _lspci_regions(address)
        if regions is not None:
            assert {region["index"]: region["size"] for region in gpu["bars"]} == regions
        assert "bus='0x%s'" % address[5:7] in gpu["hostdev_xml"].replace('"', "'")

    smi = shutil.which("nvidia-smi")
    if smi:
        text = subprocess.run(
            [smi, "--query-gpu=pci.bus_id,pci.device_id", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in text.strip().splitlines():
            bus_id, device_id = (field.strip() for field in line.split(","))
            address = bus_id.lower()[-12:]  # 00000000:18:00.0 -> 0000:18:00.0
            assert gpus[address]["device_id"] == device_id.lower()[2:6]
