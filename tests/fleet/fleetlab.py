# -*- coding: utf-8 -*-
"""The lab's running fleet, as tests and benchmarks use it.

The fleet is started by ``scripts/lab.sh fleet start N`` (the ``fleet`` stage of
scripts/test.sh does it once for all fleet tests) and turned into hypervisors
by ``playbooks/site.yml -i inventories/lab-fleet``. :class:`Fleet` reads it
and never starts or stops it: its hosts ``hv1``...``hvN``, SSH to them (through
the lab namespace, as Ansible goes), commands on a host's console (the lab
helper's ``fleet exec``, which needs no network: for breaking a host on
purpose), libvirt URIs for a host, and ``ansible-playbook`` runs against the
fleet with their recap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "scripts" / "lab.sh"
INVENTORY = REPO / "inventories" / "lab-fleet"
FLEET_DIR = Path(os.environ.get("IAAS_KVM_FLEET_DIR") or "/var/lib/iaas-kvm-fleet")
LAB_NETNS = os.environ.get("IAAS_KVM_LAB_NETNS", "iaas-lab")
MANAGEMENT_NET = "192.168.149"
# The guests' segment across all hypervisors (the lab's switch; br0 on each host).
GUEST_NET = "192.168.190"
VENV_BIN = Path(sys.executable).parent

_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A failed task in the default callback's output, its result as JSON (ANSIBLE_CALLBACK_RESULT_FORMAT=json).
_FATAL = re.compile(
    r"^fatal: \[(?P<host>[^]\s]+)(?: -> (?P<delegated>[^]\s]+))?\]: (?P<kind>FAILED|UNREACHABLE)! => (?P<json>\{.*\})$"
)


class FleetError(Exception):
    """The fleet is not there, or not in the state a test needs; the message says what to run."""


@dataclass
class PlaybookRun:
    """An ``ansible-playbook`` run: its exit status, output, recap and wall time."""

    command: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    recap: dict = field(default_factory=dict)

    def counts(self, host):
        if host not in self.recap:
            raise AssertionError("%s is not in the play recap: %s\n%s" % (host, self.recap, self.stdout[-3000:]))
        return self.recap[host]

    def changed(self, host):
        return self.counts(host)["changed"]

    def ok(self, host):
        """True when ``host`` neither failed nor was unreachable."""
        counts = self.counts(host)
        return counts["failed"] == 0 and counts["unreachable"] == 0

    def failures(self):
        """``[(host, delegated_to, kind, result)]`` of every failed or unreachable task result
        (``kind`` FAILED or UNREACHABLE; ``result`` the module's JSON)."""
        found = []
        for line in self.stdout.splitlines():
            match = _FATAL.match(line)
            if match:
                found.append(
                    (
                        match.group("host"),
                        match.group("delegated"),
                        match.group("kind"),
                        json.loads(match.group("json")),
                    )
                )
        return found

    def tail(self):
        return "%s\n%s" % (self.stdout[-6000:], self.stderr[-2000:])


def parse_recap(stdout):
    """``{host: {ok, changed, unreachable, failed, skipped, rescued, ignored}}`` of a play recap."""
    recap = {}
    in_recap = False
    for line in _ANSI.sub("", stdout).splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        match = _RECAP.match(line.strip()) if in_recap else None
        if match:
            counts = dict(item.split("=") for item in match.group("counts").split())
            recap[match.group("host")] = {key: int(value) for key, value in counts.items()}
    return recap


class Fleet:
    """The running fleet of ``size`` hosts described by the lab's state directory."""

    def __init__(self, directory=FLEET_DIR):
        self.dir = Path(directory)
        size_file = self.dir / "size"
        if not size_file.is_file():
            raise FleetError("no lab fleet in %s: start one with scripts/lab.sh fleet start N" % self.dir)
        self.size = int(size_file.read_text().strip() or 0)
        self.hosts = ["hv%d" % k for k in range(1, self.size + 1)]
        self.ssh_config = self.dir / "ssh_config"
        self.key = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.inventory = INVENTORY

    # --- hosts -------------------------------------------------------------

    @staticmethod
    def number(host):
        return int(str(host).removeprefix("hv"))

    def address(self, host):
        """The host's address on the management network (sshd, qemu+ssh)."""
        return "%s.%d" % (MANAGEMENT_NET, 10 + self.number(host))

    def guest_net_address(self, host):
        """The host's own address on the guests' segment (its bridge br0)."""
        return "%s.%d" % (GUEST_NET, 10 + self.number(host))

    def status(self):
        """``(returncode, output)`` of ``scripts/lab.sh fleet status``."""
        proc = subprocess.run([str(LAB), "fleet", "status"], capture_output=True, text=True, check=False, timeout=60)
        return proc.returncode, proc.stdout

    def init_pid(self, host):
        """The pid of the host's PID 1 in this machine's PID namespace (its /proc/PID/root is the host's view)."""
        return int((self.dir / host / "init.pid").read_text().strip())

    # --- running things on a host ----------------------------------------------

    def ssh_command(self, host, command, connect_timeout=10):
        return [
            "ssh",
            "-F",
            str(self.ssh_config),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=%d" % connect_timeout,
            host,
            command,
        ]

    def ssh(self, host, command, check=True, timeout=120):
        """Run ``command`` (a shell string) on ``host`` over SSH, as Ansible reaches it."""
        proc = subprocess.run(
            self.ssh_command(host, command), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                "ssh %s %r exited %d: %s" % (host, command, proc.returncode, (proc.stderr or proc.stdout).strip())
            )
        return proc

    def console(self, host, *argv, check=True, timeout=60):
        """Run ``argv`` inside ``host`` without the network (the lab helper's ``fleet exec``)."""
        proc = subprocess.run(
            [str(LAB), "fleet", "exec", host, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError("fleet exec %s %s exited %d: %s" % (host, argv, proc.returncode, proc.stderr.strip()))
        return proc

    def python(self, host, code, timeout=120):
        """Run Python ``code`` with the host's /usr/bin/python3 over SSH; return what it printed as JSON."""
        proc = self.ssh(host, "/usr/bin/python3 -c %s" % shlex.quote(code), timeout=timeout)
        return json.loads(proc.stdout)

    # --- libvirt -----------------------------------------------------------------

    def libvirt_uri(self, host):
        """A libvirt URI of ``host``'s libvirtd for this machine's own processes: its socket in the
        host's private /run, reached through /proc (a file, so no IP traffic leaves any namespace)."""
        return "qemu+unix:///system?socket=/proc/%d/root/run/libvirt/libvirt-sock" % self.init_pid(host)

    def ssh_uri(self, host):
        """The ``qemu+ssh://`` URI of ``host`` for clients inside the lab namespace or on another host
        of the fleet (``qemu+ssh://root@hvK/system`` works there with the hosts' own keys)."""
        return "qemu+ssh://root@%s/system?keyfile=%s&known_hosts=%s" % (self.address(host), self.key, self.known_hosts)

    def connect(self, host):
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        return libvirt.open(self.libvirt_uri(host))

    # --- Ansible -------------------------------------------------------------------

    def playbook(
        self,
        playbook,
        *args,
        inventories=(),
        extra_vars=None,
        forks=None,
        limit=None,
        check=False,
        diff=False,
        env=None,
        timeout=900,
    ):
        """Run ``ansible-playbook`` with the fleet's inventory (plus ``inventories``) from the repository."""
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory)]
        for inventory in inventories:
            command += ["-i", str(inventory)]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        if forks:
            command += ["-f", str(forks)]
        if limit:
            command += ["--limit", limit]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        command += [str(playbook), *args]
        run_env = dict(os.environ)
        run_env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            PATH="%s:%s" % (VENV_BIN, run_env.get("PATH", "")),
        )
        # Results as one JSON line each, so that failures() can read them.
        run_env.update(ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
        run_env.update(env or {})
        started = time.monotonic()
        proc = subprocess.run(
            command, capture_output=True, text=True, cwd=str(REPO), env=run_env, timeout=timeout, check=False
        )
        seconds = time.monotonic() - started
        return PlaybookRun(command, proc.returncode, proc.stdout, proc.stderr, seconds, parse_recap(proc.stdout))

    def module(self, host, module, args, check=False, diff=False, timeout=900):
        """Run one module of the collection on ``host`` (an ad-hoc ``ansible`` run with the fleet's
        inventory); return ``(result, seconds)``, the module's result as a dict."""
        command = [str(VENV_BIN / "ansible"), "-i", str(self.inventory), host, "-m", module, "-a", json.dumps(args)]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        run_env = dict(os.environ)
        run_env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            # "hv1 | CHANGED => {...}": the result as one JSON document.
            ANSIBLE_STDOUT_CALLBACK="default",
            ANSIBLE_CALLBACK_RESULT_FORMAT="json",
            PATH="%s:%s" % (VENV_BIN, run_env.get("PATH", "")),
        )
        started = time.monotonic()
        proc = subprocess.run(
            command, capture_output=True, text=True, cwd=str(REPO), env=run_env, timeout=timeout, check=False
        )
        seconds = time.monotonic() - started
        try:
            start = proc.stdout.index(host + " | ")
            result, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{", start) :])
            # "hv1 | FAILED! => {...}": the JSON itself does not always say so.
            if proc.stdout[start:].split("=>", 1)[0].split("|", 1)[1].strip().startswith(("FAILED", "UNREACHABLE")):
                result["failed"] = True
            return result, seconds
        except ValueError as exc:
            raise AssertionError(
                "ansible %s -m %s printed no result: %s\n%s" % (host, module, proc.stdout[-3000:], proc.stderr[-2000:])
            ) from exc


def remove_vms(conn, names, network=None, pool="default"):
    """Remove the test VMs ``names`` from a host: domains, their disk and seed volumes, and
    their DHCP reservations and DNS records on ``network`` (matched by the VM's name)."""
    import libvirt

    from tests.integration import cleanup

    for name in names:
        with contextlib.suppress(libvirt.libvirtError):
            cleanup.remove_domain(conn.lookupByName(name))
    with contextlib.suppress(libvirt.libvirtError):
        storage = conn.storagePoolLookupByName(pool)
        storage.refresh(0)
        for name in names:
            for volume in (name + ".qcow2", name + "-seed.iso", name + ".iaas-migrating"):
                with contextlib.suppress(libvirt.libvirtError):
                    storage.storageVolLookupByName(volume).delete(0)
    if network is None:
        return
    net = conn.networkLookupByName(network)
    definitions = [(libvirt.VIR_NETWORK_XML_INACTIVE, libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG)]
    if net.isActive():
        definitions.append((0, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE))
    for xml_flags, update_flags in definitions:
        # Each definition on its own: an entry may be in one of them only.
        tree = ET.fromstring(net.XMLDesc(xml_flags))
        gone = [
            (libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, ET.tostring(host, encoding="unicode"))
            for host in tree.findall("./ip/dhcp/host")
            if host.get("name") in names
        ]
        gone += [
            (libvirt.VIR_NETWORK_SECTION_DNS_HOST, "<host ip='%s'/>" % host.get("ip"))
            for host in tree.findall("./dns/host")
            if any(name.text in names for name in host.findall("hostname"))
        ]
        for section, xml in gone:
            net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, -1, xml, update_flags)


def network_entries(net, inactive=False):
    """``(reservations, dns records)`` of a libvirt network's live (or persistent) definition:
    ``{name: (mac, ip)}`` and ``{ip: [names]}``."""
    import libvirt

    tree = ET.fromstring(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE if inactive else 0))
    reservations = {h.get("name"): (h.get("mac"), h.get("ip")) for h in tree.findall("./ip/dhcp/host")}
    records = {h.get("ip"): sorted(n.text for n in h.findall("hostname")) for h in tree.findall("./dns/host")}
    return reservations, records


def write_vm_inventory(path, vms):
    """An inventory file of VM hosts (group ``vms``): ``vms`` maps each name to its host variables."""
    import yaml

    Path(path).write_text(yaml.safe_dump({"all": {"children": {"vms": {"hosts": vms}}}}, sort_keys=True))
    return Path(path)
