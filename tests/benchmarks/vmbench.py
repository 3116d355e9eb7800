# -*- coding: utf-8 -*-
"""What the kvm_vm benchmarks share: running a playbook against this machine as
the hypervisor (the modules on the system Python, as inventories/local does),
timing it, and removing the benchmark's VMs."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "collections") not in sys.path:
    sys.path.insert(0, str(REPO / "collections"))

import libvirt  # noqa: E402

from tests.integration import cleanup  # noqa: E402

VENV_BIN = Path(sys.executable).parent
URI = os.environ.get("IAAS_KVM_TEST_URI", "qemu:///system")
DOMAIN_TYPE = os.environ.get("IAAS_KVM_DOMAIN_TYPE", "qemu")
NETNS = os.environ.get("IAAS_KVM_LAB_NETNS", "iaas-lab")
# The interpreter the modules run on, as on a hypervisor (python3-libvirt, python3-lxml).
TARGET_PYTHON = os.environ.get("IAAS_KVM_TARGET_PYTHON", "/usr/bin/python3")

INVENTORY = (
    """all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: %s
"""
    % TARGET_PYTHON
)


def connect():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt.open(URI)


def remove_domains(names):
    conn = connect()
    try:
        for name in names:
            with contextlib.suppress(libvirt.libvirtError):
                cleanup.remove_domain(conn.lookupByName(name))
            with contextlib.suppress(FileNotFoundError):
                os.unlink("/var/log/libvirt/qemu/%s.log" % name)  # libvirtd's log of the QEMU process
    finally:
        conn.close()


def rss_mib(pid):
    """Resident memory of process ``pid`` in MiB."""
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class _PeakRSS(threading.Thread):
    """The largest resident set of one process (ansible-playbook) while it runs, sampled."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:
                return
            time.sleep(0.05)


class Playbooks:
    """Write playbooks into a scratch directory and time ``ansible-playbook`` on them."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="iaastest-bench-"))
        (self.dir / "inventory.yml").write_text(INVENTORY)

    def write(self, name, text):
        path = self.dir / name
        path.write_text(text)
        return path

    def run(self, playbook, extra_vars=None, netns=False, check=True, check_mode=False, venv_bin=None):
        """Run ``playbook``; return (seconds, stdout). ``netns`` runs it inside the lab
        namespace (for tasks that reach guests over IP); ``check_mode`` adds --check;
        ``venv_bin`` is another virtualenv's bin (the peer's)."""
        venv = Path(venv_bin) if venv_bin else VENV_BIN
        env = dict(os.environ)
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_INVENTORY=str(self.dir / "inventory.yml"),
            ANSIBLE_HOST_KEY_CHECKING="False",
            ANSIBLE_STDOUT_CALLBACK="default",
            ANSIBLE_NOCOLOR="1",
            PATH="%s:%s" % (venv, env.get("PATH", "")),
        )
        if os.environ.get("IAAS_KVM_BENCH_LOG"):
            env["ANSIBLE_LOG_PATH"] = os.environ["IAAS_KVM_BENCH_LOG"]
        command = [str(venv / "ansible-playbook"), str(playbook)]
        if check_mode:
            command.append("--check")
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        if netns:
            command = ["ip", "netns", "exec", NETNS, *command]
        started = time.monotonic()
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO)
        )
        sampler = _PeakRSS(proc.pid)
        sampler.start()
        stdout, stderr = proc.communicate()
        took = time.monotonic() - started
        sampler.done.set()
        sampler.join()
        self.peak_rss_mib = sampler.peak
        proc = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
        if check and proc.returncode != 0:
            raise SystemExit(
                "ansible-playbook %s failed:\n%s\n%s" % (playbook.name, proc.stdout[-4000:], proc.stderr[-2000:])
            )
        return took, proc.stdout

    def cleanup(self):
        for path in self.dir.iterdir():
            path.unlink()
        self.dir.rmdir()


def median(values):
    return statistics.median(values)


def changed_count(stdout):
    """The ``changed=N`` of localhost in a play recap."""
    for line in stdout.splitlines():
        if line.startswith("localhost") and "changed=" in line:
            return int(line.split("changed=")[1].split()[0])
    return None


LOOP_PLAYBOOK = """- name: kvm_vm in a loop
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Diskless VMs
      iaas.kvm.kvm_vm:
        uri: "{{ uri }}"
        name: "{{ item }}"
        state: running
        domain_type: "{{ domain_type }}"
        vcpus: 1
        memory: "{{ memory | default(64) }}"
      loop: "{{ names }}"
"""
PING_PLAYBOOK = """- name: ansible.builtin.ping in the same loop
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
      loop: "{{ names }}"
"""
EMPTY_PLAYBOOK = """- name: Nothing (ansible-playbook's own start-up)
  hosts: localhost
  gather_facts: false
  tasks: []
"""


def measure_loop(playbooks, count, repeat, prefix, memory=64, keep=False):
    """Converge ``count`` diskless VMs (``memory`` MiB) with one looped kvm_vm task,
    then re-run it; return a dict of seconds (whole ansible-playbook runs and task
    time, which is the run minus an empty playbook's run). ``keep`` leaves the VMs."""
    names = ["%s-%02d" % (prefix, i) for i in range(count)]
    variables = dict(names=names, uri=URI, domain_type=DOMAIN_TYPE, memory=memory)
    loop = playbooks.write("loop.yml", LOOP_PLAYBOOK)
    ping = playbooks.write("ping.yml", PING_PLAYBOOK)
    empty = playbooks.write("empty.yml", EMPTY_PLAYBOOK)
    remove_domains(names)
    try:
        converge_s, out = playbooks.run(loop, variables)
        if changed_count(out) != 1:
            raise SystemExit("the first converge reported no change:\n" + out[-3000:])
        # Interleaved, so that the load of a shared machine falls on all three alike.
        startups, pings, reruns = [], [], []
        for _round in range(repeat):
            startups.append(playbooks.run(empty)[0])
            pings.append(playbooks.run(ping, variables)[0])
            took, out = playbooks.run(loop, variables)
            if changed_count(out) != 0:
                raise SystemExit("the re-run reported a change:\n" + out[-3000:])
            reruns.append(took)
        startup, ping_s, rerun_s = median(startups), median(pings), median(reruns)
    except BaseException:
        remove_domains(names)
        raise
    if not keep:
        remove_domains(names)
    return dict(
        count=count,
        startup=startup,
        ping=ping_s,
        converge=converge_s,
        rerun=rerun_s,
        ping_task=ping_s - startup,
        converge_task=converge_s - startup,
        rerun_task=rerun_s - startup,
    )
