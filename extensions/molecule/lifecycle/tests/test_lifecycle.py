# -*- coding: utf-8 -*-
"""The "up" half of playbooks/vm_lifecycle.yml, verified on the hypervisor: the
seed project's VM is defined from configs/ubuntu-simple.xml, runs, boots from a
linked clone of the base image and shows a login prompt on its serial console."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest


def expected_domain_type():
    """The hypervisor role's rule: kvm only where the CPU offers hardware virtualisation."""
    hardware = re.search(r"\b(vmx|svm)\b", Path("/proc/cpuinfo").read_text())
    return "kvm" if hardware and Path("/dev/kvm").exists() else "qemu"


@pytest.fixture(scope="module")
def domain(conn, scenario):
    return conn.lookupByName(scenario["lifecycle_name"])


@pytest.fixture(scope="module")
def definition(domain):
    return ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def test_vm_is_defined_and_running(domain):
    assert domain.isPersistent()
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_definition_is_the_seed_xml_for_this_hypervisor(definition, scenario):
    assert definition.get("type") == expected_domain_type()
    assert definition.findtext("name") == scenario["lifecycle_name"]
    assert definition.findtext("vcpu") == "1"
    memory = definition.find("memory")
    assert (memory.get("unit"), memory.text) == ("KiB", "1048576")
    assert definition.find("os/type").get("machine").startswith("pc")
    assert definition.find("features/acpi") is not None
    (interface,) = definition.iter("interface")
    assert interface.find("source").get("network") == "default"


def test_disk_is_a_linked_clone_of_the_base_image(conn, definition, scenario):
    pool = conn.storagePoolLookupByName(scenario["lifecycle_pool"])
    disk = pool.storageVolLookupByName(scenario["lifecycle_disk"])
    base = pool.storageVolLookupByName(scenario["lifecycle_base_volume"])
    (disk_element,) = [d for d in definition.iter("disk") if d.get("device") == "disk"]
    assert disk_element.find("source").get("file") == disk.path()
    assert ET.fromstring(disk.XMLDesc(0)).findtext("backingStore/path") == base.path()


def test_serial_console_shows_a_login_prompt(definition, scenario, hypervisor):
    # The console stays a pty (virsh console works) and its output is logged to a file.
    serial = definition.find("devices/serial")
    assert serial.get("type") == "pty"
    log = serial.find("log")
    assert (log.get("file"), log.get("append")) == (scenario["lifecycle_console_log"], "on")
    assert definition.find("devices/console").get("type") == "pty"
    printed = hypervisor.file(scenario["lifecycle_console_log"]).content_string
    lines = [line.strip() for line in printed.splitlines() if line.strip()]
    assert lines, "the console log is empty"
    assert re.search(r"\blogin:$", lines[-1]), lines[-3:]
