# -*- coding: utf-8 -*-
"""tests/hardware/check_nvidia_host.py, the read-only check for a real NVIDIA host, where there is
none: its parsers, its comparison and its skip path, against a fake host (tests/fakesys.py) and
saved tool outputs.

The outputs in tests/unit/hardware/samples are not captured from a machine (no GPU host is
available to this project): they were written by hand, for the fake host below, following the
formats that the tools' public documentation and manual pages describe - ``lspci -D -vv -nn``
(pciutils' lspci(8): a header line per function with class and IDs in brackets, then indented
"NUMA node:", "IOMMU group:" and "Region N: Memory at ... [size=...]" lines), ``nvidia-smi topo -m``
(NVIDIA's nvidia-smi documentation: a tab-separated matrix of GPUs with "CPU Affinity" and "NUMA
Affinity" columns above its legend, NV# for NVLink) and ``nvidia-smi -q`` (its "GPU <bus id>"
blocks with "Device Id" and "BAR1 Memory Usage")."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from tests.fakesys import GPU_3D, NVIDIA, OTHER_BRIDGE, VGA, h100_bars, standard_drivers
from tests.hardware.check_nvidia_host import SKIP, main, parse_lspci, parse_smi, parse_topo

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "tests/hardware/check_nvidia_host.py"
SAMPLES = Path(__file__).resolve().parent / "samples"
LSPCI, TOPO, SMI = (SAMPLES / n for n in ("lspci-vv.txt", "nvidia-smi-topo-m.txt", "nvidia-smi-q.txt"))
CPUS = {0: "0-55,112-167", 1: "56-111,168-223"}


def two_gpu_board(host):
    """Two H100 SXM of one HGX board on two NUMA nodes, one NVSwitch, and the BMC's VGA."""
    standard_drivers(host)
    host.iommu_on()
    host.set_nodes(CPUS)
    for address, node, group in (("0000:18:00.0", 0, 10), ("0000:9a:00.0", 1, 14)):
        host.add_device(
            address,
            NVIDIA,
            "2330",
            GPU_3D,
            driver="nvidia",
            group=group,
            numa_node=node,
            bars=h100_bars(),
            local_cpus=CPUS[node],
            subsystem=(NVIDIA, "16c1"),
        )
    host.add_device("0000:05:00.0", NVIDIA, "22a3", OTHER_BRIDGE, driver="nvidia", group=70, numa_node=0)
    host.add_device("0000:03:00.0", "1a03", "2000", VGA, group=3, boot_vga=True, numa_node=0)


def check(host, *extra):
    out = io.StringIO()
    code = main(["--root", str(host.root), *extra], out=out)
    return code, out.getvalue()


def test_the_parsers_read_the_documented_formats():
    lspci = parse_lspci(LSPCI.read_text())
    assert sorted(lspci) == ["0000:03:00.0", "0000:05:00.0", "0000:18:00.0", "0000:9a:00.0"]
    gpu = lspci["0000:9a:00.0"]
    assert (gpu["class_"], gpu["vendor"], gpu["device"], gpu["numa_node"], gpu["iommu_group"]) == (
        "0302",
        "10de",
        "2330",
        1,
        14,
    )
    assert gpu["regions"] == {0: 16 * 1024**2, 1: 128 * 1024**3, 3: 32 * 1024**2} and gpu["sriov"] is None
    assert lspci["0000:05:00.0"]["class_"] == "0680"
    topo = parse_topo(TOPO.read_text())
    assert topo == {
        "GPU0": dict(links={"GPU1": "NV18"}, cpus="0-55,112-167", numa=0),
        "GPU1": dict(links={"GPU0": "NV18"}, cpus="56-111,168-223", numa=1),
    }
    smi = parse_smi(SMI.read_text())
    assert [(g["address"], g["device"], g["vendor"], g["bar1_mib"]) for g in smi] == [
        ("0000:18:00.0", "2330", "10de", 131072),
        ("0000:9a:00.0", "2330", "10de", 131072),
    ]


def test_sriov_lines_of_lspci():
    text = (
        "0000:41:00.0 3D controller [0302]: NVIDIA Corporation AD102GL [L40S] [10de:26b9] (rev a1)\n"
        "\tCapabilities: [bcc v1] Single Root I/O Virtualization (SR-IOV)\n"
        "\t\tInitial VFs: 32, Total VFs: 32, Number of VFs: 16, Function Dependency Link: 00\n"
    )
    assert parse_lspci(text)["0000:41:00.0"]["sriov"] == (32, 16)


def test_agreement_on_a_fake_host_and_nothing_written(fake_host):
    host = fake_host(build=two_gpu_board)
    before = host.snapshot()
    code, out = check(host, "--lspci", str(LSPCI), "--topo", str(TOPO), "--smi", str(SMI))
    assert code == 0, out
    assert out.splitlines()[-1] == "OK: kvm_gpu_info agrees with the tools"
    assert "compared with lspci, topo -m, nvidia-smi -q" in out
    assert host.snapshot() == before and host.events == [] and host.violations == []


@pytest.mark.parametrize(
    "sample, old, new, problem",
    [
        (LSPCI, "\tNUMA node: 1\n", "\tNUMA node: 0\n", "0000:9a:00.0: numa_node 1 in kvm_gpu_info, 0 in lspci"),
        (LSPCI, "[size=128G]", "[size=64G]", "0000:18:00.0: BARs {0: 16777216, 1: 137438953472, 3: 33554432}"),
        (LSPCI, "IOMMU group: 14", "IOMMU group: 15", "0000:9a:00.0: iommu_group 14 in kvm_gpu_info, 15 in lspci"),
        (LSPCI, "Bridge [0680]", "Bridge [0604]", "NVSwitches ['0000:05:00.0'] in kvm_gpu_info, [] in lspci"),
        (TOPO, "56-111,168-223\t1", "56-111,168-223\t0", "0000:9a:00.0: NUMA node 1 in kvm_gpu_info, 0 in topo -m"),
        (
            SMI,
            "Total                             : 131072 MiB\n        Used                              : 1 MiB\n"
            "        Free                              : 131071 MiB\n\nGPU",
            "Total                             : 65536 MiB\n        Used                              : 1 MiB\n"
            "        Free                              : 131071 MiB\n\nGPU",
            "0000:18:00.0: BAR1 131072 MiB in kvm_gpu_info, 65536 MiB in nvidia-smi",
        ),
    ],
)
def test_a_difference_is_reported(fake_host, tmp_path, sample, old, new, problem):
    host = fake_host(build=two_gpu_board)
    changed = tmp_path / sample.name
    text = sample.read_text()
    assert old in text
    changed.write_text(text.replace(old, new, 1))
    paths = {LSPCI.name: str(LSPCI), TOPO.name: str(TOPO), SMI.name: str(SMI), sample.name: str(changed)}
    code, out = check(host, "--lspci", paths[LSPCI.name], "--topo", paths[TOPO.name], "--smi", paths[SMI.name])
    assert code == 1, out
    assert any(line.startswith("MISMATCH: " + problem) for line in out.splitlines()), out


def test_nvlink_between_gpus_of_no_board_is_a_difference(fake_host):
    def no_switch(host):
        two_gpu_board(host)
        host.break_attribute("0000:05:00.0", "class")  # the NVSwitch no longer reads as one

    host = fake_host(build=no_switch)
    code, out = check(host, "--topo", str(TOPO))
    assert code == 1
    assert "MISMATCH: 0000:18:00.0 and 0000:9a:00.0: NVLink (NV18) in topo -m, not on one board in kvm_gpu_info" in out


def test_skips_without_an_nvidia_gpu(fake_host):
    code, out = check(fake_host(None), "--lspci", str(LSPCI))
    assert code == SKIP
    assert out.startswith("SKIP: no NVIDIA GPU under ") and out.rstrip().endswith("/sys/bus/pci/devices")


def test_skips_without_the_tools(fake_host, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "iaastest-empty"))
    code, out = check(fake_host(build=two_gpu_board))
    assert code == SKIP and out == "SKIP: neither lspci (pciutils) nor nvidia-smi is installed\n"


def test_runs_with_the_system_python_alone(fake_host):
    host = fake_host(build=two_gpu_board)
    env = {"PATH": "/usr/bin:/bin"}  # no virtualenv, no Ansible
    args = ["--root", str(host.root), "--lspci", str(LSPCI), "--topo", str(TOPO), "--smi", str(SMI)]
    result = subprocess.run(
        ["/usr/bin/python3", "-I", str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "OK: kvm_gpu_info agrees with the tools"
    assert subprocess.run(
        ["/usr/bin/python3", "-I", "-c", "import ansible"], capture_output=True, check=False
    ).returncode
