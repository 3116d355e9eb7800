# -*- coding: utf-8 -*-
"""playbooks/gpu_vm.yml in check mode against a fake HGX host (tests/fakesys.py: a fake /etc,
/proc and sysfs below a root prefix) and libvirt's test driver: it changes nothing and prints the
domain XML it would define, with the GPUs that gpu_host would bind earlier in the same run taken
as bound (managed='no'), one NUMA cell and expander bus per node of the GPUs, and the computed
64-bit window and address width."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from lxml import etree

from tests.fakesys import HGX_NODE0, HGX_NODE1, HGX_NVSWITCHES

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INTERPRETER = os.environ.get("IAAS_KVM_TARGET_PYTHON", "/usr/bin/python3")
GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'


def playbook_check(host, variables):
    """``ansible-playbook playbooks/gpu_vm.yml --check`` against the fake host; (returncode, output)."""
    extra = dict(variables, gpu_hosts="localhost", gpu_vm_root=str(host.root), gpu_vm_uri="test:///default")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", ""))
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
    env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
    command = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check"]
    command += ["-e", "ansible_python_interpreter=%s" % INTERPRETER, "-e", json.dumps(extra)]
    command.append(str(REPO / "playbooks" / "gpu_vm.yml"))
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr


def shown_xml(output):
    """The domain XML of the playbook's last task (its debug message, in JSON)."""
    match = re.search(r"TASK \[Show the domain definition\].*?ok: \[localhost\] => (\{.*?\n\})", output, re.S)
    assert match, output
    return etree.fromstring(json.loads(match.group(1))["msg"].encode())


def test_check_mode_shows_the_eight_gpu_vm_it_would_define(fake_host):
    host = fake_host("hgx", name="iaastest-root")
    (host.root / "etc/default/grub").write_text(GRUB)
    host.set_cmdline("BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt")
    before = host.snapshot()
    code, output = playbook_check(
        host,
        dict(
            gpu_vm_name="iaastest-train8",
            gpu_vm_gpu_count=8,
            gpu_vm_gpu_model="2330",
            gpu_vm_vcpus=16,
            gpu_vm_memory="512GiB",
            gpu_vm_extra=dict(domain_type="qemu", cpu_mode="host-passthrough"),
        ),
    )
    assert code == 0, output
    assert host.snapshot() == before and host.events == [], "check mode changed the fake host"
    tree = shown_xml(output)
    board = sorted(HGX_NODE0 + HGX_NODE1 + HGX_NVSWITCHES)
    hostdevs = {}
    for hostdev in tree.findall("./devices/hostdev[@type='pci']"):
        source = hostdev.find("./source/address")
        hostdevs["%04x:%02x:%02x.%x" % tuple(int(source.get(k), 16) for k in ("domain", "bus", "slot", "function"))] = (
            hostdev.get("managed")
        )
    # The whole board (8 GPUs and their NVSwitches), all as gpu_host would leave them: on vfio-pci.
    assert hostdevs == dict.fromkeys(board, "no")
    assert [c.get("cpus") for c in tree.findall("./cpu/numa/cell")] == ["0-7", "8-15"]
    expanders = tree.findall("./devices/controller[@model='pcie-expander-bus']")
    assert sorted(e.findtext("./target/node") for e in expanders) == ["0", "1"]
    assert tree.find("./cpu/maxphysaddr").get("mode") == "passthrough"
    assert "name=opt/ovmf/X-PciMmio64Mb,string=2097152" in [
        a.get("value") for a in tree.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")
    ]


def test_too_few_gpus_stop_the_playbook_before_any_change(fake_host):
    host = fake_host("hgx", name="iaastest-root")
    (host.root / "etc/default/grub").write_text(GRUB)
    before = host.snapshot()
    code, output = playbook_check(host, dict(gpu_vm_name="iaastest-big", gpu_vm_gpu_count=9, gpu_vm_gpu_model="H100"))
    assert code != 0, "nine H100s on an eight-GPU host were expected to fail"
    assert "9 free GPU(s) of nvidia H100 were asked for, and this host has" in " ".join(output.split()), output
    assert host.snapshot() == before
