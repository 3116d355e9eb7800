# -*- coding: utf-8 -*-
"""The dev node for real: scripts/devnode.sh and the Vagrantfile's lab profile.

``vagrant up`` with vagrant-libvirt against the lab's libvirtd boots the box
built from the project's image recipe (a QEMU guest under TCG, systemd inside),
the Ansible provisioner runs playbooks/site.yml in it twice (the second run
changes nothing), the node is checked over ``vagrant ssh`` and over plain
``ssh -F`` with ``vagrant ssh-config``, and ``destroy`` leaves none of
Vagrant's domains, volumes or networks in the lab.

Every step prints its time. The objects carry the test prefix: the box
``iaastest-devnode-box`` (its base volume in the pool is named after it), the
domain ``iaastest-iaas-dev-node`` with its disk, and the management network
``iaastest-iaas-dev-node-mgmt`` on 192.168.191.0/24.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import libvirt
import pytest

from tests.integration.cleanup import clean

pytestmark = [pytest.mark.lab]

REPO = Path(__file__).resolve().parents[2]
DEVNODE = REPO / "scripts" / "devnode.sh"
URI = "qemu:///system"
BOX = "iaastest-devnode-box"
PREFIX = "iaastest-"
NODE = "iaas-dev-node"
DOMAIN = PREFIX + NODE
NETWORK = DOMAIN + "-mgmt"
# What Vagrant makes in the lab: the domain, its disk and management network
# (all named DOMAIN...), and the box's base volume (named after the box).
OWNED = (DOMAIN, BOX + "_vagrant_box_image_")
SUBNET = "192.168.191.0/24"
# Bounds every command; vagrant's own boot timeout (300 s) bounds the boot.
COMMAND_TIMEOUT = 900
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RECAP = re.compile(
    r"^\s*%s\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)" % re.escape(NODE),
    re.MULTILINE,
)


class Run:
    """A finished command: exit status, output lines with their times, total seconds."""

    def __init__(self, rc, lines, seconds):
        self.rc = rc
        self.lines = lines
        self.seconds = seconds

    @property
    def text(self):
        return "\n".join(line for _at, line in self.lines)

    def seconds_at(self, marker):
        """Seconds from the start until the first line containing marker (None if absent)."""
        return next((t for t, line in self.lines if marker in line), None)

    def task_times(self, after=0.0):
        """(seconds, task) of each Ansible task that started after the given time, slowest first."""
        starts = [(t, line) for t, line in self.lines if t >= after and line.startswith(("TASK [", "PLAY RECAP"))]
        spans = [(end[0] - start[0], start[1].rstrip(" *")) for start, end in zip(starts, starts[1:])]
        return sorted(spans, reverse=True)

    def recap(self):
        found = RECAP.findall(self.text)
        assert len(found) == 1, "expected one play recap for %s in:\n%s" % (NODE, self.text[-3000:])
        return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, found[0])))


def run(argv, env, echo=True):
    """Run argv, echo its output (without Vagrant's progress bars), keep the lines."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["timeout", str(COMMAND_TIMEOUT), *map(str, argv)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines = []
    for chunk in proc.stdout:
        for line in ANSI.sub("", chunk).replace("\r", "\n").splitlines():
            if not line.strip() or line.lstrip().startswith("Progress:"):
                continue
            lines.append((time.monotonic() - start, line))
            if echo:
                print("    | " + line, flush=True)
    rc = proc.wait()
    return Run(rc, lines, time.monotonic() - start)


def lab_env(tmp_path, **extra):
    env = dict(os.environ)
    env.update(
        IAAS_KVM_DEVNODE_BOX=BOX,
        IAAS_KVM_DEVNODE_PREFIX=PREFIX,
        IAAS_KVM_DEVNODE_SUBNET=SUBNET,
        VAGRANT_DOTFILE_PATH=str(tmp_path / "vagrant"),
        # ansible-playbook (started by Vagrant) then prints each line at once, so tasks can be timed.
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def owned_objects(conn):
    """Vagrant's objects of this test in the lab: domains, networks and volumes of every pool."""
    found = ["domain " + d.name() for d in conn.listAllDomains(0) if d.name().startswith(OWNED)]
    found += ["network " + n.name() for n in conn.listAllNetworks(0) if n.name().startswith(OWNED)]
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        pool.refresh(0)
        found += [
            "volume %s/%s" % (pool.name(), v.name()) for v in pool.listAllVolumes(0) if v.name().startswith(OWNED)
        ]
    return sorted(found)


def node_report(env):
    """For a failed provision: the state of libvirtd's units in the node and their journal."""
    report = run(
        [
            DEVNODE,
            "ssh",
            "-c",
            "sudo systemctl status --no-pager --lines=0 libvirtd.service libvirtd.socket virtlogd.socket; "
            "sudo journalctl -b --no-pager -n 60 -u libvirtd.service -u libvirtd.socket",
        ],
        env,
        echo=False,
    )
    return "\n[devnode] libvirtd in the node (ssh rc %d):\n%s" % (report.rc, report.text[-4000:])


def print_slowest(title, run_result, after=0.0, count=6):
    spans = run_result.task_times(after)
    total = sum(secs for secs, _name in spans)
    print("[devnode] %s: %d tasks in %.1f s, the slowest:" % (title, len(spans), total))
    for secs, task in spans[:count]:
        print("    %6.1f s  %s" % (secs, task))


class Steps:
    """Times of the steps, printed as each ends and as a table at the end."""

    def __init__(self):
        self.rows = []

    def add(self, name, seconds):
        self.rows.append((name, seconds))
        print("[devnode] %s: %.1f s" % (name, seconds), flush=True)

    def table(self):
        width = max(len(name) for name, _secs in self.rows)
        # Guests run under software emulation: the figures scale with what else runs here.
        load = ", ".join("%.1f" % x for x in os.getloadavg())
        out = ["", "[devnode] step times (load average now %s on %d CPUs)" % (load, os.cpu_count())]
        out += [f"  {name:<{width}} {secs:7.1f} s" for name, secs in self.rows]
        total = sum(secs for _name, secs in self.rows)
        out.append(f"  {'total':<{width}} {total:7.1f} s")
        print("\n".join(out), flush=True)


@pytest.fixture(name="conn")
def fixture_conn():
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@pytest.fixture(name="node_env")
def fixture_node_env(tmp_path, conn):
    """The test's environment; whatever a failed run left behind is destroyed and removed."""
    env = lab_env(tmp_path)
    leftovers = clean(conn, DOMAIN) + clean(conn, BOX + "_vagrant_box_image_")
    if leftovers:
        print("[devnode] removed what an earlier run left: " + ", ".join(leftovers))
    yield env
    if owned_objects(conn):
        run([DEVNODE, "destroy"], env, echo=False)
        clean(conn, DOMAIN)
        clean(conn, BOX + "_vagrant_box_image_")
    run(["vagrant", "box", "remove", "--force", BOX], env, echo=False)


@pytest.mark.guest
def test_dev_node_up_provision_twice_and_destroy(node_env, conn, tmp_path):  # noqa: PLR0915 - the dev node's whole life in order, timed step by step
    steps = Steps()
    before = owned_objects(conn)
    print("[devnode] before up: %s" % (before or "nothing of Vagrant's in the lab"))
    assert before == []

    box = run([DEVNODE, "box"], node_env)
    assert box.rc == 0, box.text[-3000:]
    steps.add("box (%s)" % ("cached" if " is built " in box.text else "built"), box.seconds)

    up = run([DEVNODE, "up"], node_env)
    assert up.rc == 0, up.text[-3000:] + node_report(node_env)
    provision_start = up.seconds_at("Running provisioner: ansible")
    assert provision_start is not None, "vagrant up ran no Ansible provisioner:\n" + up.text[-3000:]
    booting = up.seconds_at("Starting domain.")
    addressed = up.seconds_at("Waiting for machine to boot.")
    assert booting is not None and addressed is not None, up.text[-3000:]
    steps.add("up: box upload and domain definition", booting)
    steps.add("up: boot until DHCP lease", addressed - booting)
    steps.add("up: lease until SSH answers, hostname", provision_start - addressed)
    steps.add("up: first provision (playbooks/site.yml)", up.seconds - provision_start)
    print_slowest("first provision", up, after=provision_start)
    first = up.recap()
    print("[devnode] first provision recap: %s" % first)
    assert first["failed"] == 0 and first["unreachable"] == 0
    assert first["changed"] > 0, "the first provision changed nothing: did the roles run?"

    during = owned_objects(conn)
    print("[devnode] after up: %s" % during)
    assert "domain " + DOMAIN in during
    assert "network " + NETWORK in during
    assert any(o.startswith("volume default/" + BOX + "_vagrant_box_image_") for o in during), during
    assert "volume default/%s.img" % DOMAIN in during

    # libvirtd leaves after two idle minutes (its unit's --timeout 120) and its
    # socket starts it again: stop it as that timeout would, so the second run
    # meets an idle libvirtd every time, however long the first one took.
    idle = run(
        [DEVNODE, "ssh", "-c", "sudo systemctl stop libvirtd.service; systemctl is-active libvirtd.service"], node_env
    )
    assert idle.text.strip().splitlines()[-1] == "inactive", idle.text

    second_run = run([DEVNODE, "provision"], node_env)
    assert second_run.rc == 0, second_run.text[-3000:] + node_report(node_env)
    steps.add("second provision", second_run.seconds)
    print_slowest("second provision", second_run)
    second = second_run.recap()
    print("[devnode] second provision recap: %s" % second)
    assert second["failed"] == 0 and second["unreachable"] == 0
    assert second["changed"] == 0, "the second provision changed something:\n" + second_run.text[-4000:]

    checks_start = time.monotonic()
    nets = run([DEVNODE, "ssh", "-c", "sudo virsh -c qemu:///system net-list --all"], node_env)
    assert nets.rc == 0, nets.text
    assert re.search(r"^\s*default\s+active\s+yes\s+yes\s*$", nets.text, re.MULTILINE), nets.text

    inside = run(
        [
            DEVNODE,
            "ssh",
            "-c",
            "systemctl is-system-running --wait; systemctl is-active virtlogd.socket libvirtd.socket; "
            "systemctl is-enabled libvirtd.service; sudo virsh -c qemu:///system list --all; "
            "sudo virsh -c qemu:///system pool-list --all",
        ],
        node_env,
    )
    assert inside.rc == 0, inside.text
    assert re.search(r"^\s*default\s+active\s+yes\s*$", inside.text, re.MULTILINE), inside.text
    assert re.search(r"^\s*Id\s+Name\s+State\s*$", inside.text, re.MULTILINE), inside.text

    # What an editor's remote-SSH reads: ssh -F with the output works from the
    # machine's own namespace (the ProxyCommand crosses into the lab's).
    config = run([DEVNODE, "ssh-config"], node_env, echo=False)
    assert config.rc == 0, config.text
    print("    | " + config.text.replace("\n", "\n    | "))
    for key in ("Host " + NODE, "HostName 192.168.191.", "User vagrant", "IdentityFile ", "ProxyCommand ip netns exec"):
        assert key in config.text, config.text
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(config.text + "\n")
    hostname = run(["ssh", "-F", ssh_config, "-o", "BatchMode=yes", NODE, "hostname"], node_env)
    assert hostname.rc == 0, hostname.text
    assert hostname.text.strip().splitlines()[-1] == NODE, hostname.text
    steps.add("checks (net-list, services, pool, ssh-config)", time.monotonic() - checks_start)

    destroy = run([DEVNODE, "destroy"], node_env)
    assert destroy.rc == 0, destroy.text[-3000:]
    steps.add("destroy", destroy.seconds)
    after = owned_objects(conn)
    print("[devnode] after destroy: %s" % (after or "nothing of Vagrant's in the lab"))
    assert after == []
    steps.table()


def test_devnode_explains_a_lab_that_is_not_running(tmp_path):
    """Each command turns a missing lab into one sentence, before Vagrant touches anything."""
    env = lab_env(tmp_path, IAAS_KVM_LAB_NETNS="iaastest-nolab")
    for command in ("up", "provision", "ssh", "destroy"):
        result = run([DEVNODE, command], env, echo=False)
        assert result.rc != 0, "expected %s to fail without the lab" % command
        assert result.text.splitlines() == [
            "devnode: the lab is not running (no libvirtd answers inside network namespace iaastest-nolab): "
            "start it with scripts/lab.sh start or scripts/setup.sh."
        ]
    assert not (tmp_path / "vagrant").exists()


def test_devnode_explains_a_missing_box(tmp_path):
    """up without the box built for the current recipe says how to build it."""
    env = lab_env(tmp_path, IAAS_KVM_DEVNODE_BOX="iaastest-nobox", IAAS_KVM_DEVNODE_CACHE=str(tmp_path / "boxes"))
    result = run([DEVNODE, "up"], env, echo=False)
    assert result.rc != 0, "expected up to fail without a box"
    lines = result.text.splitlines()
    assert len(lines) == 1, result.text
    assert re.fullmatch(
        r"devnode: the box iaastest-nobox is not built for the current recipe \([0-9a-f]{12}\): "
        r"run scripts/devnode\.sh box first \(about two minutes\)\.",
        lines[0],
    ), lines[0]
    assert not (tmp_path / "vagrant").exists()


def test_devnode_explains_a_missing_plugin(tmp_path):
    """Without vagrant-libvirt (hidden here in a private mount namespace) every command says so."""
    # Debian's system plugins are listed in /usr/share/vagrant-plugins/plugins.d, a user's
    # in VAGRANT_HOME; an empty directory over the first and an empty VAGRANT_HOME hide both.
    (tmp_path / "home").mkdir()
    env = lab_env(tmp_path, VAGRANT_HOME=str(tmp_path / "home"))
    for command in ("up", "provision", "ssh", "destroy"):
        hidden = (
            "mount -t tmpfs iaastest-noplugins /usr/share/vagrant-plugins/plugins.d && "
            'vagrant plugin list && exec "$0" "$1"'
        )
        result = run(["unshare", "--mount", "sh", "-c", hidden, DEVNODE, command], env, echo=False)
        assert result.rc != 0, "expected %s to fail without the plugin" % command
        assert result.text.splitlines() == [
            "No plugins installed.",
            "devnode: the vagrant-libvirt plugin is missing: apt-get install vagrant-libvirt "
            "(scripts/setup.sh installs it).",
        ], result.text
