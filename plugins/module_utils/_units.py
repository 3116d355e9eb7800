# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Size parsing shared by every module of the collection.

All suffixes are binary, as in qemu-img: ``K``/``KiB`` = 1024, ``M``/``MiB`` =
1024**2, ``G``/``GiB`` = 1024**3, ``T``/``TiB`` = 1024**4, ``P``/``PiB`` =
1024**5. ``B`` means bytes. A plain integer (or a string of digits) is
counted in the caller's default unit: bytes for volume capacities, MiB for
memory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_MULTIPLIERS = {
    "": None,  # the caller's default unit
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
    "p": 1024**5,
    "pb": 1024**5,
    "pib": 1024**5,
}

UNIT_BYTES = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}

_SIZE_RE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<suffix>[A-Za-z]*)\s*$")


class SizeError(ValueError):
    """Raised with a one-sentence message when a size cannot be parsed."""


def parse_size(value, default_unit="B", name="size"):
    """Return ``value`` in bytes as an int.

    ``value`` may be an int (counted in ``default_unit``) or a string such as
    ``20G``, ``512MiB``, ``1.5GiB`` or ``4096``. Negative numbers, unknown
    suffixes and fractions of a byte raise SizeError. Zero is returned as 0; a
    caller that needs a positive size checks for it.
    """
    if default_unit not in UNIT_BYTES:
        raise ValueError("unknown default unit %r" % (default_unit,))
    if isinstance(value, bool):
        raise SizeError("%s must be a size such as 20G or 512MiB, not a boolean." % name)
    if isinstance(value, int):
        if value < 0:
            raise SizeError("%s must not be negative, got %d." % (name, value))
        return value * UNIT_BYTES[default_unit]
    if isinstance(value, float):
        value = repr(value)
    if not isinstance(value, str):
        raise SizeError("%s must be a size such as 20G or 512MiB, got %r." % (name, value))
    match = _SIZE_RE.match(value)
    if not match:
        raise SizeError(
            "%s %r is not a size: use a non-negative number with an optional suffix "
            "B, K/KiB, M/MiB, G/GiB, T/TiB or P/PiB." % (name, value)
        )
    suffix = match.group("suffix").lower()
    if suffix not in _MULTIPLIERS:
        raise SizeError(
            "%s %r has an unknown unit %r: use B, K/KiB, M/MiB, G/GiB, T/TiB or P/PiB."
            % (name, value, match.group("suffix"))
        )
    multiplier = _MULTIPLIERS[suffix]
    if multiplier is None:
        multiplier = UNIT_BYTES[default_unit]
    number = match.group("number")
    if "." in number:
        whole, frac = number.split(".")
        numerator = int(whole + frac) * multiplier
        denominator = 10 ** len(frac)
        if numerator % denominator:
            raise SizeError("%s %r is not a whole number of bytes." % (name, value))
        return numerator // denominator
    return int(number) * multiplier


def format_size(num_bytes):
    """Return the shortest exact binary representation, e.g. ``20GiB`` or ``1536MiB``."""
    num_bytes = int(num_bytes)
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        size = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "PiB": 1024**5}[unit]
        if num_bytes and num_bytes % size == 0:
            return "%d%s" % (num_bytes // size, unit)
    return "%dB" % num_bytes


def to_unit(num_bytes, unit):
    """Convert bytes to a whole number of ``unit`` (rounding up)."""
    size = UNIT_BYTES[unit]
    return -(-int(num_bytes) // size)
