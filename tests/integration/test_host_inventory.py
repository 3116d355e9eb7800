# -*- coding: utf-8 -*-
"""Against the lab's libvirtd, with one diskless VM (it runs its firmware only, so
its interface on the lab network never gets a lease): a tag change applies to the
running VM live, without a restart; kvm_host_info counts the VM and reads the drain
marker; the inventory plugin kvm_vms lists the VM with its tags, in the group of
VMs without an address."""

from __future__ import annotations

import json
import os
import uuid

import libvirt
import pytest
import yaml

from ansible_collections.iaas.kvm.plugins.module_utils._domain_meta import METADATA_NS
from ansible_collections.iaas.kvm.plugins.module_utils._host import DRAIN_MARKER
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from tests.ansible_cli import ansible, unwrap
from tests.conftest import run_module
from tests.integration.conftest import LAB_NETWORK, LAB_URI
from tests.integration.vmtools import Made, diskless, kvm_vm, qemu_pid

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module")
def running_vm(lab_conn, lab_network):
    """The module's one VM: diskless, running, on the lab network, tagged."""
    with Made(lab_conn) as made:
        name = made.domain("iaastest-inv-%s" % uuid.uuid4().hex[:6])
        args = diskless(name, state="running", interfaces=[dict(network=LAB_NETWORK)], tags={"role": "web"})
        result = kvm_vm(args)
        assert not result.failed, result.get("msg")
        assert result["vm"]["state"] == "running" and result["vm"]["tags"] == {"role": "web"}
        yield name, args


def stored_tags(dom, flags):
    text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, flags)
    return {t.get("name"): t.text for t in parse_xml(text).findall("./tags/tag")}


def test_a_tag_change_applies_to_the_running_vm_without_a_restart(lab_conn, running_vm):
    name, args = running_vm
    dom = lab_conn.lookupByName(name)
    pid = qemu_pid(name)
    changed = dict(args, tags={"role": "db", "owner": "team-a"})
    predicted = kvm_vm(changed, check_mode=True)
    assert not predicted.failed, predicted.get("msg")
    assert predicted["actions"] == ["tags set"]
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_LIVE) == {"role": "web"}, "check mode changed the tags"
    result = kvm_vm(changed)
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["tags set"] and result["vm"]["tags"] == {"role": "db", "owner": "team-a"}
    assert result["restart_required"] is False
    # Both definitions hold the new tags, and the same QEMU process still runs the VM.
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_LIVE) == {"role": "db", "owner": "team-a"}
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_CONFIG) == {"role": "db", "owner": "team-a"}
    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
        element = parse_xml(dom.XMLDesc(flags)).find("./metadata/{%s}vm" % METADATA_NS)
        assert element is not None
    assert qemu_pid(name) == pid
    again = kvm_vm(changed)
    assert not again.failed, again.get("msg")
    assert not again.changed and again["restart_required"] is False
    info = run_module("kvm_vm_info", dict(uri=LAB_URI, name=[name]))
    assert not info.failed, info.get("msg")
    assert info["vms"][0]["tags"] == {"role": "db", "owner": "team-a"}
    # Back to the module's tags for the tests that follow.
    assert kvm_vm(args)["actions"] == ["tags set"]


def test_kvm_host_info_counts_the_vm_and_reads_the_drain_marker(lab_conn, running_vm, tmp_path):
    name, _args = running_vm
    facts = run_module("kvm_host_info", dict(uri=LAB_URI))
    assert not facts.failed, facts.get("msg")
    assert not facts.changed
    info = lab_conn.getInfo()
    assert facts["cpu"]["cpus"] == info[2] and facts["memory"]["total_mib"] == info[1]
    assert sum(len(n["cpus"]) for n in facts["numa_nodes"]) == info[2]
    assert facts["gpu_source"] == "sysfs"
    mine = {d["name"]: d for d in facts["domains"]}[name]
    assert (mine["state"], mine["running"], mine["vcpus"], mine["memory_mib"]) == ("running", True, 1, 64)
    assert mine["tags"] == {"role": "web"}
    running = [d for d in facts["domains"] if d["running"]]
    assert facts["committed"]["running"]["domains"] == len(running)
    assert facts["committed"]["running"]["memory_mib"] == sum(d["memory_max_mib"] for d in running)
    assert facts["committed"]["all"]["vcpus"] >= facts["committed"]["running"]["vcpus"] >= 1
    pool = {p["name"]: p for p in facts["pools"]}["default"]
    assert pool["active"] and pool["available"] == lab_conn.storagePoolLookupByName("default").info()[3]
    # The kernel's huge page counters, as sysfs shows them for node 0.
    node0 = "/sys/devices/system/node/node0/hugepages"
    sizes = sorted(int(d[len("hugepages-") : -len("kB")]) for d in os.listdir(node0))
    assert [p["size_kib"] for p in facts["numa_nodes"][0]["hugepages"]] == sizes
    assert facts["drained"] is os.path.exists(os.path.join("/", DRAIN_MARKER))

    marker = tmp_path / DRAIN_MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text("kernel update\n")
    drained = run_module("kvm_host_info", dict(uri=LAB_URI, root=str(tmp_path), sysfs_root="/sys"))
    assert not drained.failed, drained.get("msg")
    assert drained["drained"] is True and drained["drained_reason"] == "kernel update"


def test_the_inventory_plugin_lists_the_vm_without_an_address(running_vm, tmp_path):
    name, _args = running_vm
    config = tmp_path / "lab.kvm_vms.yml"
    config.write_text(
        yaml.safe_dump(
            dict(
                plugin="iaas.kvm.kvm_vms",
                hypervisors=[dict(uri=LAB_URI, name="lab")],
                keyed_groups=[dict(key="kvm_tags.role | default('none')", prefix="role")],
                on_unreachable="fail",
            )
        )
    )
    run = ansible("ansible-inventory", "-i", config, "--list", timeout=120)
    assert run.returncode == 0, run.stderr
    data = unwrap(json.loads(run.stdout))
    hostvars = data["_meta"]["hostvars"][name]
    assert hostvars["kvm_state"] == "running" and hostvars["kvm_hypervisor"] == "lab"
    assert hostvars["kvm_tags"] == {"role": "web"}
    (iface,) = hostvars["kvm_interfaces"]
    assert iface["network"] == LAB_NETWORK and iface["addresses"] == []
    assert "ansible_host" not in hostvars and hostvars["kvm_address"] is None
    for group in (
        "kvm_no_address",
        "kvm_hypervisor_lab",
        "kvm_state_running",
        "kvm_network_" + LAB_NETWORK,
        "role_web",
    ):
        assert name in data[group]["hosts"], group
