# -*- coding: utf-8 -*-
"""The inventory plugin iaas.kvm.kvm_vms and the placement of playbooks/vms.yml
on the lab's fleet.

Inventory: two guests booted from the base image, one on hv1 and one on hv2,
both with the address 192.168.122.50 on their hypervisor's own NAT network
``default`` (the same subnet on every host, as on real servers). The plugin
asks every hypervisor over ``qemu+ssh://`` (SSH through the lab namespace, as
the fleet's ssh_config sets it up) plus one address where no hypervisor
answers, and reaches each guest through its own hypervisor (ProxyJump):
``ansible -m ping`` gets an answer from both, and each answers with its own
host name, although their addresses are the same. A VM defined on hv3 with a
GPU recorded in its metadata lands in the GPU model's group and, stopped, in
the group of VMs without an address; ``ansible-inventory --graph`` shows them.

Placement: hv1 carries the drain marker, hv2 has four GPUs (a fake sysfs tree
below the module's ``root``, since the lab has no GPU); vms.yml's placement
play alone (``--tags placement``) puts a GPU VM on hv2, the others on the
hosts that are not drained, and stops with the reason per hypervisor for a VM
that fits nowhere; nothing is created either way."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.ansible_cli import unwrap
from tests.fleet.fleetlab import REPO, VENV_BIN, remove_vms

pytestmark = [pytest.mark.fleet]

GUESTS = {"iaastest-inv-a": "hv1", "iaastest-inv-b": "hv2"}
SHARED_IP = "192.168.122.50"
GPU_VM = "iaastest-inv-gpu"
GPU_HOST = "hv3"
GPU_MODEL = "10de:2330"
# An address of the management network where no hypervisor runs.
NOBODY = "192.168.149.19"
FAKE_ROOT = "/var/lib/iaas-kvm/iaastest-inv-root"
DRAIN = "/var/lib/iaas-kvm/drained"

GPU_DOMAIN = """
<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <metadata>
    <iaas:vm xmlns:iaas="urn:iaas-kvm:vm:1">
      <iaas:tags><iaas:tag name="team">vision</iaas:tag></iaas:tags>
      <iaas:gpus><iaas:gpu address="0000:41:00.0" model="%s"/></iaas:gpus>
    </iaas:vm>
  </metadata>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source>
    </hostdev>
  </devices>
</domain>
""" % (GPU_VM, GPU_MODEL)


def run(command, timeout=300, **env):
    proc_env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **env)
    proc_env["PATH"] = "%s:%s" % (VENV_BIN, proc_env.get("PATH", ""))
    return subprocess.run(
        command, capture_output=True, text=True, cwd=str(REPO), env=proc_env, timeout=timeout, check=False
    )


@pytest.fixture
def guests(fleet, fleet_conn, vm_inventory):
    """The two guests with the same address, booted, and the GPU VM, defined."""
    for name, host in GUESTS.items():
        remove_vms(fleet_conn(host), [name], network="default")
    remove_vms(fleet_conn(GPU_HOST), [GPU_VM])
    inventory = vm_inventory(
        {
            name: dict(vm_host=host, vm_ip=SHARED_IP, vm_vcpus=1, vm_memory="512MiB", vm_disk_size="3GiB")
            for name, host in GUESTS.items()
        }
    )
    made = fleet.playbook(REPO / "playbooks" / "vms.yml", inventories=[inventory], extra_vars=dict(vms_file=""))
    print("vms.yml, two guests with %s on %s: %.1f s" % (SHARED_IP, " and ".join(GUESTS.values()), made.seconds))
    assert made.returncode == 0, made.tail()
    fleet_conn(GPU_HOST).defineXML(GPU_DOMAIN)
    yield
    for name, host in GUESTS.items():
        remove_vms(fleet_conn(host), [name], network="default")
    remove_vms(fleet_conn(GPU_HOST), [GPU_VM])


def inventory_file(fleet, tmp_path):
    """fleet.kvm_vms.yml: every hypervisor over qemu+ssh:// plus one that does not answer."""
    ssh = tmp_path / "ssh"
    # libvirt runs this instead of ssh: the fleet's ssh_config (ProxyCommand inside the lab namespace).
    ssh.write_text('#!/bin/sh\nexec ssh -F %s -o BatchMode=yes "$@"\n' % fleet.ssh_config)
    ssh.chmod(0o755)
    hypervisors = ["qemu+ssh://root@%s/system?command=%s" % (host, ssh) for host in fleet.hosts]
    hypervisors.append(dict(uri="qemu+ssh://root@%s/system?command=%s" % (NOBODY, ssh), name="hv9"))
    config = dict(
        plugin="iaas.kvm.kvm_vms",
        hypervisors=hypervisors,
        timeout=20,
        proxy_jump=True,
        ssh_args="-F %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" % fleet.ssh_config,
        compose=dict(
            ansible_user="'debian'",
            ansible_ssh_private_key_file="'%s'" % os.path.expanduser("~/.ssh/iaas-kvm"),
            ansible_python_interpreter="'/usr/bin/python3'",
        ),
        keyed_groups=[dict(key="kvm_tags.team | default('none')", prefix="team")],
    )
    path = tmp_path / "fleet.kvm_vms.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_guests_with_one_address_on_two_hypervisors_are_each_reached_through_their_own(fleet, guests, tmp_path):
    source = inventory_file(fleet, tmp_path)

    listed = run([str(VENV_BIN / "ansible-inventory"), "-i", str(source), "--list"])
    assert listed.returncode == 0, listed.stderr
    # The hypervisor that does not answer is named in a warning; the others are listed.
    assert "hv9" in listed.stderr and NOBODY in listed.stderr, listed.stderr
    inventory = unwrap(json.loads(listed.stdout))
    hostvars = inventory["_meta"]["hostvars"]
    for name, host in GUESTS.items():
        assert hostvars[name]["ansible_host"] == SHARED_IP, hostvars[name]
        assert hostvars[name]["kvm_hypervisor"] == host
        assert "ProxyJump=root@%s" % host in hostvars[name]["ansible_ssh_common_args"], hostvars[name]
        assert name in inventory["kvm_hypervisor_%s" % host]["hosts"]
        assert name in inventory["kvm_state_running"]["hosts"] and name in inventory["kvm_network_default"]["hosts"]
    gpu_group = "kvm_gpu_%s" % GPU_MODEL.replace(":", "_")
    assert inventory[gpu_group]["hosts"] == [GPU_VM], inventory.get(gpu_group)
    assert GPU_VM in inventory["kvm_no_address"]["hosts"] and "ansible_host" not in hostvars[GPU_VM]
    assert hostvars[GPU_VM]["kvm_gpus"] == [dict(address="0000:41:00.0", model=GPU_MODEL)]
    assert GPU_VM in inventory["team_vision"]["hosts"]

    graph = run([str(VENV_BIN / "ansible-inventory"), "-i", str(source), "--graph"])
    assert graph.returncode == 0, graph.stderr
    print(graph.stdout)
    for group in ("kvm_hypervisor_hv1", "kvm_hypervisor_hv2", "kvm_state_running", gpu_group, "kvm_no_address"):
        assert "@%s:" % group in graph.stdout, graph.stdout

    pattern = ":".join(GUESTS)
    ping = run([str(VENV_BIN / "ansible"), "-i", str(source), pattern, "-o", "-m", "ansible.builtin.ping"])
    print(ping.stdout)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    for name in GUESTS:
        line = next((ln for ln in ping.stdout.splitlines() if ln.startswith(name + " | ")), "")
        assert line.startswith("%s | SUCCESS => " % name) and '"ping": "pong"' in line, ping.stdout

    # The same address, two machines: each answers with its own name.
    names = run(
        [str(VENV_BIN / "ansible"), "-i", str(source), pattern, "-o", "-m", "ansible.builtin.command", "-a", "hostname"]
    )
    assert names.returncode == 0, names.stdout + names.stderr
    for name in GUESTS:
        assert "%s | CHANGED | rc=0 | (stdout) %s" % (name, name) in names.stdout.splitlines(), names.stdout


def write_fake_gpus(fleet, host, tmp_path):
    """Four GPUs (10de:2204) in a fake sysfs tree below FAKE_ROOT on ``host`` (its private
    /var/lib/iaas-kvm): built here, copied over SSH."""
    from tests.fakesys import SCENARIOS, FakeHost

    tree = tmp_path / "fake-root"
    SCENARIOS["two_nodes"](FakeHost(tree))
    packed = subprocess.run(["tar", "-C", str(tree), "-cf", "-", "."], capture_output=True, check=True).stdout
    unpack = f"rm -rf {FAKE_ROOT} && mkdir -p {FAKE_ROOT} && tar -C {FAKE_ROOT} -xf -"
    subprocess.run(fleet.ssh_command(host, unpack), input=packed, capture_output=True, check=True, timeout=60)


@pytest.fixture
def placement_hosts(fleet, tmp_path):
    if fleet.size < 4:
        pytest.fail("the placement test needs a fleet of 4 hypervisors (scripts/lab.sh fleet start 4)", pytrace=False)
    fleet.ssh("hv1", "echo iaastest maintenance > %s" % DRAIN)
    write_fake_gpus(fleet, "hv2", tmp_path)
    yield
    fleet.ssh("hv1", "rm -f %s" % DRAIN)
    fleet.ssh("hv2", "rm -rf %s" % FAKE_ROOT)


def placed_domains(fleet, fleet_conn):
    return {
        host: sorted(d.name() for d in fleet_conn(host).listAllDomains() if d.name().startswith("iaastest-inv-p-"))
        for host in fleet.hosts
    }


def placement(fleet, tmp_path, vms):
    spec = tmp_path / "vms.yml"
    spec.write_text(yaml.safe_dump(dict(vms=vms)))
    roots = tmp_path / "roots.yml"
    roots.write_text(yaml.safe_dump({"hypervisors": {"hosts": {"hv2": {"vms_host_root": FAKE_ROOT}}}}))
    return fleet.playbook(
        REPO / "playbooks" / "vms.yml",
        "--tags",
        "placement",
        "--skip-tags",
        "always",
        inventories=[roots],
        extra_vars=dict(vms_file=str(spec)),
    )


def test_placement_on_the_fleet_avoids_the_drained_host_and_finds_the_gpus(
    fleet, fleet_conn, placement_hosts, tmp_path
):
    vms = [
        dict(name="iaastest-inv-p-gpu", vcpus=2, memory="1GiB", gpu_count=1, gpu_model="10de:2204"),
        dict(name="iaastest-inv-p-web1", vcpus=1, memory="512MiB", anti_affinity="web"),
        dict(name="iaastest-inv-p-web2", vcpus=1, memory="512MiB", anti_affinity="web"),
    ]
    before = placed_domains(fleet, fleet_conn)

    placed = placement(fleet, tmp_path, vms)
    print(placed.stdout[placed.stdout.find("TASK [The placement]") :][:2500])
    assert placed.returncode == 0, placed.tail()
    shown = placed.stdout[placed.stdout.find("TASK [The placement]") :]
    mapping = json.loads(shown[shown.find("{") : shown.find("\n}\n") + 2])["vms_placement"]
    assert mapping["iaastest-inv-p-gpu"]["host"] == "hv2", mapping
    assert len(mapping["iaastest-inv-p-gpu"]["gpus"]) == 1 and mapping["iaastest-inv-p-gpu"]["gpus"][0].startswith(
        "0000:"
    )
    web = {mapping["iaastest-inv-p-web1"]["host"], mapping["iaastest-inv-p-web2"]["host"]}
    assert len(web) == 2 and "hv1" not in web, mapping  # anti-affinity, and the drained host gets nothing

    unfit = [*vms, dict(name="iaastest-inv-p-big", vcpus=2, memory="1GiB", gpu_count=8, gpu_model="10de:2204")]
    refused = placement(fleet, tmp_path, unfit)
    assert refused.returncode != 0, refused.tail()
    failure = refused.stdout + refused.stderr
    print(failure[failure.find("fits on no hypervisor") - 200 :][:1500])
    assert "VM iaastest-inv-p-big" in failure and "fits on no hypervisor" in failure, refused.tail()
    assert "hv1: drained" in failure, refused.tail()
    assert "hv2: 4 free GPUs of model 10de:2204, 8 asked" in failure, refused.tail()
    assert "hv3: 0 free GPUs of model 10de:2204, 8 asked" in failure, refused.tail()

    assert placed_domains(fleet, fleet_conn) == before == {host: [] for host in fleet.hosts}  # nothing created
