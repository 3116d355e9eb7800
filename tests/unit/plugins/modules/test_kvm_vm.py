# -*- coding: utf-8 -*-
"""kvm_vm through its main() against libvirt's test driver: state transitions,
check mode, idempotence, bad inputs, GPUs, raw XML and volume removal."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from ansible_collections.iaas.kvm.plugins.module_utils._pci import node_device_driver
from tests.state import libvirt_state
from tests.unit.plugins.modules.testdriver import POOL, TEST_URI, emptied_test_driver

REPO = Path(__file__).resolve().parents[4]
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


def make_volume(conn, name, fmt="qcow2"):
    pool = conn.storagePoolLookupByName(POOL)
    return pool.createXML(
        "<volume><name>%s</name><capacity>1048576</capacity><target><format type='%s'/></target></volume>"
        % (name, fmt),
        0,
    )


@pytest.fixture
def vm(run_module, conn):
    """``vm(args, check_mode=False, diff=False)`` runs kvm_vm on the test driver."""

    def run(args, check_mode=False, diff=False, fails=False):
        args = dict(args, uri=args.get("uri", TEST_URI))
        return run_module("kvm_vm", args, check_mode=check_mode, diff=diff, fails=fails)

    return run


def domain_names(conn):
    return sorted(d.name() for d in conn.listAllDomains(0))


BASE = dict(name="t1", memory=128, vcpus=1, domain_type="qemu", shutdown_timeout=5)


# --- state transitions ------------------------------------------------------------------

START = {
    "absent": lambda vm: None,
    "stopped": lambda vm: vm(dict(BASE, state="stopped")),
    "running": lambda vm: vm(dict(BASE, state="running")),
    "paused": lambda vm: vm(dict(BASE, state="paused")),
}
TRANSITIONS = [
    ("absent", "present", ["defined"], "stopped"),
    ("absent", "running", ["defined", "started"], "running"),
    ("absent", "stopped", ["defined"], "stopped"),
    ("absent", "paused", ["defined", "started paused"], "paused"),
    ("absent", "absent", [], None),
    ("stopped", "present", [], "stopped"),
    ("stopped", "running", ["started"], "running"),
    ("stopped", "stopped", [], "stopped"),
    ("stopped", "paused", ["started paused"], "paused"),
    ("stopped", "absent", ["undefined"], None),
    ("running", "present", [], "running"),
    ("running", "running", [], "running"),
    ("running", "stopped", ["shut down"], "stopped"),
    ("running", "paused", ["paused"], "paused"),
    ("running", "absent", ["shut down", "undefined"], None),
    ("paused", "present", [], "paused"),
    ("paused", "running", ["resumed"], "running"),
    ("paused", "paused", [], "paused"),
]


def current_state(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    return {1: "running", 3: "paused", 5: "stopped"}[dom.state()[0]]


@pytest.mark.parametrize("start, target, actions, final", TRANSITIONS)
def test_state_transitions(vm, conn, start, target, actions, final):
    START[start](vm)
    assert current_state(conn, "t1") == (None if start == "absent" else start)
    args = dict(BASE, state=target)
    predicted = vm(args, check_mode=True)
    assert not predicted.failed, predicted.get("msg")
    assert predicted["actions"] == actions and predicted.changed == bool(actions)
    assert current_state(conn, "t1") == (None if start == "absent" else start), "check mode changed something"
    result = vm(args)
    assert not result.failed, result.get("msg")
    assert result["actions"] == actions and result.changed == bool(actions)
    assert current_state(conn, "t1") == final
    if final:
        assert result["vm"]["state"] == final
    else:
        assert result["vm"] == {}
    again = vm(args)
    assert not again.changed and again["actions"] == []
    assert not vm(args, check_mode=True).changed


@pytest.mark.parametrize("target, actions", [("stopped", ["powered off"]), ("absent", ["powered off", "undefined"])])
def test_a_paused_vm_is_stopped_only_by_force(vm, conn, target, actions):
    vm(dict(BASE, state="paused"))
    refused = vm(dict(BASE, state=target), fails=True)
    assert refused.failed
    assert (
        refused["msg"] == "The VM t1 is paused and cannot shut down gracefully; set force_stop: true to power it off."
    )
    assert current_state(conn, "t1") == "paused"
    forced = vm(dict(BASE, state=target, force_stop=True))
    assert forced.changed and forced["actions"] == actions


VM_REFUSALS = [
    pytest.param(
        "paused",
        dict(state="stopped", memory=256),
        "The VM t1 is paused and cannot shut down gracefully; set force_stop: true to power it off.",
        ["redefined", "powered off"],
        id="stop-a-paused-vm-with-a-change",
    ),
    pytest.param(
        "paused",
        dict(state="absent"),
        "The VM t1 is paused and cannot shut down gracefully; set force_stop: true to power it off.",
        ["powered off", "undefined"],
        id="remove-a-paused-vm",
    ),
    pytest.param(
        "paused",
        dict(state="paused", memory=256, restart=True),
        "The VM t1 is paused and cannot shut down gracefully; set force_stop: true to power it off.",
        ["redefined", "powered off", "started"],
        id="restart-a-paused-vm",
    ),
    pytest.param(
        "running",
        dict(state="stopped", vcpus=2, shutdown_timeout=0),
        "The VM t1 would have to stop, and shutdown_timeout 0 leaves it no time to shut down gracefully; "
        "set force_stop: true to power it off.",
        ["redefined", "powered off"],
        id="stop-without-time-to-shut-down",
    ),
    pytest.param(
        "running",
        dict(state="running", memory=256, wait_for_ip=True),
        "wait_for_ip needs a network interface, and the VM t1 has none.",
        [],
        id="wait-for-ip-without-interface",
    ),
    pytest.param(
        None,
        dict(state="running", wait_for_ip=True),
        "wait_for_ip needs a network interface, and the VM t1 has none.",
        [],
        id="new-vm-wait-for-ip-without-interface",
    ),
]


@pytest.mark.parametrize("check_mode", [False, True], ids=["apply", "check"])
@pytest.mark.parametrize(("start", "task", "message", "actions"), VM_REFUSALS)
def test_refusals_change_nothing(vm, conn, start, task, message, actions, check_mode):
    """A refused task fails with changed false and the actions it would do, and leaves
    both definitions, the power state and everything else as they were."""
    if start is not None:
        vm(dict(BASE, state=start))
    before = libvirt_state(conn)
    refused = vm(dict(BASE, **task), check_mode=check_mode, fails=True)
    assert refused["msg"] == message
    assert refused["changed"] is False and refused["actions"] == actions, refused
    assert libvirt_state(conn) == before


def test_check_mode_of_a_new_vm_returns_what_it_would_define(vm, conn):
    result = vm(dict(BASE, state="running", vcpus=2, memory="1GiB"), check_mode=True, diff=True)
    assert result.changed and domain_names(conn) == ["test"]
    assert result["vm"]["memory"] == 1024 and result["vm"]["vcpus"] == 2 and result["vm"]["state"] == "running"
    assert result["diff"]["before"]["memory"] is None and result["diff"]["after"]["memory"] == 1024


# --- updates --------------------------------------------------------------------------------


def test_memory_change_of_a_running_vm_needs_a_restart_until_restarted(vm, conn):
    vm(dict(BASE, state="running"))
    uuid = conn.lookupByName("t1").UUIDString()
    bigger = dict(BASE, state="running", memory=256)
    predicted = vm(bigger, check_mode=True)
    assert predicted.changed and predicted["restart_required"] and predicted["actions"] == ["redefined"]
    changed = vm(bigger, diff=True)
    assert changed.changed and changed["restart_required"] and "memory_max" in changed["restart_reasons"]
    assert changed["diff"]["before"] == {"domain_type": "qemu", "vcpus": 1, "memory": 128}
    assert changed["diff"]["after"] == {"domain_type": "qemu", "vcpus": 1, "memory": 256}
    again = vm(bigger)
    assert not again.changed and again["restart_required"]
    restarted = vm(dict(bigger, restart=True))
    assert restarted.changed and restarted["actions"] == ["restarted"] and not restarted["restart_required"]
    assert conn.lookupByName("t1").UUIDString() == uuid
    assert not vm(dict(bigger, restart=True)).changed


def test_vcpus_inside_the_ceiling_change_live(vm, conn):
    vm(dict(BASE, state="running", vcpus=1, vcpus_max=4))
    result = vm(dict(BASE, state="running", vcpus=3, vcpus_max=4))
    assert result.changed and result["actions"] == ["redefined", "vcpus set live"]
    assert not result["restart_required"]
    assert conn.lookupByName("t1").vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 3


def test_unspecified_fields_and_macs_survive_a_redefine(vm, conn):
    make_volume(conn, "a.qcow2")
    args = dict(BASE, disks=[dict(volume="a.qcow2", pool=POOL)], interfaces=[dict(network="default")], graphics="vnc")
    first = vm(args)
    mac = first["vm"]["interfaces"][0]["mac"]
    # Only memory named: disks, interfaces and graphics stay as they were.
    result = vm(dict(name="t1", memory=256))
    assert result.changed and result["vm"]["interfaces"][0]["mac"] == mac
    assert result["vm"]["disks"][0]["volume"] == "a.qcow2" and result["vm"]["graphics"] == "vnc"
    # An interface added after the first one: the first keeps its MAC.
    result = vm(dict(args, interfaces=[dict(network="default"), dict(bridge="br0", model="e1000")]))
    assert result["vm"]["interfaces"][0]["mac"] == mac
    assert result["vm"]["interfaces"][1]["model"] == "e1000"
    assert not vm(dict(args, interfaces=[dict(network="default"), dict(bridge="br0", model="e1000")])).changed


def test_autostart(vm, conn):
    assert vm(dict(BASE, autostart=True)).changed
    assert conn.lookupByName("t1").autostart() == 1
    assert not vm(dict(BASE, autostart=True)).changed
    predicted = vm(dict(BASE, autostart=False), check_mode=True)
    assert predicted.changed and conn.lookupByName("t1").autostart() == 1
    assert vm(dict(BASE, autostart=False))["actions"] == ["autostart off"]


def test_disk_paths_and_formats(vm, conn, tmp_path):
    image = tmp_path / "disk.qcow2"
    image.write_bytes(b"")
    iso = tmp_path / "seed.iso"
    iso.write_bytes(b"")
    result = vm(dict(BASE, disks=[dict(path=str(image)), dict(path=str(iso), device="cdrom")], cloudinit_seed=str(iso)))
    assert not result.failed, result.get("msg")
    disks = {d["path"]: d for d in result["vm"]["disks"]}
    assert disks[str(image)]["format"] == "qcow2" and disks[str(iso)]["format"] == "raw"
    assert disks[str(iso)]["bus"] == "scsi" and disks[str(iso)]["readonly"]
    assert result["vm"]["cloudinit_seed"]["path"] == str(iso)
    missing = vm(dict(BASE, disks=[dict(path=str(tmp_path / "nope.qcow2"))]), fails=True)
    assert missing.failed and missing["msg"] == "The file %s of disks[0] does not exist." % (tmp_path / "nope.qcow2")


# --- bad input ----------------------------------------------------------------------------------

BAD = [
    (dict(memory=0), "memory must be at least 1 MiB, got 0."),
    (dict(memory=-1), "memory must not be negative, got -1."),
    (dict(memory="1Q"), "memory '1Q' has an unknown unit 'Q'"),
    (dict(vcpus=0), "vcpus must be at least 1, got 0."),
    (
        dict(disks=[dict(volume="missing.qcow2", pool=POOL)]),
        "The volume 'missing.qcow2' of disks[0] does not exist in pool",
    ),
    (dict(disks=[dict(volume="a.qcow2", pool="nopool")]), "The storage pool 'nopool' of disks[0] does not exist."),
    (dict(interfaces=[dict(network="nonet")]), "The network 'nonet' of interfaces[0] does not exist."),
    (dict(gpus=["0000:01:00"]), "gpus: '0000:01:00' is not a PCI address such as 0000:01:00.0."),
    (dict(console_log="relative.log"), "console_log must be an absolute path"),
    (dict(memory=None), "memory is needed to create the VM t1."),
    (dict(state="present", wait_for_ip=True), "wait_for_ip needs state: running."),
    (dict(numa_node=5), "The host has no NUMA node 5"),
    (dict(cloudinit_seed=dict(volume="nothere.iso")), "The storage pool 'default' of cloudinit_seed does not exist."),
]


@pytest.mark.parametrize("override, message", BAD)
def test_bad_input_fails_with_one_sentence_and_defines_nothing(vm, conn, override, message):
    result = vm(dict(BASE, **override), fails=True)
    assert result.failed
    assert message in result["msg"]
    assert result["msg"].endswith(".") and "\n" not in result["msg"], result["msg"]
    assert domain_names(conn) == ["test"]


@pytest.mark.parametrize("override, message", BAD[:9])
def test_bad_input_leaves_an_existing_vm_unchanged(vm, conn, override, message):
    vm(dict(BASE, state="running"))
    before = conn.lookupByName("t1").XMLDesc(INACTIVE)
    result = vm(dict(BASE, state="running", **override), fails=True)
    assert result.failed and message in result["msg"]
    assert conn.lookupByName("t1").XMLDesc(INACTIVE) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(xml="<domain><name>t1</name"), "xml is not well-formed XML"),
        (dict(xml="<network><name>t1</name></network>"), "xml must be a libvirt <domain> definition, not <network>."),
        (
            dict(name="other", xml="<domain type='qemu'><name>t1</name></domain>"),
            "The name in xml (t1) differs from name (other).",
        ),
        (
            dict(xml="<domain type='qemu'><name>t1</name></domain>", memory=512),
            "parameters are mutually exclusive: xml|memory",
        ),
        (dict(), "one of the following is required: name, xml"),
        (
            dict(
                xml="<domain type='qemu'><name>t1</name><memory>65536</memory><os><type>hvm</type></os><bogus/></domain>"
            ),
            "libvirt refused the definition of VM t1",
        ),
    ],
)
def test_bad_xml_input(vm, conn, args, message):
    result = vm(args, fails=True)
    assert result.failed and message in result["msg"], result["msg"]
    assert domain_names(conn) == ["test"]


# --- GPUs -------------------------------------------------------------------------------------


def test_kvm_vm_with_gpus_in_test_default_one_hostdev_per_function_multifunction_on_function_0_q35(vm, conn):
    # The test driver has no PCI node devices: the given functions are used as they are.
    args = dict(BASE, memory=1024, gpus=["0000:41:00.0", "41:00.1"])
    result = vm(args)
    assert not result.failed, result.get("msg")
    assert result["vm"]["machine"] == "q35" and result["vm"]["firmware"] == "uefi"
    assert [g["address"] for g in result["vm"]["gpus"]] == ["0000:41:00.0", "0000:41:00.1"]
    root = parse_xml(conn.lookupByName("t1").XMLDesc(INACTIVE))
    hostdevs = root.findall("./devices/hostdev")
    assert len(hostdevs) == 2
    guest = [h.find("address") for h in hostdevs]
    assert guest[0].get("function") == "0x0" and guest[0].get("multifunction") == "on"
    assert guest[1].get("function") == "0x1" and guest[1].get("multifunction") is None
    assert guest[0].get("bus") == guest[1].get("bus") and guest[0].get("slot") == guest[1].get("slot")
    port = root.find("./devices/controller[@model='pcie-root-port'][@index='%d']" % int(guest[0].get("bus"), 16))
    assert port is not None
    assert [h.get("managed") for h in hostdevs] == ["yes", "yes"]  # no node device says vfio-pci
    assert not vm(args).changed
    # Detaching all GPUs.
    removed = vm(dict(args, gpus=[]))
    assert removed.changed and removed["vm"]["gpus"] == []


NODE_XML = """<node>
  <pool type='dir'><name>default-pool</name><target><path>/default-pool</path></target></pool>
  <network><name>default</name><bridge name='virbr0'/></network>
  <device><name>pci_0000_41_00_0</name><parent>computer</parent>
    <capability type='pci'><class>0x030000</class><domain>0</domain><bus>65</bus><slot>0</slot><function>0</function>
      <product id='0x2204'/><vendor id='0x10de'/></capability></device>
  <device><name>pci_0000_41_00_1</name><parent>computer</parent>
    <capability type='pci'><class>0x040300</class><domain>0</domain><bus>65</bus><slot>0</slot><function>1</function>
      <product id='0x1aef'/><vendor id='0x10de'/></capability></device>
  <device><name>pci_0000_42_00_0</name><parent>computer</parent>
    <capability type='pci'><class>0x030200</class><domain>0</domain><bus>66</bus><slot>0</slot><function>0</function>
      <product id='0x20b5'/><vendor id='0x10de'/></capability></device>
</node>
"""


def test_gpus_take_the_other_functions_of_their_slot_from_node_devices(vm, tmp_path):
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    uri = "test://%s" % node
    keep = libvirt.open(uri)  # a custom test driver lives while a connection is open
    try:
        # Each connection to a custom test driver file starts from the file: one run per check.
        args = dict(BASE, uri=uri, memory=1024, gpus=["41:00.0"])
        result = vm(args)
        assert not result.failed, result.get("msg")
        assert [g["address"] for g in result["vm"]["gpus"]] == ["0000:41:00.0", "0000:41:00.1"]
        single = vm(dict(args, gpus=["0000:42:00.0"]))
        assert [g["address"] for g in single["vm"]["gpus"]] == ["0000:42:00.0"]
        unknown = vm(dict(args, gpus=["0000:43:00.0"]), fails=True)
        assert unknown.failed and unknown["msg"] == "The host has no PCI device 0000:43:00.0 (gpus)."
    finally:
        keep.close()


class _NodeDevice:
    """A node device's XML as libvirt's udev backend reports it (the test driver drops <driver>)."""

    def __init__(self, driver):
        self.driver = driver

    def XMLDesc(self, _flags):
        driver = "<driver><name>%s</name></driver>" % self.driver if self.driver else ""
        return "<device><name>pci_0000_41_00_0</name>%s<capability type='pci'/></device>" % driver


@pytest.mark.parametrize("driver, expected", [("vfio-pci", "vfio-pci"), ("nvidia", "nvidia"), (None, None)])
def test_node_device_driver(driver, expected):
    assert node_device_driver(_NodeDevice(driver)) == expected


# --- raw XML ------------------------------------------------------------------------------------


def ubuntu_simple(name, disk):
    """configs/ubuntu-simple.xml rendered for the test driver, under a test name."""
    from jinja2 import Template

    text = Template((REPO / "configs" / "ubuntu-simple.xml").read_text()).render(
        ubuntu_simple_domain_type="qemu", ubuntu_simple_disk=disk, ubuntu_simple_name=name
    )
    text = text.replace("<name>ubuntu-simple</name>", "<name>%s</name>" % name)
    assert "<name>%s</name>" % name in text
    return text


def test_seed_xml_is_defined_converged_and_updated_keeping_uuid_and_mac(vm, conn, tmp_path):
    xml = ubuntu_simple("t1", str(tmp_path / "ubuntu-test.qcow2"))
    result = vm(dict(xml=xml, state="running"))
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["defined", "started"]
    uuid, mac = result["vm"]["uuid"], result["vm"]["interfaces"][0]["mac"]
    assert not vm(dict(xml=xml, state="running")).changed
    assert not vm(dict(xml=xml, state="running"), check_mode=True).changed
    bigger = xml.replace("<memory unit='KiB'>1048576</memory>", "<memory unit='GiB'>2</memory>").replace(
        "<currentMemory unit='KiB'>1048576</currentMemory>", "<currentMemory unit='MiB'>2048</currentMemory>"
    )
    changed = vm(dict(name="t1", xml=bigger, state="running"), diff=True)
    assert changed.changed and changed["restart_required"]
    assert changed["vm"]["uuid"] == uuid and changed["vm"]["interfaces"][0]["mac"] == mac
    assert "2097152" in changed["diff"][1]["after"] and "1048576" in changed["diff"][1]["before"]
    assert not vm(dict(xml=bigger, state="running")).changed


# --- removal ------------------------------------------------------------------------------------


def test_absent_removes_only_volumes_no_other_vm_uses(vm, conn):
    own, shared, seed = (
        make_volume(conn, "own.qcow2"),
        make_volume(conn, "shared.qcow2"),
        make_volume(conn, "s.iso", "raw"),
    )
    vm(
        dict(
            BASE,
            disks=[dict(volume="own.qcow2", pool=POOL), dict(volume="shared.qcow2", pool=POOL)],
            cloudinit_seed=dict(volume="s.iso", pool=POOL),
        )
    )
    vm(dict(BASE, name="t2", disks=[dict(volume="shared.qcow2", pool=POOL)]))
    paths = [own.path(), seed.path()]
    args = dict(name="t1", state="absent", remove_volumes=True)
    predicted = vm(args, check_mode=True)
    assert predicted["removed_volumes"] == paths
    assert sorted(conn.storagePoolLookupByName(POOL).listVolumes()) == ["own.qcow2", "s.iso", "shared.qcow2"]
    result = vm(args)
    assert not result.failed, result.get("msg")
    assert result.changed and result["removed_volumes"] == paths
    assert conn.storagePoolLookupByName(POOL).listVolumes() == ["shared.qcow2"]
    assert any("shared.qcow2" in str(w) for w in result.get("warnings", [])), result.get("warnings")
    assert not vm(args).changed
    assert shared.name() == "shared.qcow2"


def test_absent_keeps_volumes_by_default(vm, conn):
    make_volume(conn, "keep.qcow2")
    vm(dict(BASE, disks=[dict(volume="keep.qcow2", pool=POOL)]))
    result = vm(dict(name="t1", state="absent"))
    assert result.changed and result["removed_volumes"] == []
    assert conn.storagePoolLookupByName(POOL).listVolumes() == ["keep.qcow2"]
