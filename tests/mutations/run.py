# -*- coding: utf-8 -*-
"""Deliberate mistakes in the modules, applied one at a time, to show that the
tests catch them.

For each mutation: the module file is changed in place (one snippet replaced),
the tests that guard that behaviour run, the file is restored, and the line
printed says which test failed. A mutation that no test catches is a hole in
the suite: the script then exits non-zero.

    /opt/iaas-kvm/venv/bin/python tests/mutations/run.py            # all of them
    /opt/iaas-kvm/venv/bin/python tests/mutations/run.py seed-rebuilt-every-run

Mutations marked ``lab`` run lab tests (the lab's libvirtd must be up:
``scripts/lab.sh start``). This is its own command, not a stage of
scripts/test.sh; docs/contributing.md describes it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-rf"]


@dataclass
class Mutation:
    name: str
    path: str  # relative to the repository
    old: str
    new: str
    tests: list = field(default_factory=list)  # pytest arguments
    lab: bool = False


UNIT = "tests/unit/plugins/modules/"

MUTATIONS = [
    Mutation(
        "vm-check-mode-fails-when-converged",
        "plugins/modules/kvm_vm.py",
        "        self.converge_autostart()\n",
        "        self.converge_autostart()\n"
        "        if self.check and not self.actions and not self.tracker.changed:\n"
        '            raise LibvirtModuleError("mutated")\n',
        [UNIT + "test_kvm_vm.py"],
    ),
    Mutation(
        "gpu-driver-override-write-skipped",
        "plugins/module_utils/_gpu.py",
        "            if override != VFIO_DRIVER:\n                steps.append(_step(address, sysfs.override_path(address), VFIO_DRIVER",
        "            if False:\n                steps.append(_step(address, sysfs.override_path(address), VFIO_DRIVER",
        [UNIT + "test_kvm_gpu_passthrough.py"],
    ),
    Mutation(
        "network-live-update-becomes-a-restart",
        "plugins/module_utils/_network.py",
        '    """True when applying ``fields`` to a running network needs a restart."""\n',
        '    """True when applying ``fields`` to a running network needs a restart."""\n    return bool(fields)\n',
        [UNIT + "test_kvm_network.py"],
    ),
    Mutation(
        "linked-clone-made-as-full-copy",
        "plugins/modules/kvm_volume.py",
        'xml = volume_xml(self.name, capacity, "qcow2", base_vol.path(), base_facts["format"], mode=VOLUME_MODE)',
        'xml = volume_xml(self.name, capacity, "qcow2", mode=VOLUME_MODE)',
        [UNIT + "test_kvm_volume.py"],
    ),
    Mutation(
        "seed-rebuilt-every-run",
        "plugins/modules/cloudinit_seed.py",
        "rewrite = before is None or not _seed.unchanged(documents, before)",
        "rewrite = True",
        [UNIT + "test_cloudinit_seed.py"],
    ),
    Mutation(
        "network-refusal-defines-first",
        "plugins/modules/kvm_network.py",
        '        self.refuse_unsafe(plan)\n        self.apply(plan["steps"])\n',
        '        self.apply(plan["steps"])\n        self.refuse_unsafe(plan)\n',
        [UNIT + "test_kvm_network.py"],
    ),
    Mutation(
        "vm-refusal-redefines-first",
        "plugins/modules/kvm_vm.py",
        "        self.refuse_unsafe(state)\n        if self.planned is not None:\n            self.define_planned()\n",
        "        if self.planned is not None:\n            self.define_planned()\n        self.refuse_unsafe(state)\n",
        [UNIT + "test_kvm_vm.py"],
    ),
    Mutation(
        "disk-deleted-with-its-vm",
        "plugins/modules/kvm_vm.py",
        'volumes = self._volumes_to_remove(facts) if self.params["remove_volumes"] else []',
        "volumes = self._volumes_to_remove(facts)",
        [UNIT + "test_kvm_vm.py"],
    ),
    Mutation(
        "interface-mac-regenerated",
        "plugins/module_utils/_domain_xml.py",
        '    for want, match in zip(spec["interfaces"], chosen):\n        iface = match\n',
        '    for want, match in zip(spec["interfaces"], chosen):\n        iface = match\n'
        '        if iface is not None and iface.find("mac") is not None:\n'
        '            iface.remove(iface.find("mac"))\n',
        [UNIT + "test_kvm_vm.py", "tests/unit/plugins/module_utils/test_domain.py"],
    ),
    Mutation(
        "volume-shrunk",
        "plugins/modules/kvm_volume.py",
        '            if want["capacity"] < facts["capacity"]:\n                self.refuse(',
        "            if False:\n                self.refuse(",
        [UNIT + "test_kvm_volume.py", UNIT + "test_refusals.py"],
    ),
    Mutation(
        "refusal-reported-as-a-change",
        "plugins/module_utils/_libvirt.py",
        "        return dict(manager.refusal, changed=False)",
        "        return dict(manager.refusal, changed=True)",
        [UNIT + "test_refusals.py"],
    ),
    Mutation(
        "seed-password-stored-in-plain-text",
        "plugins/module_utils/_seed.py",
        "        return _crypt.sha512_crypt(self.password)",
        "        return self.password",
        [UNIT + "test_cloudinit_seed.py", "tests/unit/plugins/module_utils/test_seed.py"],
    ),
    Mutation(
        "half-written-seed-volume-taken-for-complete",
        "plugins/modules/cloudinit_seed.py",
        "        if get_volume(self.pool, self.name + WRITING_SUFFIX) is not None:\n            return INTERRUPTED\n",
        "",
        ["-m", "lab", "tests/integration/test_interrupted.py", "-k", "seed_volume"],
        lab=True,
    ),
    Mutation(
        "import-record-written-before-the-data",
        "plugins/modules/kvm_volume.py",
        '            self.write_record(source, None, want["format"], "importing", size=source.length)\n',
        '            self.write_record(source, None, want["format"], "complete", size=source.length)\n',
        ["-m", "lab", "tests/integration/test_interrupted.py", "-k", "import"],
        lab=True,
    ),
    # -- GPUs, SR-IOV, vGPU and the guest topology -------------------------------------------
    Mutation(
        "host-device-refusal-applies-first",
        "plugins/module_utils/_host_devices.py",
        "        self.plan_all()\n        self.refuse()\n        if self.check:\n            self.predicted()\n"
        "        else:\n            self.apply()\n",
        "        self.plan_all()\n        if not self.check:\n            self.apply()\n        self.refuse()\n"
        "        if self.check:\n            self.predicted()\n",
        [UNIT + "test_kvm_gpu_passthrough.py", "-k", "refused or guest or unreachable"],
    ),
    Mutation(
        "gpu-failure-halfway-says-unchanged",
        "plugins/module_utils/_host_devices.py",
        "            changed=bool(manager.actions) and not module.check_mode,",
        "            changed=False,",
        [UNIT + "test_kvm_gpu_passthrough.py", UNIT + "test_kvm_sriov.py"],
    ),
    Mutation(
        "sriov-count-not-through-zero",
        "plugins/module_utils/_sriov.py",
        "    if current and wanted:\n        steps.append(",
        "    if False:\n        steps.append(",
        [UNIT + "test_kvm_sriov.py"],
    ),
    Mutation(
        "sriov-count-changed-under-a-running-guest",
        "plugins/modules/kvm_sriov.py",
        '        refusals.extend(self.users_refusals(removed, "remove the VF"))\n',
        "",
        [UNIT + "test_kvm_sriov.py"],
    ),
    Mutation(
        "vgpu-vf-of-another-vm-reused",
        "plugins/modules/kvm_vgpu.py",
        "        for vf in typed:\n            if not users[vf]:\n                return vf\n",
        "        for vf in typed:\n            return vf\n",
        [UNIT + "test_kvm_vgpu.py"],
    ),
    Mutation(
        "vgpu-vf-attached-as-a-gpu",
        "plugins/module_utils/_passthrough.py",
        '    return alias is not None and (alias.get("name") or "").startswith(VGPU_ALIAS_PREFIX)',
        "    return False",
        [UNIT + "test_kvm_vm_topology.py"],
    ),
    Mutation(
        "topology-all-devices-on-the-first-cell",
        "plugins/module_utils/_topology.py",
        "placed = [dict(id=device_id, cell=nodes.index(node) if node is not None else 0) for device_id, node in devices]",
        "placed = [dict(id=device_id, cell=0) for device_id, node in devices]",
        [UNIT + "test_kvm_vm_topology.py"],
    ),
    Mutation(
        "topology-vcpus-pinned-to-the-first-node",
        "plugins/module_utils/_topology.py",
        '            etree.SubElement(cputune, "vcpupin", vcpu=str(guest_cpu), cpuset=cell["cpus"])',
        '            etree.SubElement(cputune, "vcpupin", vcpu=str(guest_cpu), cpuset=topology["cells"][0]["cpus"])',
        [UNIT + "test_kvm_vm_topology.py"],
    ),
    Mutation(
        "mmio-window-not-aligned-per-root-port",
        "plugins/module_utils/_mmio.py",
        "    return -(-sum(sizes) // largest) * largest",
        "    return sum(sizes)",
        ["tests/unit/plugins/module_utils/test_mmio.py", UNIT + "test_kvm_gpu_info.py"],
    ),
    Mutation(
        "maxphysaddr-beyond-the-host",
        "plugins/module_utils/_mmio.py",
        "    if host_bits is not None and need > host_bits:",
        "    if False:",
        [UNIT + "test_kvm_vm_topology.py"],
    ),
    Mutation(
        "assume-vfio-ignored",
        "plugins/module_utils/_vm_host.py",
        "        if address in self.assume:\n            return False\n",
        "",
        [UNIT + "test_kvm_vm_topology.py"],
    ),
    Mutation(
        "nvswitch-board-not-found",
        "plugins/module_utils/_gpu.py",
        "        switches = self.nvswitches()\n        if not switches:",
        "        switches = []\n        if not switches:",
        [UNIT + "test_kvm_gpu_info.py", UNIT + "test_kvm_gpu_passthrough.py"],
    ),
    Mutation(
        "hardware-check-ignores-numa",
        "tests/hardware/check_nvidia_host.py",
        '    for key, ours in (("numa_node", gpu["numa_node"]), ("iommu_group", gpu["iommu_group"])):',
        '    for key, ours in (("iommu_group", gpu["iommu_group"]),):',
        ["tests/unit/hardware"],
    ),
    Mutation(
        "gpu-host-role-changes-before-it-asks",
        "roles/gpu_host/tasks/preflight.yml",
        "      check_mode: true\n      when: >-\n",
        "      check_mode: true\n      failed_when: false\n      when: >-\n",
        ["tests/roles/test_gpu_host.py", "-k", "refused"],
    ),
    Mutation(
        "libvirtd-wait-without-an-attempt-limit",
        "roles/hypervisor/tasks/wait_libvirtd.yml",
        'out=$(timeout --kill-after=2 "$limit" virsh ',
        "out=$(virsh ",
        ["tests/roles/test_hypervisor_wait.py", "-k", "never_answers"],
    ),
]


def failed_test(output):
    match = re.search(r"^FAILED (\S+)", output, re.MULTILINE)
    if match:
        return match.group(1)
    match = re.search(r"^ERROR (\S+)", output, re.MULTILINE)
    return ("error in " + match.group(1)) if match else None


def run_one(mutation):
    path = REPO / mutation.path
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        return "STALE", "the snippet occurs %d times in %s; update the mutation" % (count, mutation.path)
    path.write_text(original.replace(mutation.old, mutation.new))
    try:
        started = time.monotonic()
        done = subprocess.run(
            PYTEST + mutation.tests, cwd=REPO, capture_output=True, text=True, check=False, timeout=1800
        )
        seconds = time.monotonic() - started
    finally:
        path.write_text(original)
    if done.returncode == 0:
        return "MISSED", "all tests passed (%.0f s)" % seconds
    return "caught", "%s (%.0f s)" % (failed_test(done.stdout) or "pytest exit %d" % done.returncode, seconds)


def main(argv):
    wanted = set(argv)
    chosen = [m for m in MUTATIONS if not wanted or m.name in wanted]
    unknown = wanted - {m.name for m in MUTATIONS}
    if unknown:
        print("unknown mutation(s): %s" % ", ".join(sorted(unknown)), file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    holes = 0
    for mutation in chosen:
        verdict, detail = run_one(mutation)
        holes += verdict != "caught"
        print("%-7s %-45s %s" % (verdict, mutation.name, detail), flush=True)
    print("%d of %d mutations caught" % (len(chosen) - holes, len(chosen)))
    return 1 if holes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
