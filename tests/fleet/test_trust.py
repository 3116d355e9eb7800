# -*- coding: utf-8 -*-
"""Trust between hypervisors for qemu+ssh:// (the hypervisor role's migration_trust
tasks, which playbooks/site.yml runs): hv4 loses the other hosts' keys from its
authorized_keys and its known hosts, and hv3 forgets hv4's host key; the tasks
put back exactly what is missing, libvirt then connects hv4 -> hv3 and hv3 ->
hv4 over SSH, and a second run changes nothing."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.fleet]

PLAY = """
- name: Trust between the hypervisors
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: The hypervisor role's migration trust
      ansible.builtin.include_role:
        name: iaas.kvm.hypervisor
        tasks_from: migration_trust
"""


def virsh_over_ssh(fleet, source, dest):
    return fleet.ssh(source, "timeout 30 virsh -c 'qemu+ssh://root@%s/system?no_tty=1' hostname" % dest, check=False)


def test_trust_puts_back_what_is_missing_and_nothing_else(fleet, tmp_path):
    if fleet.size < 4:
        pytest.fail("the trust test needs a fleet of 4 hypervisors (scripts/lab.sh fleet start 4)", pytrace=False)
    playbook = tmp_path / "trust.yml"
    playbook.write_text(PLAY)
    # hv4 keeps only the controller's key (the first line the lab wrote) and knows no host.
    fleet.ssh("hv4", "sed -i '2,$d' /root/.ssh/authorized_keys && : > /root/.ssh/known_hosts")
    fleet.ssh("hv3", "sed -i '/^hv4[, ]/d' /root/.ssh/known_hosts")
    broken = virsh_over_ssh(fleet, "hv3", "hv4")
    assert broken.returncode != 0, "hv3 reached hv4's libvirt without the trust"
    first = fleet.playbook(playbook)
    assert first.returncode == 0, first.tail()
    print("trust, first run: changed %s in %.1f s" % ({h: first.changed(h) for h in fleet.hosts}, first.seconds))
    assert first.changed("hv4") == 2 and first.changed("hv3") == 1, first.tail()
    assert first.changed("hv1") == 0 and first.changed("hv2") == 0, first.tail()
    for source, dest in (("hv4", "hv3"), ("hv3", "hv4")):
        proc = virsh_over_ssh(fleet, source, dest)
        assert proc.returncode == 0 and proc.stdout.strip() == dest, (source, dest, proc.stderr)
    again = fleet.playbook(playbook)
    assert again.returncode == 0, again.tail()
    assert all(again.changed(h) == 0 for h in fleet.hosts), again.tail()
