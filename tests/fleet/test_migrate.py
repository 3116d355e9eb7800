# -*- coding: utf-8 -*-
"""Moving VMs between the fleet's hypervisors with kvm_vm_migrate, and draining a
host with playbooks/drain.yml.

One guest is booted for the whole file (playbooks/vms.yml, on hv1, on the
segment ``datacentre`` that spans the hypervisors, with a static address): a
writer inside it appends an fsync'd sequence number to its disk every 100 ms.
It is moved live hv1 -> hv2 -> hv1: the writer keeps its PID, the boot does not
change and uptime goes on, no number is missing, the data written before the
move keeps its checksum, and the guest answers at the same address throughout
(reached through hv3, a host it never runs on). Its disk is a linked clone of
the base image: only the overlay is sent (libvirt's job statistics against the
overlay's and the base's sizes). Then the faults: the destination's libvirtd
killed midway, and the migration network cut (the job aborted by the module's
timeout); each time the VM runs on where it was, the state is listed before and
after, and a re-run moves it. A stopped linked clone moves offline (and back with its seed detached). Last,
drain.yml empties hv1 (the guest, a diskless VM, and a VM with a GPU that must
stay and be reported), vms.yml then changes nothing, undrain.yml clears the
marker.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import shlex
import subprocess
import time
from pathlib import Path

import libvirt
import pytest

from tests.fleet.fleetlab import GUEST_NET, REPO, remove_vms, write_vm_inventory

pytestmark = [pytest.mark.fleet]

VMS = REPO / "playbooks" / "vms.yml"
DRAIN = REPO / "playbooks" / "drain.yml"
UNDRAIN = REPO / "playbooks" / "undrain.yml"
GUEST = "iaastest-mig-live"
GUEST_IP = "%s.121" % GUEST_NET
GUEST_MAC = "52:54:00:19:01:21"
DISKLESS = "iaastest-mig-d1"
GPU_VM = "iaastest-mig-gpu"
OFFLINE = "iaastest-mig-off"
MINE = (GUEST, DISKLESS, GPU_VM, OFFLINE)
GUEST_KEY = Path.home() / ".ssh" / "iaas-kvm"
# The host the test reaches the guest through, wherever it runs.
VIEWPOINT = "hv3"

WRITER = r"""
import os, time
fd = os.open("/var/tmp/iaastest-seq", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    n += 1
    os.write(fd, b"%d %.3f\n" % (n, time.time()))
    os.fsync(fd)
    time.sleep(0.1)
"""

PROBE = r"""
import hashlib, json, os
pid = int(open("/var/tmp/iaastest-seq.pid").read())
print(json.dumps(dict(
    pid=pid,
    alive=os.path.exists("/proc/%d/cmdline" % pid) and b"iaastest-writer" in open("/proc/%d/cmdline" % pid, "rb").read(),
    boot_id=open("/proc/sys/kernel/random/boot_id").read().strip(),
    uptime=float(open("/proc/uptime").read().split()[0]),
    seq=open("/var/tmp/iaastest-seq").read(),
    data=hashlib.sha256(open("/var/tmp/iaastest-data", "rb").read()).hexdigest(),
)))
"""


def inventory_vms():
    return {
        GUEST: dict(
            vm_host="hv1",
            vm_vcpus=1,
            vm_memory="512MiB",
            vm_disk_size="3GiB",
            vm_network="datacentre",
            vm_mac=GUEST_MAC,
            vm_network_config=dict(
                version=2,
                ethernets=dict(datacentre=dict(match=dict(macaddress=GUEST_MAC), addresses=["%s/24" % GUEST_IP])),
            ),
        ),
        DISKLESS: dict(vm_host="hv1", vm_diskless=True, vm_memory=64, vm_vcpus=1),
    }


def clean(fleet, fleet_conn):
    for host in fleet.hosts:
        remove_vms(fleet_conn(host), list(MINE))
    fleet.ssh("hv1", "rm -f /var/lib/iaas-kvm/drained", check=False)


@pytest.fixture(scope="module")
def lab(fleet, fleet_conn, tmp_path_factory):
    """The booted guest (and the diskless VM) on hv1, the inventory that declares them and
    SSH to the guest through hv3."""
    if fleet.size < 3:
        pytest.fail("the migration tests need a fleet of 3 hypervisors (scripts/lab.sh fleet start 3)", pytrace=False)
    clean(fleet, fleet_conn)
    tmp = tmp_path_factory.mktemp("migrate")
    inventory = write_vm_inventory(tmp / "vms.yml", inventory_vms())
    run = fleet.playbook(VMS, inventories=[inventory], extra_vars=dict(vms_file=""))
    print("vms.yml booted %s on hv1: %.1f s" % (GUEST, run.seconds))
    assert run.returncode == 0, run.tail()
    ssh_config = tmp / "ssh_config"
    ssh_config.write_text(
        "Host %s\n  HostName %s\n  User debian\n  IdentityFile %s\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        "  ProxyCommand ssh -F %s -W %%h:%%p %s\n" % (GUEST, GUEST_IP, GUEST_KEY, fleet.ssh_config, VIEWPOINT)
    )
    lab = Lab(fleet, fleet_conn, inventory, ssh_config)
    lab.guest(
        "cat > /var/tmp/iaastest-writer.py && head -c 16M /dev/urandom > /var/tmp/iaastest-data && sync",
        stdin=WRITER,
    )
    lab.guest(
        "nohup python3 /var/tmp/iaastest-writer.py iaastest-writer </dev/null >/dev/null 2>&1 & echo $! > /var/tmp/iaastest-seq.pid"
    )
    time.sleep(1)
    yield lab
    clean(fleet, fleet_conn)


class Lab:
    def __init__(self, fleet, fleet_conn, inventory, ssh_config):
        self.fleet = fleet
        self.conn = fleet_conn
        self.inventory = inventory
        self.ssh_config = ssh_config
        self.first = None

    def guest(self, command, stdin=None, timeout=120):
        proc = subprocess.run(
            ["ssh", "-F", str(self.ssh_config), "-o", "ConnectTimeout=20", GUEST, command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, "ssh %s %r: %s" % (GUEST, command, proc.stderr)
        return proc.stdout

    def probe(self):
        """The writer's PID, the boot, uptime, the sequence, the data's checksum (over SSH to
        the guest's one address, through hv3)."""
        return json.loads(self.guest("python3 -c %s" % shlex.quote(PROBE)))

    def where(self, name=GUEST):
        """``{host: state}`` of the VM on every hypervisor that has it."""
        found = {}
        for host in self.fleet.hosts:
            dom = lookup(self.conn(host), name)
            if dom is not None:
                found[host] = "running" if dom.isActive() else "defined"
        return found

    def volumes(self, host, prefix=GUEST):
        pool = self.conn(host).storagePoolLookupByName("default")
        pool.refresh(0)
        return sorted(v.name() for v in pool.listAllVolumes(0) if v.name().startswith(prefix))

    def listing(self, when, name=GUEST):
        print(
            "%s: %s on %s; its volumes: %s"
            % (
                when,
                name,
                self.where(name),
                {h: self.volumes(h, name) for h in self.fleet.hosts[:3]},
            )
        )

    def migrate(self, source, dest, check=False, **options):
        args = dict(
            name=options.pop("name", GUEST),
            dest_uri="qemu+ssh://root@%s/system" % dest,
            migrate_uri="tcp://%s" % self.fleet.address(dest),
            remove_source_volumes=True,
        )
        args.update(options)
        result, seconds = self.fleet.module(source, "iaas.kvm.kvm_vm_migrate", args, check=check)
        return result, seconds


def lookup(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def sequence(text):
    """The numbers the writer wrote, checked to be 1..N without a gap; ``(N, the longest pause
    between two writes in seconds)``."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    numbers = [int(n) for n, _stamp in rows]
    assert numbers == list(range(1, len(numbers) + 1)), (
        "numbers missing or out of order: %s" % [(a, b) for a, b in zip(numbers, numbers[1:]) if b != a + 1][:5]
    )
    stamps = [float(t) for _number, t in rows]
    return len(numbers), max((b - a for a, b in zip(stamps, stamps[1:])), default=0.0)


def assert_same_guest(before, after):
    assert after["pid"] == before["pid"] and after["alive"], (before["pid"], after["pid"], after["alive"])
    assert after["boot_id"] == before["boot_id"], "the guest booted again"
    assert after["uptime"] > before["uptime"], (before["uptime"], after["uptime"])
    assert after["data"] == before["data"], "the data written before the move changed"
    count_before, _seconds = sequence(before["seq"])
    count_after, pause = sequence(after["seq"])
    assert after["seq"].startswith(before["seq"]), "the numbers written before the move changed"
    assert count_after > count_before
    return count_before, count_after, pause


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def live_move(lab, source, dest):
    before = lab.probe()
    result, seconds = lab.migrate(source, dest)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["mode"] == "live" and result["state"] == "running"
    assert lab.where() == {dest: "running"}
    assert lab.volumes(source) == [], "the source's copied volumes were not removed"
    assert lab.volumes(dest) == [GUEST + "-seed.iso", GUEST + ".qcow2"]
    after = lab.probe()
    n_before, n_after, pause = assert_same_guest(before, after)
    stats = result["job_stats"]
    volumes = {v["role"]: v for v in result["volumes"]}
    print(
        "live %s -> %s: %.1f s (module), %d ms (libvirt), downtime %d ms; writer pid %d kept, uptime %.0f -> %.0f s, "
        "numbers 1..%d before and 1..%d after, none missing (longest pause %.2f s), data sha256 %s… intact; "
        "disk data sent %d bytes, overlay %d bytes (allocation %d), base %d bytes (not sent), memory sent %d bytes"
        % (
            source,
            dest,
            seconds,
            stats["time_elapsed"],
            stats["downtime"],
            after["pid"],
            before["uptime"],
            after["uptime"],
            n_before,
            n_after,
            pause,
            after["data"][:16],
            stats.get("disk_processed", 0),
            volumes["overlay"]["size"],
            volumes["overlay"]["allocation"],
            volumes["base-in-place"]["size"],
            stats.get("memory_processed", 0),
        )
    )
    # Only the overlay went over: what was sent is far below the base's data.
    assert volumes["overlay"]["copied"] and not volumes["base-in-place"]["copied"]
    assert 0 < stats["disk_processed"] < volumes["base-in-place"]["size"] / 2
    assert result["bytes_copied"] == volumes["media"]["size"]  # the seed, by the module
    return result


def test_live_migration_keeps_the_guest_running(lab):
    assert lab.where() == {"hv1": "running"}
    check, _seconds = lab.migrate("hv1", "hv2", check=True)
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] and check["mode"] == "live"
    assert lab.where() == {"hv1": "running"} and lab.volumes("hv2") == []
    live_move(lab, "hv1", "hv2")
    again, _seconds = lab.migrate("hv1", "hv2")
    assert not again.get("failed"), again.get("msg")
    assert not again["changed"]
    live_move(lab, "hv2", "hv1")


def move_in_background(lab, source, dest, **options):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(lab.migrate, source, dest, **options)
    pool.shutdown(wait=False)
    return future


def wait_for_transfer(lab, source, least=1):
    """Wait until the running migration job on ``source`` has sent ``least`` bytes."""
    dom = lab.conn(source).lookupByName(GUEST)
    for _attempt in range(200):
        stats = dom.jobStats(0)
        if (
            stats.get("type", 0) != libvirt.VIR_DOMAIN_JOB_NONE
            and stats.get("data_processed", 0) + stats.get("disk_processed", 0) >= least
        ):
            return stats
        time.sleep(0.1)
    raise AssertionError("no migration job started on %s" % source)


def test_destination_libvirtd_killed_midway(lab):
    fleet = lab.fleet
    before = lab.probe()
    lab.listing("before")
    future = move_in_background(lab, "hv1", "hv2", bandwidth=8)
    stats = wait_for_transfer(lab, "hv1", least=4 * 1024 * 1024)
    fleet.console("hv2", "sh", "-c", "kill -KILL $(cat /run/libvirtd.pid)")
    print(
        "libvirtd of hv2 killed after %d bytes of the migration"
        % (stats.get("data_processed", 0) + stats.get("disk_processed", 0))
    )
    result, seconds = future.result(timeout=300)
    assert result.get("failed"), "the migration did not fail with the destination's libvirtd killed"
    print("failed after %.1f s: %s" % (seconds, result["msg"]))
    assert "did not move" in result["msg"] and "running on hv1" in result["msg"]
    assert lookup(lab.conn("hv1"), GUEST).isActive()
    fleet.ssh("hv2", "rm -f /run/libvirtd.pid; libvirtd -d -p /run/libvirtd.pid")
    lab.conn.reset("hv2")
    for _attempt in range(100):
        with contextlib.suppress(libvirt.libvirtError):
            lab.conn("hv2").getHostname()
            break
        lab.conn.reset("hv2")
        time.sleep(0.2)
    lab.listing("after the failure, hv2's libvirtd started again")
    for _attempt in range(150):  # libvirtd ends the incoming QEMU it finds again when it starts
        if lab.where() == {"hv1": "running"}:
            break
        time.sleep(0.2)
    lab.listing("once hv2's libvirtd ended the incoming QEMU")
    assert lab.where() == {"hv1": "running"}
    assert_same_guest(before, lab.probe())
    rerun = live_move(lab, "hv1", "hv2")
    print("re-run: %s" % rerun["actions"])
    lab.listing("after the re-run")


def test_migration_network_cut_and_timeout(lab):
    """The migration network refuses the migration's connections midway (a firewall rule on
    the destination; hv2's libvirtd still reaches hv1's over SSH): the job fails, the VM runs
    on. Then a move capped at 1 MiB/s with a 5 s timeout is aborted by the module. Then a
    re-run moves the VM."""
    fleet = lab.fleet
    assert lab.where() == {"hv2": "running"}
    before = lab.probe()
    lab.listing("before")
    future = move_in_background(lab, "hv2", "hv1", bandwidth=8)
    wait_for_transfer(lab, "hv2", least=1024 * 1024)
    cut = ["INPUT", "-d", fleet.address("hv1"), "-s", fleet.address("hv2"), "-p", "tcp", "!", "--dport", "22"]
    cut += ["-j", "REJECT", "--reject-with", "tcp-reset"]
    fleet.console("hv1", "iptables", "-I", *cut)
    try:
        result, seconds = future.result(timeout=300)
    finally:
        fleet.console("hv1", "iptables", "-D", *cut, check=False)
    assert result.get("failed"), "the migration did not fail with its network cut"
    print("network cut: failed after %.1f s: %s" % (seconds, result["msg"]))
    assert "did not move" in result["msg"] and "running on hv2" in result["msg"]
    lab.listing("after the cut (the network is back)")
    assert lab.where() == {"hv2": "running"}
    assert lab.volumes("hv1") == []

    result, seconds = lab.migrate("hv2", "hv1", bandwidth=1, timeout=5)
    assert result.get("failed"), "a migration at 1 MiB/s finished within 5 s"
    print("timeout: failed after %.1f s: %s" % (seconds, result["msg"]))
    assert "did not finish within 5 seconds and was aborted" in result["msg"]
    lab.listing("after the timeout")
    assert lab.where() == {"hv2": "running"}
    assert lab.volumes("hv1") == []
    assert_same_guest(before, lab.probe())
    live_move(lab, "hv2", "hv1")
    lab.listing("after the re-run")


def test_stopped_linked_clone_moves_offline(lab):
    fleet = lab.fleet
    for module, args in (
        (
            "iaas.kvm.kvm_volume",
            dict(
                name=OFFLINE + ".qcow2",
                pool="default",
                format="qcow2",
                capacity="3GiB",
                backing_volume="debian-12-lab.qcow2",
            ),
        ),
        ("iaas.kvm.cloudinit_seed", dict(pool="default", name=OFFLINE + "-seed.iso", hostname=OFFLINE)),
        (
            "iaas.kvm.kvm_vm",
            dict(
                name=OFFLINE,
                state="stopped",
                memory=256,
                vcpus=1,
                domain_type="qemu",
                disks=[dict(volume=OFFLINE + ".qcow2", pool="default")],
                cloudinit_seed=dict(volume=OFFLINE + "-seed.iso", pool="default"),
                interfaces=[dict(network="datacentre")],
            ),
        ),
    ):
        made, _seconds = fleet.module("hv1", module, args)
        assert not made.get("failed"), made.get("msg")
    lab.listing("before", OFFLINE)
    result, seconds = lab.migrate("hv1", "hv3", name=OFFLINE)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["mode"] == "offline"
    volumes = {v["role"]: v for v in result["volumes"]}
    print(
        "offline hv1 -> hv3: %.1f s, %d bytes copied: overlay %d + seed %d bytes; base %d bytes not copied"
        % (
            seconds,
            result["bytes_copied"],
            volumes["overlay"]["size"],
            volumes["media"]["size"],
            volumes["base-in-place"]["size"],
        )
    )
    lab.listing("after", OFFLINE)
    assert lab.where(OFFLINE) == {"hv3": "defined"}
    assert result["bytes_copied"] == volumes["overlay"]["size"] + volumes["media"]["size"]
    vol = lab.conn("hv3").storagePoolLookupByName("default").storageVolLookupByName(OFFLINE + ".qcow2")
    assert "/var/lib/libvirt/images/debian-12-lab.qcow2" in vol.XMLDesc(0)  # the backing chain is intact
    again, _seconds = lab.migrate("hv1", "hv3", name=OFFLINE)
    assert not again.get("failed"), again.get("msg")
    assert not again["changed"]
    # Back to hv1 without its seed: the drive arrives empty, the seed stays on hv3.
    back, _seconds = lab.migrate("hv3", "hv1", name=OFFLINE, readonly_media="detach")
    assert not back.get("failed"), back.get("msg")
    assert back["changed"] and back["bytes_copied"] == volumes["overlay"]["size"]
    cdrom = lab.conn("hv1").lookupByName(OFFLINE).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    cdrom = cdrom[cdrom.index("device='cdrom'") :].split("</disk>")[0]
    assert "<source" not in cdrom, cdrom
    assert lab.volumes("hv1", OFFLINE) == [OFFLINE + ".qcow2"]
    assert lab.volumes("hv3", OFFLINE) == [OFFLINE + "-seed.iso"]
    lab.listing("after the move back with readonly_media=detach", OFFLINE)


GPU_VM_XML = (
    """<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os><devices>
<hostdev mode='subsystem' type='pci' managed='yes'><source>
<address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source></hostdev>
</devices></domain>"""
    % GPU_VM
)


def changed_tasks(stdout):
    """``[(task, host)]`` of the results a playbook run reported as changed."""
    task, found = None, []
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[6:].split("]")[0].split(" : ")[-1]
        elif line.startswith("changed: ["):
            found.append((task, line[10:].split("]")[0].split(" -> ")[0]))
    return found


def test_drain_moves_what_can_move_and_vms_yml_leaves_it_there(lab):
    fleet = lab.fleet
    assert lab.where() == {"hv1": "running"} and lab.where(DISKLESS) == {"hv1": "running"}
    lab.conn("hv1").defineXML(GPU_VM_XML)  # a fake GPU: defined, never started
    foreign = [d.name() for d in lab.conn("hv1").listAllDomains(0) if d.name() not in MINE]
    assert not foreign, "hv1 holds VMs of others (%s): drain.yml would move them too" % foreign
    before = lab.probe()
    drain = fleet.playbook(DRAIN, extra_vars=dict(drain_host="hv1", drain_reason="iaastest kernel update"))
    print("drain.yml -e drain_host=hv1: %.1f s, recap %s" % (drain.seconds, drain.recap.get("hv1")))
    print("\n".join(line for line in drain.stdout.splitlines() if "VM " in line or "<-" in line))
    assert drain.returncode == 0, drain.tail()
    assert drain.ok("hv1") and drain.changed("hv1") == 2, drain.tail()  # the marker, the moves
    assert "VM %s holds host devices (0000:41:00.0) and cannot move" % GPU_VM in drain.stdout
    moved = {name: lab.where(name) for name in (GUEST, DISKLESS, GPU_VM)}
    print("after drain.yml: %s" % moved)
    assert moved[GPU_VM] == {"hv1": "defined"}
    for name in (GUEST, DISKLESS):
        ((host, state),) = moved[name].items()
        assert host != "hv1" and state == "running", moved
    assert fleet.ssh("hv1", "cat /var/lib/iaas-kvm/drained").stdout.strip() == "iaastest kernel update"
    assert_same_guest(before, lab.probe())

    again = fleet.playbook(VMS, inventories=[lab.inventory], extra_vars=dict(vms_file=""))
    print(
        "vms.yml after the drain: %.1f s, changed %s"
        % (again.seconds, {h: c["changed"] for h, c in again.recap.items()})
    )
    assert again.returncode == 0, again.tail()
    # Nothing is made or changed on any hypervisor; inside the guest only the motd, which
    # names the guest's hypervisor, follows it.
    changed = changed_tasks(again.stdout)
    print("vms.yml after the drain changed: %s" % (changed or "nothing"))
    assert all(task == "Say who manages this guest" and host == GUEST for task, host in changed), again.tail()
    assert all(again.changed(h) == 0 for h in [*fleet.hosts, DISKLESS]), again.tail()
    assert "is declared on hv1 and is on" in again.stdout
    assert {name: lab.where(name) for name in (GUEST, DISKLESS, GPU_VM)} == moved

    undrain = fleet.playbook(UNDRAIN, extra_vars=dict(drain_host="hv1"))
    assert undrain.returncode == 0, undrain.tail()
    assert undrain.changed("hv1") == 1, undrain.tail()
    assert fleet.ssh("hv1", "test -e /var/lib/iaas-kvm/drained", check=False).returncode == 1
    print("undrain.yml: %.1f s, recap %s" % (undrain.seconds, undrain.recap.get("hv1")))
