# -*- coding: utf-8 -*-
"""kvm_vm on a converged VM, where the time of one no-change run goes: the
module process as Ansible starts it on the host (its real AnsiballZ payload,
run by the hypervisor's Python beside ansible.builtin.ping's), and inside it
the imports, the libvirt connection, each libvirt call and the XML parsing.

    python tests/benchmarks/bench_vm_profile.py [--quick] [--repeat N]

The payloads are the ones ansible-playbook sent (kept with
ANSIBLE_KEEP_REMOTE_FILES in a scratch directory). The breakdown runs the
exploded payload's code with /usr/bin/python3, compiled from source as
AnsiballZ does, timing each import and wrapping libvirt's classes to count
and time the calls. Also printed: the peak RSS of one kvm_vm module process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vmbench

DRIVER = r"""
import collections, contextlib, importlib, io, json, sys, time
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
out = []
def step(name, work):
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    out.append((name, (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
    return result
step("import ansible.module_utils.basic (ping pays it too)", lambda: importlib.import_module("ansible.module_utils.basic"))
step("import libvirt", lambda: importlib.import_module("libvirt"))
step("import lxml.etree", lambda: importlib.import_module("lxml.etree"))
module = step("import the collection's code (compiled from source)",
              lambda: importlib.import_module("ansible_collections.iaas.kvm.plugins.modules.kvm_vm"))
import libvirt
from lxml import etree
calls = collections.OrderedDict()
def timed(key, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            entry = calls.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - start
    return wrapper
for cls in (libvirt.virConnect, libvirt.virDomain, libvirt.virStoragePool, libvirt.virStorageVol, libvirt.virNetwork):
    for name in [n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))]:
        setattr(cls, name, timed("libvirt %s.%s" % (cls.__name__[3:], name), getattr(cls, name)))
libvirt.open = timed("libvirt open (connect)", libvirt.open)
etree.fromstring = timed("lxml parse (etree.fromstring)", etree.fromstring)
from ansible.module_utils import basic
basic._ANSIBLE_ARGS = json.dumps(json.load(open(sys.argv[2]))).encode()
basic._ANSIBLE_PROFILE = "legacy"
printed = io.StringIO()
def run():
    with contextlib.redirect_stdout(printed):
        try:
            module.main()
        except SystemExit:
            pass
step("main(): argument parsing, the run, the result", run)
assert '"changed": false' in printed.getvalue(), printed.getvalue()[:500]
print(json.dumps(dict(steps=out, calls=[(k, v[0], v[1] * 1e3) for k, v in calls.items()])))
"""

TASKS = """- name: One kvm_vm run and one ping, kept for the profile
  hosts: localhost
  gather_facts: false
  tasks:
    - name: kvm_vm
      iaas.kvm.kvm_vm:
        uri: "{{ uri }}"
        name: "{{ name }}"
        state: running
        domain_type: "{{ domain_type }}"
        vcpus: 1
        memory: 64
    - name: ping
      ansible.builtin.ping:
"""


def payloads(playbooks, scratch, variables):
    """The AnsiballZ files ansible-playbook sent for kvm_vm and ping."""
    os.environ.update(ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_REMOTE_TMP=str(scratch / "remote"))
    try:
        playbooks.run(playbooks.write("kept.yml", TASKS), variables)
    finally:
        del os.environ["ANSIBLE_KEEP_REMOTE_FILES"], os.environ["ANSIBLE_REMOTE_TMP"]
    found = {p.name: p for p in (scratch / "remote").rglob("AnsiballZ_*.py")}
    return found["AnsiballZ_kvm_vm.py"], found["AnsiballZ_ping.py"]


# Starts the module from a small process, so that the peak RSS (ru_maxrss, which
# counts the forked child before its exec) is the module's, not this benchmark's.
LAUNCHER = (
    "import json, os, sys, time\n"
    "start = time.perf_counter()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "_pid, status, usage = os.wait4(pid, 0)\n"
    "print(json.dumps([status, (time.perf_counter() - start) * 1e3, (usage.ru_utime + usage.ru_stime) * 1e3,"
    " usage.ru_maxrss / 1024.0]))\n"
)


def process_figures(files, repeat):
    """Per file: wall ms, CPU ms, peak RSS MiB of its processes, interleaved."""
    figures = {path: [] for path in files}
    for _round in range(repeat):
        for path in files:
            done = subprocess.run(
                [vmbench.TARGET_PYTHON, "-S", "-c", LAUNCHER, vmbench.TARGET_PYTHON, str(path)],
                capture_output=True,
                text=True,
                cwd="/",
                check=True,
            )
            status, wall, cpu, rss = json.loads(done.stdout)
            if status != 0:
                raise SystemExit("%s exited with status %d" % (path.name, status))
            figures[path].append((wall, cpu, rss))
    return figures


def breakdown(payload, scratch, repeat):
    """Medians of the driver's steps and libvirt calls over ``repeat`` runs."""
    subprocess.run([vmbench.TARGET_PYTHON, str(payload), "explode"], cwd=str(scratch), capture_output=True, check=True)
    code = payload.parent / "debug_dir"
    args = code / "args"
    driver = scratch / "driver.py"
    driver.write_text(DRIVER)
    steps, calls = {}, {}
    for _round in range(repeat):
        done = subprocess.run(
            [vmbench.TARGET_PYTHON, str(driver), str(code), str(args)],
            capture_output=True,
            text=True,
            cwd="/",
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit("the profile driver failed: %s" % done.stderr[-3000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for name, wall, cpu in result["steps"]:
            steps.setdefault(name, []).append((wall, cpu))
        for name, count, ms in result["calls"]:
            calls.setdefault(name, []).append((count, ms))
    return steps, calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="5 runs instead of --repeat")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    repeat = 5 if args.quick else args.repeat
    name = "iaastest-bench-prof-%s" % uuid.uuid4().hex[:6]
    variables = dict(name=name, uri=vmbench.URI, domain_type=vmbench.DOMAIN_TYPE)
    playbooks = vmbench.Playbooks()
    scratch = Path(tempfile.mkdtemp(prefix="iaastest-bench-prof-"))
    try:
        kvm_vm, ping = payloads(playbooks, scratch, variables)  # the first run defines and starts it
        figures = process_figures([ping, kvm_vm], repeat)
        steps, calls = breakdown(kvm_vm, scratch, repeat)
    finally:
        vmbench.remove_domains([name])
        playbooks.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)

    print("one no-change kvm_vm run on a converged diskless VM, medians of %d interleaved runs" % repeat)
    print("  module process (AnsiballZ, %s)       wall ms   CPU ms  peak RSS MiB" % vmbench.TARGET_PYTHON)
    for label, path in (("ansible.builtin.ping", ping), ("iaas.kvm.kvm_vm", kvm_vm)):
        rows = figures[path]
        print(
            "    %-34s %8.1f %8.1f %10.1f"
            % (
                label,
                statistics.median(r[0] for r in rows),
                statistics.median(r[1] for r in rows),
                max(r[2] for r in rows),
            )
        )
    extra_wall = statistics.median(r[0] for r in figures[kvm_vm]) - statistics.median(r[0] for r in figures[ping])
    extra_cpu = statistics.median(r[1] for r in figures[kvm_vm]) - statistics.median(r[1] for r in figures[ping])
    print("    kvm_vm - ping: %+.1f ms wall, %+.1f ms CPU" % (extra_wall, extra_cpu))
    print("  inside the kvm_vm process                                 wall ms   CPU ms")
    for label, values in steps.items():
        print(
            "    %-54s %7.1f %8.1f"
            % (label, statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        )
    print("  in main(): libvirt calls and XML parsing                 calls  wall ms")
    for label, values in sorted(calls.items(), key=lambda item: -statistics.median(v[1] for v in item[1])):
        print(
            "    %-54s %5d %8.2f"
            % (label, statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
