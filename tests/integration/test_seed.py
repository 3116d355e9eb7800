# -*- coding: utf-8 -*-
"""cloudinit_seed against the lab: seed volumes written and read back through
libvirt's stream API, refusals that leave the pool as it was, and one guest
booted from a seed the module made (host name, users and keys, write_files,
runcmd, a password hash, a static address from network_config, cloud-init
done, the NoCloud datasource)."""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from types import SimpleNamespace

import libvirt
import pytest
import yaml
from lxml import etree
from passlib.hash import sha512_crypt as passlib_sha512

from ansible_collections.iaas.kvm.plugins.module_utils import _seed
from ansible_collections.iaas.kvm.plugins.module_utils._storage import download_bytes, volume_xml
from tests.conftest import run_module
from tests.integration.conftest import BOOT_TIMEOUT, LAB_URI, PREFIX, guest_ssh, wait_for_ssh
from tests.integration.guests import boot_guest
from tests.integration.nettools import remove_network

pytestmark = [pytest.mark.lab]

# The console password of the guest's default user (in the seed only as a SHA-512 hash).
CONSOLE_WORDS = "lab-console-horse-42"
# This test module's subnets (192.168.170.0/24 - 192.168.179.0/24 belong to the seed tests).
SUBNETS = ["192.168.%d.0/24" % third for third in range(170, 180)]


def seed(args, check_mode=False, diff=False, fails=False):
    return run_module("cloudinit_seed", dict(args, uri=LAB_URI), check_mode=check_mode, diff=diff, fails=fails)


def volume_names(pool):
    pool.refresh(0)
    return {vol.name() for vol in pool.listAllVolumes(0)}


@contextlib.contextmanager
def removed_afterwards(pool, name):
    """Delete volume ``name`` of ``pool`` when the block ends (also on failure)."""
    assert name.startswith(PREFIX)
    try:
        yield
    finally:
        pool.refresh(0)
        with contextlib.suppress(libvirt.libvirtError):
            pool.storageVolLookupByName(name).delete(0)


# --- seed volumes ------------------------------------------------------------------


def test_seed_volume_converges_through_the_stream_api(lab_conn, default_pool, unique_name):
    name = unique_name("seed") + ".iso"
    args = dict(
        pool=default_pool.name(),
        name=name,
        hostname="web1",
        ssh_authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILabKeyLabKeyLabKeyLabKeyLabKeyLabKeyLab0 lab"],
        network_config={"version": 2, "ethernets": {"eth0": {"dhcp4": True}}},
    )
    with removed_afterwards(default_pool, name):
        predicted = seed(args, check_mode=True, diff=True)
        assert predicted.changed and not predicted.failed, predicted
        assert name not in volume_names(default_pool)

        made = seed(args, diff=True)
        assert made.changed and made["actions"] == ["created"], made
        vol = default_pool.storageVolLookupByName(name)
        assert made["path"] == vol.path() and made["volume"] == dict(name=name, pool=default_pool.name())
        data = download_bytes(lab_conn, vol)
        assert _seed.sha256(data) == made["sha256"] == predicted["sha256"] and len(data) == made["size"]
        assert _seed.read_seed(data) == made["documents"]
        permissions = etree.fromstring(vol.XMLDesc(0).encode()).find("./target/permissions")
        assert permissions.findtext("mode") == "0644"

        again = seed(args, diff=True)
        assert not again.changed and again["sha256"] == made["sha256"]
        assert not seed(args, check_mode=True).changed

        moved = seed(dict(args, meta_data={"instance-id": "web1-2"}), diff=True)
        assert moved.changed and moved["actions"] == ["updated"]
        shown = {d["before_header"]: d for d in moved["diff"]}
        assert "instance-id: web1\n" in shown["meta-data"]["before"]
        assert "instance-id: web1-2\n" in shown["meta-data"]["after"]
        read_back = _seed.read_seed(download_bytes(lab_conn, default_pool.storageVolLookupByName(name)))
        assert yaml.safe_load(read_back["meta-data"])["instance-id"] == "web1-2"


def test_volume_that_is_not_a_seed_is_kept_unless_forced(lab_conn, default_pool, unique_name):
    name = unique_name("seed") + ".qcow2"
    with removed_afterwards(default_pool, name):
        default_pool.createXML(volume_xml(name, 1024**2, fmt="qcow2"), 0)
        refused = seed(dict(pool=default_pool.name(), name=name, hostname="x"), fails=True)
        assert refused.failed and "is not a NoCloud seed" in refused["msg"] and "force" in refused["msg"]
        head = download_bytes(lab_conn, default_pool.storageVolLookupByName(name))[:4]
        assert head == b"QFI\xfb"
        forced = seed(dict(pool=default_pool.name(), name=name, hostname="x", force=True))
        assert forced.changed and forced["actions"] == ["replaced"]
        data = download_bytes(lab_conn, default_pool.storageVolLookupByName(name))
        assert yaml.safe_load(_seed.read_seed(data)["meta-data"])["local-hostname"] == "x"


@pytest.mark.parametrize(
    "extra, message",
    [
        (dict(pool="iaastest-nopool"), "The storage pool 'iaastest-nopool' does not exist."),
        (dict(user_data="#cloud-config\nruncmd: [\n"), "user_data is not valid YAML"),
        (dict(user_data="#cloud-config\n- a list\n"), "must be a YAML mapping, not a list"),
        (dict(network_config={"ethernets": {}}), "network_config needs a version"),
        (dict(user_data={"hostname": "other"}), "hostname is given both as an option ('web1')"),
    ],
)
def test_bad_input_leaves_the_pools_as_they_were(lab_conn, default_pool, unique_name, extra, message):
    name = unique_name("seed") + ".iso"
    pools = sorted(p.name() for p in lab_conn.listAllStoragePools(0))
    before = volume_names(default_pool)
    with removed_afterwards(default_pool, name):
        result = seed(dict(dict(pool=default_pool.name(), name=name, hostname="web1"), **extra), fails=True)
        assert result.failed and not result.changed
        assert message in result["msg"], result["msg"]
        assert volume_names(default_pool) - before == set()
        assert sorted(p.name() for p in lab_conn.listAllStoragePools(0)) == pools


# --- a guest booted from the module's seed ---------------------------------------------


def _free_subnet(conn):
    used = set()
    for net in conn.listAllNetworks(0):
        for ip in etree.fromstring(net.XMLDesc(0).encode()).findall("./ip[@address]"):
            used.add(ipaddress.ip_interface("%s/%s" % (ip.get("address"), ip.get("prefix", "24"))).network)
    for subnet in SUBNETS:
        if ipaddress.ip_network(subnet) not in used:
            return ipaddress.ip_network(subnet)
    raise AssertionError("all of the seed tests' subnets are in use by other networks")


def _nat_network_xml(name, bridge, subnet):
    hosts = list(subnet.hosts())
    net = etree.Element("network")
    etree.SubElement(net, "name").text = name
    etree.SubElement(net, "forward", mode="nat")
    etree.SubElement(net, "bridge", name=bridge, stp="on", delay="0")
    ip = etree.SubElement(net, "ip", address=str(hosts[0]), prefix=str(subnet.prefixlen))
    dhcp = etree.SubElement(ip, "dhcp")
    etree.SubElement(dhcp, "range", start=str(hosts[99]), end=str(hosts[198]))
    return etree.tostring(net, encoding="unicode")


@pytest.fixture(scope="module")
def seed_network(lab_conn, lab_network):
    """An ``iaastest-`` NAT network in one of the seed tests' subnets (DHCP .100-.199)."""
    tag = uuid.uuid4().hex[:6]
    name, bridge = PREFIX + "seednet-" + tag, "iaast" + tag
    subnet = _free_subnet(lab_conn)
    try:
        net = lab_conn.networkDefineXML(_nat_network_xml(name, bridge, subnet))
        net.create()
        yield SimpleNamespace(name=name, subnet=subnet, gateway=str(subnet.network_address + 1))
    finally:
        remove_network(lab_conn, name)


@pytest.fixture(scope="module")
def seeded_guest(lab_conn, default_pool, base_volume, ssh_key, seed_network):
    """One guest booted from a seed volume that cloudinit_seed wrote: a static
    address outside the DHCP range, users, keys, a file, a command, a password."""
    tag = uuid.uuid4().hex[:6]
    name = PREFIX + "seed-" + tag
    mac = "52:54:00:17:%s:%s" % (tag[:2], tag[2:4])
    address = str(list(seed_network.subnet.hosts())[49])  # .50, outside the DHCP range
    args = dict(
        pool=default_pool.name(),
        name=name + "-seed.iso",
        hostname=name,
        ssh_authorized_keys=[ssh_key.public],
        users=[
            "default",
            {"name": "iaastest", "shell": "/bin/bash", "ssh_authorized_keys": [ssh_key.public]},
        ],
        password=CONSOLE_WORDS,
        runcmd=[["sh", "-c", "echo ran > /var/tmp/iaastest-runcmd"]],
        user_data=dict(
            chpasswd=dict(expire=False),
            write_files=[dict(path="/etc/iaastest-seed", content="written by cloudinit_seed\n", permissions="0640")],
        ),
        network_config={
            "version": 2,
            "ethernets": {
                "eth0": {
                    "match": {"macaddress": mac},
                    "set-name": "eth0",
                    "addresses": ["%s/%d" % (address, seed_network.subnet.prefixlen)],
                    # The image's cloud-init renders ifupdown's interfaces(5); there gateway4 becomes a
                    # "gateway" line, while a default route under "routes" left this guest without one.
                    "gateway4": seed_network.gateway,
                    "nameservers": {"addresses": [seed_network.gateway]},
                }
            },
        },
    )
    guest = None
    try:
        made = seed(args)
        assert made.changed and not made.failed, made
        volume = default_pool.storageVolLookupByName(args["name"])
        guest = boot_guest(lab_conn, name, ssh_key, base_volume, network=seed_network.name, mac=mac, seed_volume=volume)
        guest.ip = address
        wait_for_ssh(ssh_key, address, timeout=BOOT_TIMEOUT)
        yield SimpleNamespace(
            guest=guest, args=args, result=made, address=address, network=seed_network, volume=volume, mac=mac
        )
    finally:
        if guest is not None:
            guest.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            default_pool.storageVolLookupByName(args["name"]).delete(0)


@pytest.mark.guest
def test_cloud_init_finished_from_the_nocloud_seed(seeded_guest):
    guest = seeded_guest.guest
    status = guest.ssh("cloud-init status --wait", check=False, timeout=BOOT_TIMEOUT)
    assert "status: done" in status.stdout, status.stdout + status.stderr
    datasource = guest.ssh("cat /var/lib/cloud/instance/datasource").stdout
    assert datasource.startswith("DataSourceNoCloud"), datasource
    assert guest.ssh("cat /var/lib/cloud/data/instance-id").stdout.strip() == seeded_guest.result["instance_id"]


@pytest.mark.guest
def test_host_name_users_and_keys(seeded_guest, ssh_key):
    guest = seeded_guest.guest
    assert guest.ssh("hostname").stdout.strip() == seeded_guest.args["hostname"]
    # The default user (top-level ssh_authorized_keys) and the listed user (its own keys).
    assert guest.ssh("id -un").stdout.strip() == "debian"
    listed = guest_ssh(ssh_key, seeded_guest.address, "id -un && getent passwd iaastest", user="iaastest")
    assert listed.stdout.splitlines()[0] == "iaastest" and listed.stdout.strip().endswith(":/bin/bash")


@pytest.mark.guest
def test_write_files_and_runcmd(seeded_guest):
    guest = seeded_guest.guest
    assert guest.ssh("sudo cat /etc/iaastest-seed").stdout == "written by cloudinit_seed\n"
    assert guest.ssh("stat -c %a /etc/iaastest-seed").stdout.strip() == "640"
    assert guest.ssh("cat /var/tmp/iaastest-runcmd").stdout == "ran\n"


@pytest.mark.guest
def test_static_address_from_network_config(seeded_guest):
    guest = seeded_guest.guest
    link = guest.ssh("cat /sys/class/net/eth0/address").stdout.strip()
    assert link == seeded_guest.mac
    addresses = guest.ssh("ip -4 -o addr show dev eth0").stdout
    assert " %s/%d " % (seeded_guest.address, seeded_guest.network.subnet.prefixlen) in addresses, addresses
    assert "dynamic" not in addresses  # not a DHCP lease
    route = guest.ssh("ip -4 route show default").stdout
    rendered = guest.ssh("cat /etc/network/interfaces.d/50-cloud-init", check=False).stdout
    assert "via %s dev eth0" % seeded_guest.network.gateway in route, route + rendered


@pytest.mark.guest
def test_password_is_the_hash_from_the_seed(seeded_guest, lab_conn):
    shadow = seeded_guest.guest.ssh("sudo getent shadow debian").stdout.split(":")
    seeded = yaml.safe_load(_seed.read_seed(download_bytes(lab_conn, seeded_guest.volume))["user-data"])["password"]
    assert shadow[1] == seeded and seeded.startswith("$6$")
    assert passlib_sha512.verify(CONSOLE_WORDS, shadow[1])


@pytest.mark.guest
def test_seed_of_a_running_guest_is_unchanged_on_a_second_run(seeded_guest):
    again = seed(seeded_guest.args, diff=True)
    assert not again.changed and not again.failed, again
    assert again["sha256"] == seeded_guest.result["sha256"]
    assert CONSOLE_WORDS not in str(again)
