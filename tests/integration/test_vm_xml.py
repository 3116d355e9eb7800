# -*- coding: utf-8 -*-
"""The seed project's configs/ubuntu-simple.xml through kvm_vm's ``xml``, in the
lab: rendered as the playbooks render it (domain type, disk, console log), under
a test name, its disk an overlay of the base image."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from jinja2 import Template

from tests.integration.conftest import DOMAIN_TYPE, REPO
from tests.integration.guests import overlay
from tests.integration.vmtools import Made, kvm_vm, lookup_domain

pytestmark = [pytest.mark.lab, pytest.mark.guest]


def render(name, disk, network, console_log):
    text = Template((REPO / "configs" / "ubuntu-simple.xml").read_text()).render(
        ubuntu_simple_domain_type=DOMAIN_TYPE,
        ubuntu_simple_disk=disk,
        ubuntu_simple_network=network,
        ubuntu_simple_console_log=console_log,
        ubuntu_simple_name=name,
    )
    # A template without the name variable names the VM ubuntu-simple: rename it for the test.
    text = text.replace("<name>ubuntu-simple</name>", "<name>%s</name>" % name)
    assert "<name>%s</name>" % name in text
    return text


@pytest.fixture
def made(lab_conn):
    with Made(lab_conn) as things:
        yield things


def test_ubuntu_simple_xml_defined_converged_updated_and_removed(
    lab_conn, lab_network, default_pool, base_volume, made
):
    name = made.domain("iaastest-ubuntu-simple-%s" % uuid.uuid4().hex[:6])
    disk = overlay(default_pool, name + ".qcow2", base_volume)
    made.volumes.append(disk)
    console = made.console(name)
    xml = render(name, disk.path(), lab_network.name(), console)

    predicted = kvm_vm(dict(xml=xml, state="running"), check_mode=True)
    assert predicted.changed and predicted["actions"] == ["defined", "started"]
    assert lookup_domain(lab_conn, name) is None

    result = kvm_vm(dict(xml=xml, state="running"))
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["defined", "started"]
    vm = result["vm"]
    assert vm["state"] == "running" and vm["memory"] == 1024 and vm["vcpus"] == 1
    assert vm["disks"][0]["path"] == disk.path() and vm["console_log"] == console
    uuid_, mac = vm["uuid"], vm["interfaces"][0]["mac"]

    # The seed's flow: the XML as it is, again and again, changes nothing.
    assert not kvm_vm(dict(xml=xml, state="running")).changed
    assert not kvm_vm(dict(xml=xml, state="running"), check_mode=True).changed
    assert not kvm_vm(dict(name=name, xml=xml, state="present")).changed

    # More memory in the XML: redefined with the same UUID and MAC, effective at the next boot.
    bigger = xml.replace("<memory unit='KiB'>1048576</memory>", "<memory unit='GiB'>2</memory>").replace(
        "<currentMemory unit='KiB'>1048576</currentMemory>", "<currentMemory unit='GiB'>2</currentMemory>"
    )
    assert bigger != xml
    changed = kvm_vm(dict(xml=bigger, state="running"), diff=True)
    assert not changed.failed, changed.get("msg")
    assert changed.changed and changed["restart_required"]
    assert changed["vm"]["uuid"] == uuid_ and changed["vm"]["interfaces"][0]["mac"] == mac
    assert "2097152" in changed["diff"][1]["after"]
    assert not kvm_vm(dict(xml=bigger, state="running")).changed

    # Removed, its disk kept (absent keeps disks by default).
    removed = kvm_vm(dict(name=name, state="absent", force_stop=True, shutdown_timeout=5))
    assert not removed.failed, removed.get("msg")
    assert lookup_domain(lab_conn, name) is None
    default_pool.refresh(0)
    assert disk.name() in default_pool.listVolumes()
    assert Path(disk.path()).exists()
