# -*- coding: utf-8 -*-
"""kvm_vm: 10 diskless TCG VMs in one looped task, first converge, no-change
re-run and --check on the converged state, side by side in the same run with
the same loop of ansible.builtin.ping (the floor of Ansible's own cost per
loop item) and with the peer, community.libvirt 2.0.0 (peer/virt.yml: define
from XML, then running; the same work). Then the no-change cost of kvm_network,
kvm_volume and cloudinit_seed in the same kind of loop.

    python tests/benchmarks/bench_vm_loop.py [--quick] [--count N] [--repeat R] [--no-peer]

Each round runs, interleaved: an empty playbook (ansible-playbook's start-up),
the ping loop, the first converge of each side (from no VMs), its re-run and
its --check; figures are medians over the rounds. "task" time is a run minus
the empty playbook's.

The peer runs from its own virtualenv, made here when it is missing
(IAAS_KVM_PEER_VENV, default /opt/iaas-kvm/peer-venv; versions pinned in
peer/requirements.txt; minutes to make, so --quick, as CI runs it, leaves the
peer out).

Targets: the re-run costs at most 1.1 x the ping loop and at most 0.5 x the
peer's re-run (whole ansible-playbook runs, as the targets were set).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vmbench
from targets import Targets

HERE = Path(__file__).resolve().parent
PEER_VENV = Path(os.environ.get("IAAS_KVM_PEER_VENV", "/opt/iaas-kvm/peer-venv"))
PEER_REQUIREMENTS = HERE / "peer" / "requirements.txt"
MEMORY_MIB = 64

OTHERS_PLAYBOOK = """- name: A converged object, the same task looped
  hosts: localhost
  gather_facts: false
  tasks:
    - name: kvm_network
      iaas.kvm.kvm_network:
        name: "{{ network }}"
        mode: isolated
        bridge: "{{ bridge }}"
        autostart: false
      loop: "{{ range(count) | list }}"
      when: module == 'kvm_network'

    - name: kvm_volume
      iaas.kvm.kvm_volume:
        pool: "{{ pool }}"
        name: iaastest-bench-loop.raw
        format: raw
        capacity: 1M
      loop: "{{ range(count) | list }}"
      when: module == 'kvm_volume'

    - name: cloudinit_seed
      iaas.kvm.cloudinit_seed:
        path: "{{ seed }}"
        hostname: bench
        ssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkKeyBenchmarkKeyBenchmarkKeyBenchm bench]
        meta_data:
          instance-id: iaastest-bench
      loop: "{{ range(count) | list }}"
      when: module == 'cloudinit_seed'
"""


def peer_venv():
    """The peer's virtualenv (made when missing); returns its bin directory."""
    marker = PEER_VENV / (".iaas-kvm-" + _digest(PEER_REQUIREMENTS.read_bytes()))
    if not marker.exists():
        print("making the peer's virtualenv in %s (pinned: %s)" % (PEER_VENV, PEER_REQUIREMENTS), flush=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--clear", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "-r", str(PEER_REQUIREMENTS)], check=True)
        marker.touch()
    return PEER_VENV / "bin"


def _digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


class Side:
    """One way to converge the VMs: a playbook, its virtualenv, its VM names and the
    changed counts its first converge reports."""

    def __init__(self, label, playbook, prefix, count, converge_changed, venv_bin=None):
        self.label = label
        self.playbook = playbook
        self.names = ["%s-%02d" % (prefix, i) for i in range(count)]
        self.converge_changed = converge_changed
        self.venv_bin = venv_bin
        self.times = dict(converge=[], rerun=[], check=[])
        self.check_changed = []

    def variables(self):
        return dict(names=self.names, uri=vmbench.URI, domain_type=vmbench.DOMAIN_TYPE, memory=MEMORY_MIB)

    def run(self, playbooks, what):
        took, out = playbooks.run(self.playbook, self.variables(), check_mode=what == "check", venv_bin=self.venv_bin)
        changed = vmbench.changed_count(out)
        if what == "converge" and changed != self.converge_changed:
            raise SystemExit("%s: the first converge reported changed=%s:\n%s" % (self.label, changed, out[-3000:]))
        if what == "rerun" and changed != 0:
            raise SystemExit("%s: the re-run reported changed=%s:\n%s" % (self.label, changed, out[-3000:]))
        if what == "check":
            self.check_changed.append(changed)
        self.times[what].append(took)


def measure_vms(playbooks, sides, repeat, every_round):
    """``every_round``: each round starts from no VMs (converge, re-run, check);
    else only the first round converges and checks, the others re-run (CI)."""
    startups, pings = [], []
    ping = playbooks.write("ping.yml", vmbench.PING_PLAYBOOK)
    empty = playbooks.write("empty.yml", vmbench.EMPTY_PLAYBOOK)
    names = sides[0].names
    try:
        for index in range(repeat):
            steps = ("converge", "rerun", "check") if every_round or index == 0 else ("rerun",)
            if "converge" in steps:
                for side in sides:
                    vmbench.remove_domains(side.names)
            startups.append(playbooks.run(empty)[0])
            pings.append(playbooks.run(ping, dict(names=names))[0])
            for what in steps:
                for side in sides:
                    side.run(playbooks, what)
    finally:
        for side in sides:
            vmbench.remove_domains(side.names)
    return vmbench.median(startups), vmbench.median(pings)


def measure_others(playbooks, count, repeat, scratch):
    """No-change loops of kvm_network, kvm_volume and cloudinit_seed, each one
    converged object looped ``count`` times, interleaved with the ping loop."""
    from tests.conftest import run_module
    from tests.integration.nettools import remove_network

    tag = uuid.uuid4().hex[:6]
    variables = dict(
        count=count,
        network="iaastest-bench-" + tag,
        bridge="iaastb" + tag,
        pool="iaastest-bench-" + tag,
        seed=str(scratch / "iaastest-bench-seed.iso"),
    )
    others = playbooks.write("others.yml", OTHERS_PLAYBOOK)
    ping = playbooks.write("ping.yml", vmbench.PING_PLAYBOOK)
    modules = ("kvm_network", "kvm_volume", "cloudinit_seed")
    times = {m: [] for m in modules}
    pings = []
    pool_dir = scratch / "pool"
    try:
        run_module("kvm_pool", dict(name=variables["pool"], path=str(pool_dir), autostart=False))
        for module in modules:  # converge once
            playbooks.run(others, dict(variables, module=module, count=1))
        for _round in range(repeat):
            pings.append(playbooks.run(ping, dict(names=list(range(count))))[0])
            for module in modules:
                took, out = playbooks.run(others, dict(variables, module=module))
                if vmbench.changed_count(out) != 0:
                    raise SystemExit("%s: the no-change loop reported a change:\n%s" % (module, out[-3000:]))
                times[module].append(took)
    finally:
        run_module("kvm_pool", dict(name=variables["pool"], state="absent", force=True))
        conn = vmbench.connect()
        try:
            remove_network(conn, variables["network"])
        finally:
            conn.close()
    return {m: vmbench.median(v) for m, v in times.items()}, vmbench.median(pings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="the CI variant: 3 rounds, one converge, no peer, no other modules"
    )
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (medians)")
    parser.add_argument("--no-peer", action="store_true", help="leave community.libvirt out")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    with_peer = not (args.quick or args.no_peer)
    playbooks = vmbench.Playbooks()
    scratch = Path(tempfile.mkdtemp(prefix="iaastest-bench-", dir="/var/tmp"))
    os.chmod(scratch, 0o755)  # noqa: S103 - libvirt makes the pool's directory below it
    try:
        loop = playbooks.write("loop.yml", vmbench.LOOP_PLAYBOOK)
        sides = [Side("iaas.kvm", loop, "iaastest-bench-loop", args.count, converge_changed=1)]
        if with_peer:
            venv_bin = peer_venv()
            peer = playbooks.write("virt.yml", (HERE / "peer" / "virt.yml").read_text())
            shutil.copy(HERE / "peer" / "domain.xml.j2", playbooks.dir / "domain.xml.j2")
            sides.append(
                Side(
                    "community.libvirt", peer, "iaastest-bench-peer", args.count, converge_changed=2, venv_bin=venv_bin
                )
            )
        startup, ping = measure_vms(playbooks, sides, repeat, every_round=not args.quick)
        others = None if args.quick else measure_others(playbooks, args.count, repeat, scratch)
    finally:
        playbooks.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)

    n = args.count
    targets = Targets(args.quick)
    print(
        "kvm_vm loop of %d diskless %s VMs (%d MiB), medians of %d rounds; task = run - empty playbook %.2fs"
        % (n, vmbench.DOMAIN_TYPE, MEMORY_MIB, repeat, startup)
    )
    print("  %-46s %8s %8s %10s" % ("", "run s", "task s", "task/item"))

    def row(label, seconds):
        print("  %-46s %8.2f %8.2f %9.3fs" % (label, seconds, seconds - startup, (seconds - startup) / n))

    row("ansible.builtin.ping, same loop (the floor)", ping)
    for side in sides:
        for what, label in (("converge", "first converge"), ("rerun", "re-run, no change"), ("check", "--check")):
            row("%s %s" % (side.label, label), vmbench.median(side.times[what]))
    ours = vmbench.median(sides[0].times["rerun"])
    for side in sides:
        print("  %s --check on the converged state: changed=%s" % (side.label, ",".join(map(str, side.check_changed))))
    print("  re-run / ping, task time (start-up taken out): %.2f" % ((ours - startup) / (ping - startup)))
    targets.check("iaas.kvm re-run / ping floor (whole runs)", ours / ping, "<= 1.1", ours / ping <= 1.1)
    if with_peer:
        theirs = vmbench.median(sides[1].times["rerun"])
        first = vmbench.median(sides[0].times["converge"]) / vmbench.median(sides[1].times["converge"])
        print("  first converge iaas.kvm / community.libvirt: %.2f" % first)
        targets.check("iaas.kvm re-run / community.libvirt re-run", ours / theirs, "<= 0.5", ours / theirs <= 0.5)
    else:
        print("  community.libvirt: not measured (--quick or --no-peer)")
    if others is None:
        print("no-change loops of kvm_network, kvm_volume, cloudinit_seed: measured in the full run only")
        return targets.exit_code()
    others, others_ping = others
    print("no-change loops of %d items against the ping loop of the same rounds (%.2fs)" % (n, others_ping))
    for module, seconds in others.items():
        print(
            "  %-16s %6.2f s  task/item %.3fs  / ping: %.2f (task time), %.2f (whole runs)"
            % (
                module,
                seconds,
                (seconds - startup) / n,
                (seconds - startup) / (others_ping - startup),
                seconds / others_ping,
            )
        )
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
