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
        "            if override != VFIO_DRIVER:\n"
        "                steps.append(dict(address=address, path=sysfs.override_path(address), value=VFIO_DRIVER, wait=None))\n",
        "            if False:\n"
        "                steps.append(dict(address=address, path=sysfs.override_path(address), value=VFIO_DRIVER, wait=None))\n",
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
