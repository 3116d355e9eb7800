# -*- coding: utf-8 -*-
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.iaas.kvm.plugins.module_utils._units import SizeError, format_size, parse_size

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    "value, default_unit, expected",
    [
        ("20G", "B", 20 * GIB),
        ("20g", "B", 20 * GIB),
        ("20GiB", "B", 20 * GIB),
        ("20GB", "B", 20 * GIB),
        ("512MiB", "B", 512 * MIB),
        ("512M", "B", 512 * MIB),
        ("2GiB", "MiB", 2 * GIB),
        ("1T", "B", TIB),
        ("4K", "B", 4 * KIB),
        ("1.5G", "B", 1536 * MIB),
        ("100B", "B", 100),
        ("4096", "B", 4096),
        (4096, "B", 4096),
        (1024, "MiB", GIB),
        ("1024", "MiB", GIB),
        (" 8 GiB ", "B", 8 * GIB),
        ("0", "B", 0),
    ],
)
def test_parse_size_table(value, default_unit, expected):
    assert parse_size(value, default_unit) == expected


@pytest.mark.parametrize("value", ["-1G", "12Q", "G", "", "1.2.3G", "one", "1e9", True, None, [1], -5, "0.3B"])
def test_parse_size_rejects(value):
    with pytest.raises(SizeError) as err:
        parse_size(value, "B", name="capacity")
    message = str(err.value)
    assert "capacity" in message
    assert message.endswith(".")


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from(["K", "KiB", "M", "MiB", "G", "GiB", "T", "TiB"]))
def test_suffix_is_binary_multiple(number, suffix):
    factor = {"K": KIB, "M": MIB, "G": GIB, "T": TIB}[suffix[0]]
    assert parse_size("%d%s" % (number, suffix)) == number * factor


@given(st.integers(min_value=0, max_value=2**60))
def test_format_then_parse_round_trip(num_bytes):
    assert parse_size(format_size(num_bytes)) == num_bytes


@given(st.integers(min_value=0, max_value=2**40))
def test_plain_integer_uses_default_unit(number):
    assert parse_size(number, "MiB") == number * MIB
    assert parse_size(str(number), "MiB") == number * MIB
    assert parse_size(number, "B") == number
