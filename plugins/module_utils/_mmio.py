# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large BARs: the guest firmware's 64-bit MMIO window and the guest's physical
address width, from the BAR sizes of the devices a guest gets.

- Every passed-through slot sits behind its own PCIe root port, whose window is
  aligned to its largest BAR; the OVMF window (``X-PciMmio64Mb``) is their sum
  rounded up to a power of two.
- OVMF places that window above the guest's RAM, aligned to its own size, so the
  guest needs a physical address width that reaches its end; QEMU gives CPU
  models other than host-passthrough 40 bits unless told otherwise
  (``<maxphysaddr>``, libvirt 8.7.0 and later).
- Without ``X-PciMmio64Mb`` OVMF opens a 32 GiB window (the OVMF of Debian 12 and
  Ubuntu 22.04; later ones size it from the address width), so the window is set
  only for BARs that need more: a smaller one would shrink it for every device.
- SeaBIOS (``firmware: bios``) maps 64-bit BARs into QEMU's default 64-bit PCI
  hole (32 GiB on q35), which nothing in the domain sizes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

MIB = 1024 * 1024
GIB = 1024 * MIB
# What QEMU gives a guest CPU that is not host-passthrough (TCG_PHYS_ADDR_BITS and the KVM default).
QEMU_DEFAULT_PHYS_BITS = 40
# QEMU's default 64-bit PCI hole on q35 (Q35_PCI_HOST_HOLE64_SIZE_DEFAULT), all SeaBIOS can use,
# and OVMF's default window (PcdPciMmio64Size).
DEFAULT_WINDOW_MB = 32 * 1024
# libvirt's <maxphysaddr> (modes passthrough and emulate) came with 8.7.0.
MAXPHYSADDR_LIBVIRT = 8007000

_ADDRESS_SIZES_RE = re.compile(r"^address sizes\s*:\s*(\d+) bits physical", re.MULTILINE)


class MmioError(Exception):
    """The guest cannot map its devices' BARs, as a sentence."""


def slot_bytes(sizes):
    """The window one root port needs for a slot's 64-bit BARs of ``sizes`` bytes: their sum,
    rounded up to a multiple of the largest (a bridge window is aligned to its largest BAR)."""
    sizes = [size for size in sizes if size > 0]
    if not sizes:
        return 0
    largest = max(sizes)
    return -(-sum(sizes) // largest) * largest


def window_mb(slots):
    """The 64-bit MMIO window in MiB for slots of 64-bit BAR sizes (a list of lists): the sum of
    their root port windows rounded up to a power of two; None when no slot has a 64-bit BAR."""
    total = sum(slot_bytes(sizes) for sizes in slots)
    if not total:
        return None
    mib = -(-total // MIB)
    size = 1
    while size < mib:
        size *= 2
    return size


def needed_phys_bits(memory_mib, window_mib=None):
    """The guest physical address width that reaches the end of the 64-bit window (the default
    one when ``window_mib`` is None), which the firmware places above all guest RAM (counted from
    4 GiB, the most it can start at), aligned to its size."""
    top = 4 * GIB + memory_mib * MIB
    window = (window_mib or DEFAULT_WINDOW_MB) * MIB
    top = -(-top // window) * window + window
    return (top - 1).bit_length()


def host_phys_bits(capabilities=None, root="/"):
    """The host CPUs' physical address width: from libvirt's host capabilities
    (``<maxphysaddr bits>``, libvirt 8.7.0 and later), else ``<root>/proc/cpuinfo``; None when unknown."""
    if capabilities is not None:
        node = capabilities.find("./host/cpu/maxphysaddr")
        if node is not None and (node.get("bits") or "").isdigit():
            return int(node.get("bits"))
    try:
        with open(os.path.join(root, "proc", "cpuinfo")) as handle:
            match = _ADDRESS_SIZES_RE.search(handle.read())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _version(number):
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


def choose_maxphysaddr(need, host_bits, cpu_mode, libvirt_version, explicit=None):
    """The ``<maxphysaddr>`` of a guest that needs ``need`` address bits: ``None`` (QEMU's default
    suffices), ``"passthrough"`` or an integer (``emulate`` with that many bits). ``explicit`` (the
    task's value) wins when it is enough; any contradiction raises MmioError."""
    if host_bits is not None and need > host_bits:
        raise MmioError(
            "The guest needs a %d-bit physical address space for its memory and its devices' 64-bit BARs, "
            "and this host's CPUs have %d bits; give it less memory or fewer GPUs." % (need, host_bits)
        )
    wanted = explicit
    if wanted is None:
        if need <= QEMU_DEFAULT_PHYS_BITS:
            return None
        wanted = "passthrough" if cpu_mode == "host-passthrough" else need
    if libvirt_version < MAXPHYSADDR_LIBVIRT:
        raise MmioError(
            "The guest needs a %d-bit physical address space and libvirt %s here cannot set one "
            "(<maxphysaddr> needs libvirt 8.7.0 or later); upgrade libvirt or give the guest fewer GPUs."
            % (need, _version(libvirt_version))
        )
    if wanted == "passthrough":
        if cpu_mode != "host-passthrough":
            raise MmioError(
                "maxphysaddr passthrough needs cpu_mode host-passthrough, not %s; give maxphysaddr a number "
                "of bits instead." % (cpu_mode or "libvirt's default")
            )
        return wanted
    if wanted < need:
        raise MmioError(
            "maxphysaddr %d is too small: the guest's memory and its devices' 64-bit BARs need %d bits."
            % (wanted, need)
        )
    if host_bits is not None and wanted > host_bits:
        raise MmioError("maxphysaddr %d is more than this host's CPUs have (%d bits)." % (wanted, host_bits))
    return wanted


def check_window(needed_mb, explicit_mb, firmware):
    """The mmio64_mb to use: the task's when it is enough, else the computed one where the default
    window is too small (None: leave it); MmioError when the task's is too small or a BIOS guest
    cannot map the BARs."""
    if needed_mb is None:
        return explicit_mb
    if firmware == "bios":
        if needed_mb > DEFAULT_WINDOW_MB:
            raise MmioError(
                "The devices' 64-bit BARs need a %d MiB MMIO window, and a BIOS (SeaBIOS) guest has only QEMU's "
                "default %d MiB; use firmware: uefi." % (needed_mb, DEFAULT_WINDOW_MB)
            )
        return explicit_mb
    if explicit_mb is not None:
        if explicit_mb < needed_mb:
            raise MmioError(
                "mmio64_mb %d is too small for the devices' 64-bit BARs, which need %d MiB; leave it out to have "
                "it computed." % (explicit_mb, needed_mb)
            )
        return explicit_mb
    return needed_mb if needed_mb > DEFAULT_WINDOW_MB else None
