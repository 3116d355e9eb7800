# -*- coding: utf-8 -*-
"""The work of the inventory plugin iaas.kvm.kvm_vms (plugins/plugin_utils/_kvm_vms.py)
against libvirt's test driver: several ``test:///<file>`` hypervisors with domains,
interfaces, tags and GPU models in their metadata, one that cannot be reached and
one that never answers. The plugin itself, run by ansible-inventory, is in
test_kvm_vms_plugin.py."""

from __future__ import annotations

import socket
import time

import pytest

from ansible_collections.iaas.kvm.plugins.plugin_utils._kvm_vms import (
    InventoryError,
    build,
    hypervisor_entries,
    query_all,
)

META = (
    "<metadata><iaas:vm xmlns:iaas='urn:iaas-kvm:vm:1'><iaas:tags>%s</iaas:tags>"
    "<iaas:gpus><iaas:gpu address='0000:41:00.0' model='10de:2330'/></iaas:gpus></iaas:vm></metadata>"
)


def vm_xml(name, mac=None, network="default", tags=None, gpu=False, bridge=None, vcpus=2, memory_mib=512):
    devices = ""
    if mac and bridge:
        devices += "<interface type='bridge'><mac address='%s'/><source bridge='%s'/></interface>" % (mac, bridge)
    elif mac:
        devices += "<interface type='network'><mac address='%s'/><source network='%s'/></interface>" % (mac, network)
    if gpu:
        devices += (
            "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            "<address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source></hostdev>"
        )
    metadata = META % "".join("<iaas:tag name='%s'>%s</iaas:tag>" % kv for kv in (tags or {}).items())
    return (
        "<domain type='test'><name>%s</name>%s<memory unit='MiB'>%d</memory><vcpu>%d</vcpu>"
        "<os><type>hvm</type></os><devices>%s</devices></domain>"
        % (name, metadata if tags is not None or gpu else "", memory_mib, vcpus, devices)
    )


def hypervisor_file(directory, name, *domains, subnet="192.168.150"):
    """A test driver with ``domains`` (all running) and the NAT network ``default`` on ``subnet``.0/24."""
    path = directory / ("%s.xml" % name)
    path.write_text(
        "<node>%s<network><name>default</name><bridge name='virbr0'/><ip address='%s.1' netmask='255.255.255.0'>"
        "<dhcp><range start='%s.2' end='%s.254'/></dhcp></ip></network>"
        "<pool type='dir'><name>default-pool</name><target><path>/default-pool</path></target></pool></node>"
        % ("".join(domains), subnet, subnet, subnet)
    )
    return "test://%s" % path


OPTIONS = dict(
    vars_prefix="kvm_",
    group_prefix="kvm_",
    name_clash="error",
    name_separator="-",
    states=None,
    proxy_jump=False,
    ssh_args=None,
)
SOURCES = ("lease", "agent", "arp")


def inventory(hypervisors, sources=SOURCES, timeout=20, **options):
    answers = query_all(hypervisor_entries(hypervisors), list(sources), timeout)
    return answers, build(answers, dict(OPTIONS, **options))


@pytest.fixture
def fleet(tmp_path):
    """Two hypervisors whose NAT networks have the same subnet: web-1 on hv1 and web-2 on hv2
    get the same address; db-1 has no interface; train-1 has a GPU and tags."""
    hv1 = hypervisor_file(
        tmp_path,
        "hv1",
        vm_xml("web-1", mac="52:54:00:00:01:01", tags={"role": "web"}),
        vm_xml("db-1", vcpus=4, memory_mib=2048),
    )
    hv2 = hypervisor_file(
        tmp_path,
        "hv2",
        vm_xml("web-2", mac="52:54:00:00:02:01", tags={"role": "web"}),
        vm_xml("train-1", mac="52:54:00:00:02:02", bridge="br0", gpu=True, tags={"team": "ml"}),
    )
    return [
        dict(uri=hv1, name="hv1", jump_host="root@192.168.149.11"),
        dict(uri=hv2, name="hv2", jump_host="root@192.168.149.12"),
    ]


def test_hosts_and_their_variables(fleet):
    answers, (hosts, _groups) = inventory(fleet)
    assert [a["error"] for a in answers] == [None, None]
    assert sorted(hosts) == ["db-1", "train-1", "web-1", "web-2"]
    web = hosts["web-1"]
    assert (
        web["kvm_name"] == "web-1" and web["kvm_hypervisor"] == "hv1" and web["kvm_hypervisor_uri"] == fleet[0]["uri"]
    )
    assert web["kvm_state"] == "running" and web["kvm_vcpus"] == 2 and web["kvm_memory"] == 512
    assert web["kvm_uuid"]
    assert web["kvm_tags"] == {"role": "web"}
    (iface,) = web["kvm_interfaces"]
    assert (iface["mac"], iface["type"], iface["network"], iface["bridge"]) == (
        "52:54:00:00:01:01",
        "network",
        "default",
        None,
    )
    # libvirt's test driver hands out addresses from the network's DHCP range.
    assert [a["address"] for a in iface["addresses"]] == [web["ansible_host"]]
    assert web["ansible_host"].startswith("192.168.150.") and web["kvm_address_source"] == "lease"
    train = hosts["train-1"]
    assert train["kvm_gpus"] == [dict(address="0000:41:00.0", model="10de:2330")]
    assert train["kvm_interfaces"][0]["bridge"] == "br0"
    assert hosts["db-1"]["kvm_interfaces"] == [] and "ansible_host" not in hosts["db-1"]
    assert hosts["db-1"]["kvm_address"] is None


def test_groups_by_hypervisor_state_network_gpu_and_address(fleet):
    _answers, (_hosts, groups) = inventory(fleet)
    assert groups == {
        "kvm_bridge_br0": ["train-1"],
        "kvm_gpu_10de_2330": ["train-1"],
        "kvm_hypervisor_hv1": ["db-1", "web-1"],
        "kvm_hypervisor_hv2": ["train-1", "web-2"],
        "kvm_network_default": ["web-1", "web-2"],
        "kvm_no_address": ["db-1"],
        "kvm_state_running": ["db-1", "train-1", "web-1", "web-2"],
    }


def test_the_same_address_on_two_hypervisors_is_reached_through_each_hypervisor(fleet):
    _answers, (hosts, _groups) = inventory(fleet, proxy_jump=True, ssh_args="-o StrictHostKeyChecking=no")
    assert hosts["web-1"]["ansible_host"] == hosts["web-2"]["ansible_host"]
    assert hosts["web-1"]["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=no -o ProxyJump=root@192.168.149.11"
    assert hosts["web-2"]["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=no -o ProxyJump=root@192.168.149.12"
    assert "ansible_ssh_common_args" not in hosts["db-1"]  # no address, nothing to jump to
    _answers, (plain, _groups) = inventory(fleet)
    assert "ansible_ssh_common_args" not in plain["web-1"]


def test_address_sources_in_their_order(fleet):
    # The test driver answers every source; its guest agent channel is not connected, so
    # the agent is not asked at all.
    for sources, expected in ((["arp", "lease"], "arp"), (["agent", "lease"], "lease"), (["agent"], None)):
        _answers, (hosts, groups) = inventory(fleet, sources=sources)
        assert hosts["web-1"]["kvm_address_source"] == expected, sources
        assert ("web-1" in groups["kvm_no_address"]) == (expected is None)
    with pytest.raises(InventoryError) as caught:
        inventory(fleet, sources=["dhcp"])
    assert str(caught.value) == "address_sources takes lease, agent, arp, not 'dhcp'."


def test_a_name_on_two_hypervisors_is_an_error_naming_both_unless_a_rule_renames(tmp_path):
    one = hypervisor_file(tmp_path, "one", vm_xml("app", mac="52:54:00:00:01:01"), vm_xml("solo"))
    two = hypervisor_file(tmp_path, "two", vm_xml("app", mac="52:54:00:00:02:01"))
    hypervisors = [dict(uri=one, name="hv1"), dict(uri=two, name="hv2")]
    with pytest.raises(InventoryError) as caught:
        inventory(hypervisors)
    assert str(caught.value) == (
        "The VM name app is used on the hypervisors hv1 and hv2; give the VMs different names, or set name_clash "
        "to prefix or suffix to name them after their hypervisor."
    )
    _answers, (hosts, groups) = inventory(hypervisors, name_clash="prefix")
    assert sorted(hosts) == ["hv1-app", "hv2-app", "solo"]
    assert hosts["hv2-app"]["kvm_name"] == "app" and hosts["hv2-app"]["kvm_hypervisor"] == "hv2"
    assert groups["kvm_hypervisor_hv2"] == ["hv2-app"]
    _answers, (hosts, _groups) = inventory(hypervisors, name_clash="suffix", name_separator=".")
    assert sorted(hosts) == ["app.hv1", "app.hv2", "solo"]


def test_a_renamed_host_that_meets_another_name_is_an_error(tmp_path):
    one = hypervisor_file(tmp_path, "one", vm_xml("app"), vm_xml("hv2-app"))
    two = hypervisor_file(tmp_path, "two", vm_xml("app"))
    with pytest.raises(InventoryError) as caught:
        inventory([dict(uri=one, name="hv1"), dict(uri=two, name="hv2")], name_clash="prefix")
    assert "The inventory name hv2-app stands for VM hv2-app of hv1 and VM app of hv2" in str(caught.value)


def test_prefixes_and_states(fleet):
    _answers, (hosts, groups) = inventory(fleet, vars_prefix="vm_", group_prefix="libvirt_", states=["stopped"])
    assert hosts == {} and groups == {}
    _answers, (hosts, groups) = inventory(fleet, vars_prefix="vm_", group_prefix="libvirt_", states=["running"])
    assert hosts["web-1"]["vm_hypervisor"] == "hv1" and "kvm_hypervisor" not in hosts["web-1"]
    assert "libvirt_hypervisor_hv1" in groups and "kvm_hypervisor_hv1" not in groups


def test_an_unreachable_hypervisor_is_reported_and_the_others_listed(fleet):
    hypervisors = [*fleet, dict(uri="qemu+unix:///system?socket=/nonexistent/libvirt-sock", name="hv3")]
    answers, (hosts, _groups) = inventory(hypervisors)
    assert [a["name"] for a in answers] == ["hv1", "hv2", "hv3"]
    assert answers[2]["vms"] is None
    assert answers[2]["error"].startswith(
        "Cannot connect to the hypervisor at qemu+unix:///system?socket=/nonexistent/libvirt-sock:"
    )
    assert sorted(hosts) == ["db-1", "train-1", "web-1", "web-2"]


def test_a_hypervisor_that_never_answers_times_out_while_the_others_answer(fleet, tmp_path):
    path = tmp_path / "silent.sock"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(path))
    silent.listen(1)  # accepts the connection, never speaks libvirt's protocol
    try:
        started = time.monotonic()
        answers, (hosts, _groups) = inventory(
            [*fleet, dict(uri="qemu+unix:///system?socket=%s" % path, name="hv3")], timeout=2
        )
        assert time.monotonic() - started < 10
    finally:
        silent.close()
    assert answers[2]["error"] == "no answer within 2 s (timeout)."
    assert sorted(hosts) == ["db-1", "train-1", "web-1", "web-2"]


def test_hypervisor_entries():
    entries = hypervisor_entries(
        [
            "qemu:///system",
            "qemu+ssh://admin@hv1.example.net:2222/system?keyfile=/k",
            dict(uri="qemu+ssh://10.0.0.3/system", name="hv3"),
            dict(uri="qemu+tcp://hv4/system", jump_host="ops@bastion"),
        ]
    )
    assert entries == [
        dict(uri="qemu:///system", name="localhost", jump_host=None),
        dict(
            uri="qemu+ssh://admin@hv1.example.net:2222/system?keyfile=/k",
            name="hv1.example.net",
            jump_host="admin@hv1.example.net:2222",
        ),
        dict(uri="qemu+ssh://10.0.0.3/system", name="hv3", jump_host="10.0.0.3"),
        dict(uri="qemu+tcp://hv4/system", name="hv4", jump_host="ops@bastion"),
    ]


@pytest.mark.parametrize(
    "entries, message",
    [
        ([], "hypervisors lists no libvirt URI."),
        ([dict(name="x")], "hypervisors[0] must be a libvirt URI or a dict with uri, got {'name': 'x'}."),
        ([dict(uri="qemu:///system", host="x")], "hypervisors[0] takes uri, name and jump_host, not host."),
        (["qemu:///system", "qemu+unix:///system?socket=/x"], "Two hypervisors are called localhost;"),
    ],
)
def test_bad_hypervisor_entries(entries, message):
    with pytest.raises(InventoryError) as caught:
        hypervisor_entries(entries)
    assert message in str(caught.value)
