# -*- coding: utf-8 -*-
"""_mmio: the 64-bit MMIO window of large-BAR guests, their physical address width and the
<maxphysaddr> choice, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from ansible_collections.iaas.kvm.plugins.module_utils._mmio import (
    MmioError,
    check_window,
    choose_maxphysaddr,
    host_phys_bits,
    needed_phys_bits,
    slot_bytes,
    window_mb,
)
from tests.fakesys import GIB, MIB

H100 = [128 * GIB, 32 * MIB]  # the 64-bit BARs of one H100 SXM


@pytest.mark.parametrize(
    "total, expected",
    [(0, None), (1, 1), (MIB, 1), (MIB + 1, 2), (304 * MIB, 512), (128 * GIB + 32 * MIB, 256 * 1024)],
)
def test_window_of_one_slot(total, expected):
    assert window_mb([[total]]) == expected


@given(st.integers(min_value=1, max_value=2**50))
def test_window_is_the_smallest_power_of_two_that_fits(total):
    window = window_mb([[total]])
    assert window & (window - 1) == 0
    assert window * MIB >= total
    assert window == 1 or (window // 2) * MIB < total


def test_root_port_windows_align_to_their_largest_bar():
    # 128 GiB + 32 MiB behind one root port takes two 128 GiB steps.
    assert slot_bytes(H100) == 256 * GIB
    assert slot_bytes([]) == 0 and slot_bytes([0]) == 0
    # Eight H100s: 8 x 256 GiB = 2 TiB; four: 1 TiB.
    assert window_mb([H100] * 8) == 2 * 1024 * 1024
    assert window_mb([H100] * 4) == 1024 * 1024
    assert window_mb([]) is None


@pytest.mark.parametrize(
    "memory_mib, window_mib, bits",
    [
        (1024, None, 36),  # 4 GiB + 1 GiB of RAM, then the default 32 GiB window at 32 GiB: ends at 64 GiB
        (512 * 1024, 1024 * 1024, 41),  # 516 GiB of RAM, a 1 TiB window at 1 TiB: ends at 2 TiB
        (1024 * 1024, 2 * 1024 * 1024, 42),  # 1 TiB of RAM, 2 TiB window at 2 TiB: ends at 4 TiB
        (2 * 1024 * 1024, 2 * 1024 * 1024, 43),  # 2 TiB + 4 GiB of RAM push the window to 4 TiB
    ],
)
def test_needed_phys_bits(memory_mib, window_mib, bits):
    assert needed_phys_bits(memory_mib, window_mib) == bits


@pytest.mark.parametrize(
    "need, host_bits, cpu_mode, version, explicit, expected",
    [
        (38, 46, None, 9000000, None, None),  # QEMU's 40 bits suffice: nothing to set
        (42, 46, "host-passthrough", 9000000, None, "passthrough"),
        (42, 46, "host-model", 9000000, None, 42),
        (42, 46, None, 9000000, 44, 44),  # the task's width wins when it is enough
        (42, 46, "host-passthrough", 8007000, "passthrough", "passthrough"),
    ],
)
def test_maxphysaddr_choice(need, host_bits, cpu_mode, version, explicit, expected):
    assert choose_maxphysaddr(need, host_bits, cpu_mode, version, explicit) == expected


@pytest.mark.parametrize(
    "need, host_bits, cpu_mode, version, explicit, message",
    [
        (47, 46, None, 9000000, None, r"needs a 47-bit physical address space .* this host's CPUs have 46 bits"),
        (42, 46, None, 8006000, None, r"libvirt 8\.6\.0 here cannot set one \(<maxphysaddr> needs libvirt 8\.7\.0"),
        (42, 46, "host-model", 9000000, "passthrough", r"^maxphysaddr passthrough needs cpu_mode host-passthrough"),
        (42, 46, None, 9000000, 41, r"^maxphysaddr 41 is too small: .* need 42 bits\.$"),
        (42, 46, None, 9000000, 48, r"^maxphysaddr 48 is more than this host's CPUs have \(46 bits\)\.$"),
    ],
)
def test_maxphysaddr_contradictions(need, host_bits, cpu_mode, version, explicit, message):
    with pytest.raises(MmioError, match=message):
        choose_maxphysaddr(need, host_bits, cpu_mode, version, explicit)


def test_window_choice():
    assert check_window(None, None, "uefi") is None
    assert check_window(None, 4096, "uefi") == 4096
    assert check_window(262144, None, "uefi") == 262144
    assert check_window(262144, 524288, "uefi") == 524288  # the task's window wins when it is enough
    assert check_window(512, None, "uefi") is None  # OVMF's default 32 GiB window holds them: left alone
    assert check_window(512, None, "bios") is None  # and so does SeaBIOS's
    with pytest.raises(MmioError, match=r"^mmio64_mb 256 is too small"):
        check_window(512, 256, "uefi")
    with pytest.raises(MmioError, match=r"^mmio64_mb 1024 is too small .* which need 262144 MiB"):
        check_window(262144, 1024, "uefi")
    with pytest.raises(MmioError, match=r"a BIOS \(SeaBIOS\) guest has only QEMU's default 32768 MiB; use firmware"):
        check_window(262144, None, "bios")


def test_host_phys_bits(tmp_path):
    caps = parse_xml("<capabilities><host><cpu><maxphysaddr mode='emulate' bits='52'/></cpu></host></capabilities>")
    assert host_phys_bits(caps, str(tmp_path)) == 52
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\naddress sizes\t: 46 bits physical, 57 bits virtual\n")
    assert host_phys_bits(parse_xml("<capabilities><host><cpu/></host></capabilities>"), str(tmp_path)) == 46
    assert host_phys_bits(None, str(tmp_path / "iaastest-none")) is None
