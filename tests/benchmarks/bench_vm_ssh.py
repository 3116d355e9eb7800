# -*- coding: utf-8 -*-
"""kvm_vm: from playbook start to SSH-ready for one guest (Debian 12 cloud
image, overlay + NoCloud seed), and how much of it is the guest's own boot.

    python tests/benchmarks/bench_vm_ssh.py [--quick]

The playbook (run inside the lab namespace, where the guest is reachable)
defines and starts the VM with kvm_vm (wait_for_ip), adds it to the inventory
and waits with ansible.builtin.wait_for_connection until Ansible logs in over
SSH. Beside it, a probe finds the guest's lease and tries a plain SSH login
every half second: SSH-ready is its first successful login. The guest's own
boot is read from its console log: from the moment QEMU started (virtlogd
creates the log file then) to systemd's "Started ssh.service" on the serial
console (cloud-init has installed the key by then), firmware and boot loader
included. The overhead is SSH-ready minus the guest's own boot: Ansible's
start-up, the module, libvirt, QEMU start, and noticing the guest is up.
Target: at most 10 s. Ansible-ready (wait_for_connection, which also runs a
module in the guest) is printed too.

--quick is the same measurement (one guest is the least there is).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import libvirt
import vmbench
from targets import Targets

from tests.integration.conftest import SSHKey, ensure_base_volume, lab_run, ssh_command
from tests.integration.guests import make_seed_volume, overlay
from tests.integration.vmtools import Made

PLAYBOOK = """- name: One guest, from nothing to SSH
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The VM
      iaas.kvm.kvm_vm:
        uri: "{{ uri }}"
        name: "{{ name }}"
        state: running
        domain_type: "{{ domain_type }}"
        vcpus: 2
        memory: 1GiB
        disks:
          - volume: "{{ name }}.qcow2"
        cloudinit_seed:
          volume: "{{ name }}-seed.iso"
        interfaces:
          - network: default
        guest_agent: true
        console_log: "{{ console_log }}"
        wait_for_ip: true
      register: vm

    - name: Add it to the inventory
      ansible.builtin.add_host:
        name: guest
        ansible_host: "{{ vm.ip }}"
        ansible_user: debian
        ansible_python_interpreter: /usr/bin/python3
        ansible_ssh_private_key_file: "{{ key }}"
        ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3

    - name: Wait until Ansible logs in over SSH
      ansible.builtin.wait_for_connection:
        sleep: 1
        timeout: 300
      delegate_to: guest
"""


ANSI = re.compile(r"\x1b\[[0-9;]*m")
SSHD_STARTED = re.compile(r"Started ssh\.service")


class ConsoleTail(threading.Thread):
    """Record (monotonic time, line) for each line the guest prints."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = Path(path)
        self.lines = []
        self.appeared = None
        self.stop = threading.Event()

    def run(self):
        offset, pending = 0, b""
        while not self.stop.is_set():
            if self.path.exists():
                if self.appeared is None:
                    self.appeared = time.monotonic()
                with self.path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
                offset += len(data)
                pending += data
                now = time.monotonic()
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    text = line.decode("utf-8", "replace").strip("\r")
                    if text.strip():
                        self.lines.append((now, text))
            time.sleep(0.05)

    def first(self, predicate):
        return next(((t, line) for t, line in self.lines if predicate(line)), (None, None))


class SSHProbe(threading.Thread):
    """Next to the playbook: find the guest's lease and try a plain SSH login
    every half second; record when the first one works."""

    def __init__(self, name, key):
        super().__init__(daemon=True)
        self.name = name
        self.key = key
        self.ready = None
        self.stop = threading.Event()

    def run(self):
        conn = vmbench.connect()
        try:
            ip = None
            while not self.stop.is_set() and self.ready is None:
                if ip is None:
                    with contextlib.suppress(libvirt.libvirtError):
                        ip = first_ipv4(conn.lookupByName(self.name))
                elif (
                    lab_run(ssh_command(self.key, ip, "true", connect_timeout=2), check=False, timeout=30).returncode
                    == 0
                ):
                    self.ready = time.monotonic()
                    break
                time.sleep(0.5)
        finally:
            conn.close()


def first_ipv4(dom):
    leases = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0) or {}
    for iface in leases.values():
        for addr in iface.get("addrs") or []:
            if addr["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                return addr["addr"]
    return None


def main():  # noqa: PLR0915 - one benchmark run told in order: set-up, each measured step, the figures
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant (the same single guest)")
    args = parser.parse_args()
    conn = vmbench.connect()
    made = Made(conn)
    name = made.domain("iaastest-bench-ssh-%s" % uuid.uuid4().hex[:6])
    console = made.console(name)
    playbooks = vmbench.Playbooks()
    keydir = Path(tempfile.mkdtemp(prefix="iaastest-bench-key-"))
    tail = ConsoleTail(console)
    try:
        pool = conn.storagePoolLookupByName("default")
        base = ensure_base_volume(pool)
        key = SSHKey(keydir)
        made.volumes.append(overlay(pool, name + ".qcow2", base))
        made.volumes.append(make_seed_volume(conn, pool, name + "-seed.iso", name, key.public))
        playbook = playbooks.write("ssh.yml", PLAYBOOK)
        variables = dict(
            uri=vmbench.URI, name=name, domain_type=vmbench.DOMAIN_TYPE, console_log=console, key=str(key.private)
        )
        probe = SSHProbe(name, key)
        tail.start()
        probe.start()
        started = time.monotonic()
        total, _out = playbooks.run(playbook, variables, netns=True)
        time.sleep(0.2)
        tail.stop.set()
        probe.stop.set()
        tail.join()
        probe.join()
    finally:
        made.remove()
        playbooks.cleanup()
        for path in keydir.iterdir():
            path.unlink()
        keydir.rmdir()
        conn.close()
    first_t, _line = tail.first(lambda line: True)
    sshd_t, _line = tail.first(lambda line: SSHD_STARTED.search(ANSI.sub("", line)) is not None)
    if tail.appeared is None or first_t is None or sshd_t is None:
        seen = "\n".join(text for _stamp, text in tail.lines[-40:])
        raise SystemExit("the console log never appeared, or shows no start of sshd:\n" + seen)
    boot = sshd_t - tail.appeared
    ssh_ready = (probe.ready - started) if probe.ready else None
    print("kvm_vm, playbook start to SSH-ready, one %s guest (2 vCPUs, 1 GiB)" % vmbench.DOMAIN_TYPE)
    print("  guest's own boot (console log: QEMU start to sshd started)   %6.1f s" % boot)
    print("    of which firmware and boot loader (to the kernel's first line) %4.1f s" % (first_t - tail.appeared))
    print("  QEMU started (Ansible start-up, kvm_vm define + start) after %6.1f s" % (tail.appeared - started))
    if ssh_ready is not None:
        print("  SSH-ready: first plain SSH login (a probe beside the playbook)  %6.1f s" % ssh_ready)
    else:
        print("  SSH-ready: the probe never logged in")
    print("  Ansible-ready: ansible-playbook start to wait_for_connection done %6.1f s" % total)
    print("    overhead (Ansible-ready - guest's own boot)              %6.1f s" % (total - boot))
    targets = Targets(args.quick)
    overhead = (ssh_ready - boot) if ssh_ready is not None else float("inf")
    targets.check("overhead (SSH-ready - guest's own boot)", overhead, "<= 10 s", overhead <= 10, "%.1f s")
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
