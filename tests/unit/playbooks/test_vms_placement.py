# -*- coding: utf-8 -*-
"""playbooks/vms.yml's placement play (``--tags placement --skip-tags always``), run by ansible-playbook
against three hypervisors that are libvirt test drivers read from files: facts from
kvm_host_info on each, the placement printed, and a VM that fits nowhere stopping
the run with the reason per hypervisor. Nothing is created (only the placement
play runs)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.ansible_cli import ansible


def gpu_device(bus, device="2330"):
    return (
        "<device><name>pci_0000_%02x_00_0</name><parent>computer</parent><capability type='pci'>"
        "<class>0x030200</class><domain>0</domain><bus>%d</bus><slot>0</slot><function>0</function>"
        "<product id='0x%s'/><vendor id='0x10de'/></capability></device>" % (bus, bus, device)
    )


def hypervisor_xml(cpus, memory_gib, gpus=(), domains=""):
    return (
        "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>%d</cores><threads>2</threads><active>%d</active>"
        "<mhz>2000</mhz><model>x86_64</model></cpu><memory>%d</memory>%s"
        "<pool type='dir'><name>default</name><target><path>/default-pool</path></target></pool>%s</node>"
        % (cpus // 2, cpus, memory_gib * 1024 * 1024, domains, "".join(gpu_device(b) for b in gpus))
    )


OLD_TRAIN = (
    "<domain type='test'><name>old-train</name><memory unit='GiB'>16</memory><vcpu>4</vcpu><os><type>hvm</type></os>"
    "<devices><hostdev mode='subsystem' type='pci' managed='yes'><source>"
    "<address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source></hostdev></devices></domain>"
)


@pytest.fixture
def fleet(tmp_path):
    """hv1: 16 CPUs, 64 GiB, two H100s (one held by the running VM old-train); hv2: 8 CPUs,
    32 GiB, no GPU; hv3: drained. Each has its own empty root (no sysfs: GPUs from node devices)."""
    hosts = {}
    for name, xml in (
        ("hv1", hypervisor_xml(16, 64, gpus=(0x41, 0x42), domains=OLD_TRAIN)),
        ("hv2", hypervisor_xml(8, 32)),
        ("hv3", hypervisor_xml(32, 256)),
    ):
        (tmp_path / (name + ".xml")).write_text(xml)
        root = tmp_path / (name + "-root")
        root.mkdir()
        hosts[name] = dict(vm_uri="test://%s" % (tmp_path / (name + ".xml")), vms_host_root=str(root))
    marker = Path(hosts["hv3"]["vms_host_root"]) / "var/lib/iaas-kvm/drained"
    marker.parent.mkdir(parents=True)
    marker.write_text("disk replacement\n")
    inventory = dict(
        all=dict(
            children=dict(
                hypervisors=dict(
                    hosts=hosts,
                    vars=dict(ansible_connection="local", ansible_python_interpreter=sys.executable),
                ),
                vms=dict(hosts={"inv-1": dict(vm_vcpus=1, vm_memory="2GiB")}),
            )
        )
    )
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return tmp_path


MIXED = [
    dict(name="web-1", vcpus=2, memory="4GiB", anti_affinity="web"),
    dict(name="web-2", vcpus=2, memory="4GiB", anti_affinity="web"),
    dict(name="train-1", vcpus=8, memory="16GiB", gpu_count=1, gpu_model="10de:2330"),
    dict(name="old-train", vcpus=4, memory="16GiB", gpu_count=1),
    dict(name="pinned", vcpus=1, memory="1GiB", hypervisor="hv2"),
    dict(name="big-gpu", vcpus=8, memory="32GiB", gpu_count=2, gpu_model="10de:2330"),
]


def vms_placement(fleet, specs, extra=()):
    spec_file = fleet / "vms.yml"
    spec_file.write_text(yaml.safe_dump(dict(vms=specs)))
    return ansible(
        "ansible-playbook",
        "-i",
        fleet / "hosts.yml",
        "playbooks/vms.yml",
        "--tags",
        "placement",
        "--skip-tags",
        "always",
        "-e",
        "vms_file=%s" % spec_file,
        *extra,
    )


def printed_placement(output):
    """The vms_placement that the debug task printed (YAML, the repository's callback format)."""
    match = re.search(r"TASK \[The placement\].*?\n(ok: \[hv1\] => .*?)\n\n", output, re.S)
    assert match, output
    return yaml.safe_load(match.group(1).split("=>", 1)[1])["vms_placement"]


def test_a_mixed_request_is_printed_and_a_vm_that_fits_nowhere_stops_the_run(fleet):
    run = vms_placement(fleet, MIXED)
    print(run.stdout)
    assert run.returncode != 0, "the run should fail: big-gpu fits nowhere"
    placement = printed_placement(run.stdout)
    assert placement["old-train"] == dict(host="hv1", gpus=["0000:41:00.0"], numa_node=None, existing=True)
    assert placement["train-1"] == dict(host="hv1", gpus=["0000:42:00.0"], numa_node=None, existing=False)
    assert {placement["web-1"]["host"], placement["web-2"]["host"], placement["inv-1"]["host"]} <= {"hv1", "hv2"}
    assert placement["web-1"]["host"] != placement["web-2"]["host"]
    assert "pinned" not in placement  # it names its hypervisor: converged as before, not placed
    assert placement["big-gpu"]["host"] is None
    message = (
        "VM big-gpu (8 vCPUs, 32768 MiB, 2 GPUs of model 10de:2330) fits on no hypervisor: "
        "hv1: 1 free GPU of model 10de:2330, 2 asked; "
        "hv2: 30720 MiB of memory free, 32768 MiB asked, 0 free GPUs of model 10de:2330, 2 asked; "
        "hv3: drained (disk replacement), 0 free GPUs of model 10de:2330, 2 asked."
    )
    assert message in run.stdout
    assert "VM web-" not in run.stdout and "VM inv-1" not in run.stdout


def test_what_fits_is_placed_and_handed_on(fleet):
    specs = [s for s in MIXED if s["name"] not in ("big-gpu", "web-2")]
    run = vms_placement(fleet, specs, extra=["-e", "vms_placement_strategy=pack", "-v"])
    assert run.returncode == 0, run.stdout + run.stderr
    placement = printed_placement(run.stdout)
    assert placement["train-1"]["host"] == "hv1" and placement["web-1"]["host"] in ("hv1", "hv2")
    assert placement["inv-1"]["host"] in ("hv1", "hv2")
    # The spec file's VMs reach the play that converges them with a hypervisor each.
    handed = re.search(
        r"TASK \[Hand them to the play that converges the spec file's VMs\].*?\n(ok: .*?)\n\n", run.stdout, re.S
    )
    assert handed, run.stdout
    specs_out = yaml.safe_load(handed.group(1).split("=>", 1)[1])["ansible_facts"]["vms_specs"]
    assert {s["name"]: s.get("hypervisor") for s in specs_out} == {
        "web-1": placement["web-1"]["host"],
        "train-1": "hv1",
        "old-train": "hv1",
        "pinned": "hv2",
    }
    assert [s["gpus"] for s in specs_out if s["name"] == "train-1"] == [["0000:42:00.0"]]
