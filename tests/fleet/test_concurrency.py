# -*- coding: utf-8 -*-
"""Ten VMs declared on one hypervisor converge in one run of playbooks/vms.yml
with forks=10, no throttle and no serial: every disk (a linked clone), seed and
domain is there afterwards, and every VM's fixed address has its DHCP
reservation and DNS record in the network's running and persistent
definitions. Ten tasks that add their entry to one network at the same time
must not lose each other's (kvm_network_host adds one entry per call); nor does
the hypervisor role's kvm_network, which leaves the lists it is not given alone.

The VMs are defined, not started: a boot proves nothing more here."""

from __future__ import annotations

import pytest

from tests.fleet.fleetlab import REPO, network_entries, remove_vms

pytestmark = [pytest.mark.fleet]

HOST = "hv1"
COUNT = 10
NAMES = ["iaastest-cc-%02d" % i for i in range(1, COUNT + 1)]
ADDRESSES = {name: "192.168.122.%d" % (30 + i) for i, name in enumerate(NAMES, start=1)}

RESOURCES_PLAYBOOK = """
- name: The hypervisor role's pools and networks only
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Ensure the pools and networks of the inventory
      ansible.builtin.include_role:
        name: iaas.kvm.hypervisor
        tasks_from: resources
"""


@pytest.fixture
def ten_vms(fleet, fleet_conn, vm_inventory):
    conn = fleet_conn(HOST)
    remove_vms(conn, NAMES, network="default")
    inventory = vm_inventory(
        {
            name: dict(vm_host=HOST, vm_state="present", vm_memory="256MiB", vm_vcpus=1, vm_ip=ADDRESSES[name])
            for name in NAMES
        }
    )
    yield conn, inventory
    remove_vms(conn, NAMES, network="default")


def test_ten_vms_on_one_hypervisor_converge_in_one_run_and_keep_every_entry(fleet, ten_vms, tmp_path):
    conn, inventory = ten_vms
    run = fleet.playbook(
        REPO / "playbooks" / "vms.yml", inventories=[inventory], forks=COUNT, extra_vars=dict(vms_file="")
    )
    print("vms.yml, %d VMs on %s with forks=%d: %.1f s" % (COUNT, HOST, COUNT, run.seconds))
    assert run.returncode == 0, run.tail()
    for name in NAMES:
        assert run.ok(name), run.tail()
        assert run.changed(name) >= 3, run.tail()  # disk, seed, reservation and DNS record, domain

    pool = conn.storagePoolLookupByName("default")
    pool.refresh(0)
    volumes = set(pool.listVolumes())
    base = pool.storageVolLookupByName("debian-12-lab.qcow2").path()
    for name in NAMES:
        assert name + ".qcow2" in volumes and name + "-seed.iso" in volumes, name
        disk = pool.storageVolLookupByName(name + ".qcow2").XMLDesc(0)
        assert "<backingStore>" in disk and base in disk, disk  # a linked clone of the base image
        dom = conn.lookupByName(name)
        assert dom.isPersistent() and not dom.isActive()

    net = conn.networkLookupByName("default")
    for inactive in (False, True):
        reservations, records = network_entries(net, inactive=inactive)
        lost = [name for name in NAMES if name not in reservations]
        assert not lost, "reservations lost (%s definition): %s" % ("persistent" if inactive else "live", lost)
        for name in NAMES:
            mac, ip = reservations[name]
            assert ip == ADDRESSES[name]
            assert records.get(ip) == [name], (name, records)
            assert ("mac address='%s'" % mac) in conn.lookupByName(name).XMLDesc(0)
    assert len({mac for mac, _ip in network_entries(net)[0].values()}) == len(network_entries(net)[0])

    # The hypervisor role's kvm_network (the inventory lists no reservations) leaves them all.
    playbook = tmp_path / "resources.yml"
    playbook.write_text(RESOURCES_PLAYBOOK)
    resources = fleet.playbook(playbook, limit=HOST)
    assert resources.returncode == 0, resources.tail()
    assert resources.ok(HOST) and resources.changed(HOST) == 0, resources.tail()
    assert sorted(n for n in network_entries(net)[0] if n in NAMES) == NAMES
