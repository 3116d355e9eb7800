# -*- coding: utf-8 -*-
"""The gpu_host role converged with ansible-playbook against fake hosts (tests/fakesys.py):
a fake /etc, /proc and sysfs below a root prefix, with the fake kernel answering the binds.
Check mode changes nothing; the first run converges; the second reports changed=0.

The modules run on the hypervisor's Python (/usr/bin/python3 with the distribution's
python3-libvirt and python3-lxml), as in inventories/local."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fakesys import (
    HGX_NODE0,
    HGX_NODE1,
    scenario_boot_vga,
    scenario_gpu_audio,
    scenario_hgx,
    scenario_iommu_off,
)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INTERPRETER = os.environ.get("IAAS_KVM_TARGET_PYTHON", "/usr/bin/python3")

GRUB = """GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off iommu=soft"
GRUB_CMDLINE_LINUX=""
"""


def converge(host, variables, check=False, fails=False):
    """Run the role once; return (changed count, output). With ``fails``, the run must fail:
    return (None, output)."""
    playbook = host.root.parent / "iaastest-gpu-host.yml"
    lines = ["- name: Converge gpu_host", "  hosts: localhost", "  gather_facts: false", "  roles:"]
    lines += ["    - role: iaas.kvm.gpu_host", "      vars:", "        gpu_host_root: %s" % host.root]
    lines += ["        gpu_host_libvirt_uri: 'test:///default'"]
    lines += ["        %s: %s" % (k, v) for k, v in variables.items()]
    playbook.write_text("\n".join(lines) + "\n")
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        PATH="%s:%s" % (VENV_BIN, os.environ.get("PATH", "")),
    )
    command = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local"]
    command += ["-e", "ansible_python_interpreter=%s" % INTERPRETER, str(playbook)]
    if check:
        command += ["--check", "--diff"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    # The YAML callback folds long messages: compare with the whitespace collapsed.
    output = " ".join((result.stdout + result.stderr).split())
    if fails:
        assert result.returncode != 0, "the role was expected to fail: " + output
        assert re.search(r"localhost : ok=\d+ changed=0 unreachable=0 failed=1", output), output
        return None, output
    assert result.returncode == 0, result.stdout + result.stderr
    recap = re.search(r"localhost : ok=\d+ changed=(\d+) unreachable=0 failed=0", output)
    assert recap, output
    return int(recap.group(1)), output


def test_grub_host_converges_and_binds(fake_host):
    host = fake_host(build=scenario_gpu_audio, name="iaastest-root")
    (host.root / "etc/default/grub").write_text(GRUB)
    variables = {"gpu_host_devices": '["0000:01:00.0"]', "gpu_host_hugepages": 16}

    before = host.snapshot()
    changed, output = converge(host, variables, check=True)
    assert changed > 0
    assert host.snapshot() == before and host.events == [], "check mode changed the fake host"

    changed, output = converge(host, variables)
    assert changed > 0 and host.violations == []
    grub = (host.root / "etc/default/grub").read_text()
    assert (
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt default_hugepagesz=1G hugepagesz=1G hugepages=16"'
        in grub.splitlines()
    )
    assert grub.splitlines()[2].startswith("GRUB_DISTRIBUTOR=`lsb_release")
    assert (host.root / "etc/modules-load.d/iaas-kvm-vfio.conf").read_text().splitlines()[1:] == [
        "vfio",
        "vfio_iommu_type1",
        "vfio_pci",
    ]
    assert host.driver_of("0000:01:00.0") == "vfio-pci" and host.driver_of("0000:01:00.1") == "vfio-pci"
    assert "# device 0000:01:00.0 nvidia" in (host.root / "etc/modprobe.d/iaas-kvm-vfio.conf").read_text()
    assert "The running kernel lacks intel_iommu=on iommu=pt" in output

    converged = host.snapshot()
    changed, output = converge(host, variables)
    assert changed == 0, output
    changed, output = converge(host, variables, check=True)
    assert changed == 0, output
    assert host.snapshot() == converged and host.violations == []


def test_kernel_cmdline_host_with_a_selector(fake_host):
    host = fake_host(build=scenario_hgx, name="iaastest-root")
    host.set_cpu_vendor("AuthenticAMD")
    cmdline = host.root / "etc/kernel/cmdline"
    cmdline.parent.mkdir()
    cmdline.write_text("root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    (host.root / "etc/default/grub").write_text(GRUB)  # present but not the mechanism here
    variables = {"gpu_host_selector": "{vendor: nvidia, numa_node: 1, count: 4}", "gpu_host_persistent": "false"}

    changed, _output = converge(host, variables)
    assert changed > 0
    assert cmdline.read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n"
    assert (host.root / "etc/default/grub").read_text() == GRUB
    assert [host.driver_of(a) for a in HGX_NODE1] == ["vfio-pci"] * 4
    assert [host.driver_of(a) for a in HGX_NODE0] == ["nvidia"] * 4
    assert not (host.root / "etc/modprobe.d/iaas-kvm-vfio.conf").exists()

    converged = host.snapshot()
    changed, output = converge(host, variables)
    assert changed == 0, output
    assert host.snapshot() == converged and host.violations == []


def test_iommu_off_waits_for_the_reboot(fake_host):
    host = fake_host(build=scenario_iommu_off, name="iaastest-root")
    (host.root / "etc/default/grub").write_text(GRUB)
    variables = {"gpu_host_devices": '["0000:01:00.0"]'}

    changed, output = converge(host, variables)
    assert changed > 0
    assert "the GPUs are bound on the first run after the reboot" in output
    assert host.driver_of("0000:01:00.0") == "nvidia" and host.events == []
    changed, output = converge(host, variables)
    assert changed == 0, output


def test_a_refused_binding_stops_the_role_before_any_change(fake_host):
    # One refusal is enough here: every refusal path of the module is tested in
    # tests/unit/plugins/modules/test_kvm_gpu_passthrough.py; this proves the role asks first.
    host = fake_host(build=scenario_boot_vga, name="iaastest-root")
    (host.root / "etc/default/grub").write_text(GRUB)
    variables = {"gpu_host_devices": '["0000:01:00.0"]', "gpu_host_hugepages": 16}
    # Already on the IOMMU kernel arguments, so the binding does not wait for a reboot.
    host.set_cmdline(
        "BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt default_hugepagesz=1G hugepagesz=1G hugepages=16"
    )
    before = host.snapshot()
    for check in (True, False):
        _changed, output = converge(host, variables, check=check, fails=True)
        assert "Refusing to bind 0000:01:00.0 to vfio-pci: it is the boot VGA device" in output, output
        # Not the kernel command line, the modules-load.d file nor the modprobe.d file: nothing.
        assert host.snapshot() == before, "the refused role changed the host"
        assert host.events == [] and host.violations == []
