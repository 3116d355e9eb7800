# -*- coding: utf-8 -*-
"""The names the modules accept: libvirt object names and RFC 1123 host names."""

from __future__ import annotations

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_hostname, validate_name


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "a/b", "..", ".", "", ".hidden", "-rf", "a b", "x" * 256, "disk\n", "a..b.qcow2", None, 7],
)
def test_validate_name_rejects(name):
    with pytest.raises(LibvirtModuleError):
        validate_name(name)


@pytest.mark.parametrize("name", ["web1.qcow2", "debian-12_genericcloud+amd64.qcow2", "a:b@c", "x" * 255])
def test_validate_name_accepts(name):
    assert validate_name(name) == name


LABEL63 = "a" * 63


@pytest.mark.parametrize(
    "name",
    [
        "web1",
        "web-1",
        "1web",
        "a",
        "gpu-node-07.lab.example",
        LABEL63,
        ".".join([LABEL63] * 3 + ["a" * 61]),  # 253 characters
        "XN--BCHER-KVA.example",
    ],
)
def test_rfc1123_host_names_are_accepted(name):
    assert validate_hostname(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "web_1",
        "-web",
        "web-",
        "a" * 64,
        ".".join([LABEL63] * 3 + ["a" * 62]),  # 254 characters
        "web..lab",
        ".web",
        "web.",  # no trailing dot
        " web",
        "web 1",
        "wéb",
        None,
        42,
    ],
)
def test_other_names_are_refused_with_one_sentence(name):
    with pytest.raises(LibvirtModuleError) as info:
        validate_hostname(name, "reservation name")
    message = str(info.value)
    assert "is not a valid reservation name (RFC 1123" in message and message.endswith(".")
