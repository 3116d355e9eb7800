# -*- coding: utf-8 -*-
"""Domain XML: spec -> XML -> define in libvirt's test driver -> read back ->
parse -> compare, and the pieces of that loop."""

from __future__ import annotations

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._domain import (
    SEED_ALIAS,
    SPEC_FIELDS,
    compare,
    default_domain_type,
    domain_facts,
    machine_matches,
    normalise_spec,
    numa_node_cpus,
    restart_reasons,
    xml_kib,
)
from ansible_collections.iaas.kvm.plugins.module_utils._domain_xml import (
    build_domain,
    carry_over,
    creation_defaults,
    xml_matches,
)
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError, parse_xml, to_xml

TEST_URI = "test:///default"
POOL = "default-pool"
VOLUMES = ["disk-a.qcow2", "disk-b.qcow2", "data.raw", "seed.iso"]
VALIDATE = libvirt.VIR_DOMAIN_DEFINE_VALIDATE
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


@pytest.fixture(scope="module")
def conn():
    """One test driver for the module: the volumes below exist in its pool."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open(TEST_URI)
    pool = connection.storagePoolLookupByName(POOL)
    volumes = []
    for name in VOLUMES:
        fmt = "qcow2" if name.endswith("qcow2") else "raw"
        volumes.append(
            pool.createXML(
                "<volume><name>%s</name><capacity>1048576</capacity><target><format type='%s'/></target></volume>"
                % (name, fmt),
                0,
            )
        )
    yield connection
    for vol in volumes:
        vol.delete(0)
    connection.close()


def params(**kwargs):
    """Module parameters with every spec option unset, then ``kwargs``."""
    base = dict.fromkeys(SPEC_FIELDS)
    base.update(kwargs)
    return base


def resolved(spec):
    """What the module adds before building: formats of volumes, managed flags of GPUs."""
    spec = dict(spec)
    for disk in spec.get("disks", []):
        disk["volume_format"] = "qcow2" if (disk["volume"] or disk["path"] or "").endswith("qcow2") else "raw"
    if "gpus" in spec:
        spec["gpus"] = [dict(address=a, managed=True) for a in spec["gpus"]]
    return spec


def define(conn, tree):
    return conn.defineXMLFlags(to_xml(tree), VALIDATE)


def read_back(dom):
    return parse_xml(dom.XMLDesc(INACTIVE))


def differences(spec, tree):
    return compare(spec, domain_facts(tree), DifferenceTracker())


# --- strategies ------------------------------------------------------------------

sizes = st.integers(min_value=64, max_value=16384)
disk_entries = st.builds(
    lambda volume, device, bus, boot, fmt: dict(volume=volume, pool=POOL, device=device, bus=bus, format=fmt),
    st.sampled_from(VOLUMES[:3]),
    st.sampled_from(["disk", "cdrom"]),
    st.sampled_from([None, "virtio", "scsi", "sata", "usb"]),
    st.none(),
    st.sampled_from([None, "qcow2", "raw"]),
)
interface_entries = st.builds(
    lambda source, mac, model: dict(source, mac=mac, model=model),
    st.sampled_from([dict(network="default"), dict(bridge="br0"), dict(bridge="br1")]),
    st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=0xFFFFFF).map(
            lambda n: (
                "52:54:00:%02x:%02x:%02x"
                % (
                    n >> 16,
                    (n >> 8) & 0xFF,
                    n & 0xFF,
                )
            )
        ),
    ),
    st.sampled_from([None, "virtio", "e1000"]),
)


@st.composite
def specs(draw, machine=None):
    vcpus = draw(st.integers(min_value=1, max_value=8))
    memory = draw(sizes)
    kwargs = dict(
        vcpus=vcpus,
        memory=memory,
        domain_type=draw(st.sampled_from([None, "kvm", "qemu"])),
        cpu_mode=draw(st.sampled_from([None, "host-model", "host-passthrough", "maximum"])),
        firmware=draw(st.sampled_from([None, "bios", "uefi"])),
        guest_agent=draw(st.sampled_from([None, True, False])),
        graphics=draw(st.sampled_from([None, "none", "vnc", "spice"])),
        hugepages=draw(st.sampled_from([None, True, False])),
        numa_node=draw(st.sampled_from([None, 0, 1])),
        console_log=draw(st.sampled_from([None, "/var/log/libvirt/qemu/x-console.log", "/tmp/other.log"])),
    )
    if draw(st.booleans()):
        kwargs["vcpus_max"] = vcpus + draw(st.integers(min_value=0, max_value=8))
    if draw(st.booleans()):
        kwargs["memory_max"] = memory + draw(st.integers(min_value=0, max_value=4096))
    disks = draw(st.lists(disk_entries, max_size=3, unique_by=lambda d: d["volume"]))
    for order, disk in enumerate(disks):
        disk["boot_order"] = order + 1 if draw(st.booleans()) else None
    if draw(st.booleans()):
        kwargs["disks"] = disks
    if draw(st.booleans()):
        kwargs["cloudinit_seed"] = dict(volume="seed.iso", pool=POOL)
    ifaces = draw(st.lists(interface_entries, max_size=3, unique_by=lambda i: i["mac"] or object()))
    if draw(st.booleans()):
        kwargs["interfaces"] = ifaces
    kwargs["machine"] = machine if machine is not None else draw(st.sampled_from([None, "pc", "q35"]))
    if kwargs["machine"] in (None, "q35") and draw(st.booleans()):
        kwargs["gpus"] = draw(
            st.lists(st.sampled_from(["0000:41:00.0", "0000:41:00.1", "0000:42:00.0", "43:00.0"]), unique=True)
        )
    return normalise_spec(params(**kwargs))


def hints_for(conn, spec):
    hints = {}
    if "numa_node" in spec:
        hints["numa_cpus"] = numa_node_cpus(parse_xml(conn.getCapabilities()), spec["numa_node"])
    return hints


# --- the round trip ------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs())
def test_spec_to_xml_to_libvirt_and_back_compares_equal(conn, spec):
    """A definition libvirt normalised compares equal to the spec that made it."""
    spec = resolved(creation_defaults(spec, "qemu"))
    tree = build_domain("rt-new", spec, None, hints_for(conn, spec))
    dom = define(conn, tree)
    try:
        stored = read_back(dom)
        assert differences(spec, stored) == [], to_xml(stored)
        facts = domain_facts(stored)
        assert facts["memory"] == spec["memory"] and facts["vcpus"] == spec["vcpus"]
        if "gpus" in spec:
            assert [g["address"] for g in facts["gpus"]] == sorted(g["address"] for g in spec["gpus"])
        # Applying the same spec again to what libvirt stored changes nothing.
        again = build_domain("rt-new", spec, stored, hints_for(conn, spec))
        assert differences(spec, again) == []
    finally:
        dom.undefine()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_changing_a_defined_vm_keeps_uuid_macs_and_addresses(conn, data):
    """Spec A defined, spec B applied to what libvirt stored: B compares equal,
    the UUID stays, and every device kept from A keeps its MAC and address."""
    first = data.draw(specs(), label="first")
    first = resolved(creation_defaults(first, "qemu"))
    machine = first.get("machine")
    second = resolved(data.draw(specs(machine=machine or "pc"), label="second"))
    if machine is None:
        second.pop("machine", None)
    dom = define(conn, build_domain("rt-change", first, None, hints_for(conn, first)))
    try:
        before = read_back(dom)
        try:
            tree = build_domain("rt-change", second, before, hints_for(conn, second))
        except LibvirtModuleError as exc:
            # The one refusal: GPUs on a machine that has no PCIe root ports.
            assert "q35" in str(exc)
            return
        dom = define(conn, tree)
        after = read_back(dom)
        assert differences(second, after) == [], to_xml(after)
        assert after.findtext("uuid") == before.findtext("uuid")
        old = {i.find("mac").get("address"): i for i in before.findall("./devices/interface")}
        for iface in after.findall("./devices/interface"):
            mac = iface.find("mac").get("address")
            if mac in old and old[mac].find("address") is not None:
                assert to_xml(iface.find("address")) == to_xml(old[mac].find("address"))
        old_disks = {d.find("target").get("dev"): d for d in before.findall("./devices/disk")}
        for disk in after.findall("./devices/disk"):
            twin = old_disks.get(disk.find("target").get("dev"))
            if twin is not None and twin.find("address") is not None and disk.find("address") is not None:
                assert to_xml(disk.find("address")) == to_xml(twin.find("address"))
    finally:
        dom.undefine()


# --- facts and spec ------------------------------------------------------------------


def test_facts_of_a_foreign_definition():
    tree = parse_xml(
        """<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
          <name>x</name><memory unit='GiB'>4</memory><currentMemory unit='MiB'>2048</currentMemory>
          <vcpu current='2'>8</vcpu>
          <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
              <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os>
          <cpu mode='host-passthrough'/>
          <numatune><memory mode='strict' nodeset='1'/></numatune>
          <memoryBacking><hugepages/></memoryBacking>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
              <source file='/var/lib/libvirt/images/x.qcow2'/><target dev='vda' bus='virtio'/><boot order='1'/></disk>
            <disk type='volume' device='cdrom'><source pool='default' volume='x-seed.iso'/>
              <target dev='sda' bus='scsi'/><readonly/><alias name='ua-iaas-seed'/></disk>
            <interface type='bridge'><mac address='52:54:00:AA:BB:CC'/><source bridge='br0'/><model type='e1000'/></interface>
            <hostdev mode='subsystem' type='pci' managed='no'><source>
              <address domain='0x0000' bus='0x41' slot='0x00' function='0x1'/></source></hostdev>
            <serial type='pty'><log file='/var/log/x.log' append='on'/></serial>
            <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel>
            <graphics type='vnc' port='-1'/>
          </devices>
          <qemu:commandline><qemu:arg value='-fw_cfg'/><qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=65536'/>
          </qemu:commandline>
        </domain>"""
    )
    facts = domain_facts(tree)
    assert facts["memory"] == 2048 and facts["memory_max"] == 4096
    assert (facts["vcpus"], facts["vcpus_max"]) == (2, 8)
    assert facts["firmware"] == "uefi" and facts["machine"] == "pc-q35-7.2"
    assert facts["cpu_mode"] == "host-passthrough"
    assert facts["numa_node"] == 1 and facts["hugepages"] is True and facts["mmio64_mb"] == 65536
    assert facts["disks"] == [
        dict(
            device="disk",
            bus="virtio",
            target="vda",
            format="qcow2",
            boot_order=1,
            readonly=False,
            path="/var/lib/libvirt/images/x.qcow2",
            pool=None,
            volume=None,
        )
    ]
    assert facts["cloudinit_seed"]["volume"] == "x-seed.iso" and facts["cloudinit_seed"]["readonly"]
    assert facts["interfaces"] == [
        dict(type="bridge", network=None, bridge="br0", mac="52:54:00:aa:bb:cc", model="e1000")
    ]
    assert facts["gpus"] == [dict(address="0000:41:00.1", managed=False)]
    assert facts["console_log"] == "/var/log/x.log"
    assert facts["guest_agent"] is True and facts["graphics"] == "vnc"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(memory=0), "memory must be at least 1 MiB"),
        (dict(memory=-1), "must not be negative"),
        (dict(memory="1Q"), "unknown unit"),
        (dict(memory="1.5K"), "whole number of MiB"),
        (dict(vcpus=0), "vcpus must be at least 1"),
        (dict(vcpus=4, vcpus_max=2), r"vcpus \(4\) must not exceed vcpus_max \(2\)"),
        (dict(memory="2G", memory_max="1G"), r"memory \(2048 MiB\) must not exceed memory_max \(1024 MiB\)"),
        (dict(gpus=["01:00"]), "gpus: '01:00' is not a PCI address"),
        (dict(gpus=["0000:01:20.0"]), "is not a PCI address"),
        (dict(console_log="x.log"), "console_log must be an absolute path"),
        (dict(disks=[dict(path="disk.qcow2")]), "must be absolute"),
        (dict(disks=[dict(volume="a", path="/b")]), "exactly one of volume"),
        (dict(disks=[dict(volume="a", pool="p"), dict(volume="a", pool="p")]), "same volume or path twice"),
        (dict(interfaces=[dict(network="default", mac="01:00:5e:00:00:01")]), "not a unicast MAC"),
        (
            dict(interfaces=[dict(network="a", mac="52:54:00:00:00:01"), dict(network="b", mac="52:54:00:00:00:01")]),
            "same MAC address twice",
        ),
        (dict(cloudinit_seed=["x"]), "cloudinit_seed must be a path"),
        (dict(cloudinit_seed=dict(volume="x", size=1)), "not size"),
        (dict(mmio64_mb=0), "mmio64_mb must be a positive number"),
    ],
)
def test_normalise_spec_refuses_bad_values(kwargs, message):
    with pytest.raises(LibvirtModuleError, match=message):
        normalise_spec(params(**kwargs))


def test_normalise_spec_units_and_defaults():
    spec = normalise_spec(
        params(
            memory="2GiB",
            memory_max=4096,
            gpus=["41:00.0", "0000:41:00.0"],
            disks=[dict(volume="a.qcow2", pool=None, device=None)],
            cloudinit_seed="/var/lib/libvirt/images/../images/seed.iso",
            interfaces=[dict(network="default", mac="52:54:00:AA:BB:CC")],
        )
    )
    assert spec["memory"] == 2048 and spec["memory_max"] == 4096
    assert spec["gpus"] == ["0000:41:00.0"]
    assert spec["disks"][0]["pool"] == "default" and spec["disks"][0]["device"] == "disk"
    assert spec["cloudinit_seed"]["path"] == "/var/lib/libvirt/images/seed.iso"
    assert spec["interfaces"][0]["mac"] == "52:54:00:aa:bb:cc"
    assert "vcpus" not in spec and "domain_type" not in spec


@pytest.mark.parametrize(
    "wanted, current, expected",
    [
        ("q35", "pc-q35-7.2", True),
        ("pc", "pc-i440fx-7.2", True),
        ("pc", "pc-q35-7.2", False),
        ("q35", "pc-i440fx-7.2", False),
        ("pc-q35-7.2", "pc-q35-7.2", True),
        ("pc-q35-8.0", "pc-q35-7.2", False),
        ("q35", None, False),
    ],
)
def test_machine_aliases(wanted, current, expected):
    assert machine_matches(wanted, current) is expected


def test_xml_kib_units():
    assert xml_kib(parse_xml("<memory unit='GiB'>2</memory>")) == 2 * 1024 * 1024
    assert xml_kib(parse_xml("<memory>1024</memory>")) == 1024
    assert xml_kib(parse_xml("<memory unit='bytes'>1048576</memory>")) == 1024
    with pytest.raises(LibvirtModuleError, match="Unknown memory unit"):
        xml_kib(parse_xml("<memory unit='parsecs'>1</memory>"))


def test_capabilities_helpers(conn):
    caps = parse_xml(conn.getCapabilities())
    assert numa_node_cpus(caps, 1) == "8,9,10,11,12,13,14,15"
    with pytest.raises(LibvirtModuleError, match=r"no NUMA node 7 \(it has 0, 1\)"):
        numa_node_cpus(caps, 7)
    assert default_domain_type(caps) == "qemu"  # the test driver offers no kvm
    kvm_caps = parse_xml(
        "<capabilities><host><cpu><arch>x86_64</arch></cpu></host><guest><os_type>hvm</os_type>"
        "<arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest></capabilities>"
    )
    assert default_domain_type(kvm_caps) == "kvm"


# --- building ---------------------------------------------------------------------------


def test_new_domain_has_acpi_serial_console_and_virtio_scsi_for_the_seed(conn):
    spec = resolved(
        creation_defaults(
            normalise_spec(
                params(
                    memory=512,
                    disks=[dict(volume="disk-a.qcow2", pool=POOL, device="disk")],
                    cloudinit_seed=dict(volume="seed.iso", pool=POOL),
                )
            ),
            "qemu",
        )
    )
    tree = build_domain("n1", spec)
    assert tree.find("./features/acpi") is not None and tree.find("./features/apic") is not None
    assert tree.find("./devices/serial[@type='pty']") is not None
    assert tree.find("./devices/console[@type='pty']") is not None
    assert tree.find("./devices/controller[@type='scsi']").get("model") == "virtio-scsi"
    seed = next(d for d in tree.findall("./devices/disk") if d.find("alias") is not None)
    assert seed.get("device") == "cdrom" and seed.find("target").get("bus") == "scsi"
    assert seed.find("alias").get("name") == SEED_ALIAS and seed.find("readonly") is not None
    disk = tree.find("./devices/disk[@device='disk']")
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert disk.find("driver").get("type") == "qcow2"
    dom = define(conn, tree)
    dom.undefine()


def test_targets_are_kept_and_new_disks_take_free_names(conn):
    first = resolved(
        creation_defaults(
            normalise_spec(params(memory=256, disks=[dict(volume=v, pool=POOL) for v in VOLUMES[:2]])), "qemu"
        )
    )
    dom = define(conn, build_domain("t1", first))
    try:
        stored = read_back(dom)
        # Drop the first disk, add another: the kept disk stays vdb, the new one takes vda.
        second = resolved(
            normalise_spec(params(disks=[dict(volume=VOLUMES[1], pool=POOL), dict(volume=VOLUMES[2], pool=POOL)]))
        )
        tree = build_domain("t1", second, stored)
        targets = {d.find("source").get("volume"): d.find("target").get("dev") for d in tree.findall("./devices/disk")}
        assert targets == {VOLUMES[1]: "vdb", VOLUMES[2]: "vda"}
    finally:
        dom.undefine()


def test_boot_order_replaces_os_boot():
    spec = resolved(
        creation_defaults(
            normalise_spec(params(memory=64, disks=[dict(volume="a.qcow2", pool=POOL, boot_order=1)])), "qemu"
        )
    )
    current = parse_xml(
        "<domain type='qemu'><name>b</name><os><type>hvm</type><boot dev='network'/></os><devices/></domain>"
    )
    tree = build_domain("b", spec, current)
    assert tree.find("./os/boot") is None
    assert tree.find("./devices/disk/boot").get("order") == "1"


def test_gpus_one_hostdev_per_function_behind_one_root_port():
    spec = creation_defaults(
        normalise_spec(params(memory=1024, gpus=["0000:41:00.0", "0000:41:00.1", "0000:42:00.0"])), "kvm"
    )
    spec["gpus"] = [
        dict(address="0000:41:00.0", managed=False),
        dict(address="0000:41:00.1", managed=False),
        dict(address="0000:42:00.0", managed=True),
    ]
    tree = build_domain("g", spec)
    assert tree.find("./os/type").get("machine") == "q35" and tree.find("./os").get("firmware") == "efi"
    ports = tree.findall("./devices/controller[@model='pcie-root-port']")
    assert len(ports) == 2
    hostdevs = tree.findall("./devices/hostdev")
    guest = [
        (h.find("address").get("bus"), h.find("address").get("function"), h.find("address").get("multifunction"))
        for h in hostdevs
    ]
    first_port, second_port = ("0x%02x" % int(p.get("index")) for p in ports)
    assert guest == [(first_port, "0x0", "on"), (first_port, "0x1", None), (second_port, "0x0", None)]
    assert [h.get("managed") for h in hostdevs] == ["no", "no", "yes"]


def test_gpus_refused_on_an_i440fx_vm():
    spec = normalise_spec(params(gpus=["0000:41:00.0"]))
    spec["gpus"] = [dict(address="0000:41:00.0", managed=True)]
    current = parse_xml(
        "<domain type='qemu'><name>p</name><os><type machine='pc-i440fx-7.2'>hvm</type></os><devices/></domain>"
    )
    with pytest.raises(LibvirtModuleError, match="gpus need a q35 machine"):
        build_domain("p", spec, current)


def test_machine_family_is_not_changed_on_an_existing_vm():
    current = parse_xml(
        "<domain type='qemu'><name>m</name><os><type machine='pc-i440fx-7.2'>hvm</type></os><devices/></domain>"
    )
    with pytest.raises(LibvirtModuleError, match="Cannot change the machine type"):
        build_domain("m", normalise_spec(params(machine="q35")), current)
    # A newer version of the same family is a plain change.
    tree = build_domain("m", normalise_spec(params(machine="pc-i440fx-8.0")), current)
    assert tree.find("./os/type").get("machine") == "pc-i440fx-8.0"


def test_mmio64_window_goes_to_the_qemu_command_line():
    current = parse_xml("<domain type='kvm'><name>w</name><os><type>hvm</type></os><devices/></domain>")
    tree = build_domain("w", normalise_spec(params(mmio64_mb=65536)), current)
    assert domain_facts(tree)["mmio64_mb"] == 65536
    tree = build_domain("w", normalise_spec(params(mmio64_mb=131072)), tree)
    args = [a.get("value") for a in tree.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert args == ["-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=131072"]


def test_memory_ceiling_is_kept_when_only_memory_changes():
    current = parse_xml(
        "<domain type='kvm'><name>c</name><memory unit='KiB'>8388608</memory>"
        "<currentMemory unit='KiB'>2097152</currentMemory><vcpu current='2'>8</vcpu>"
        "<os><type>hvm</type></os><devices/></domain>"
    )
    facts = domain_facts(build_domain("c", normalise_spec(params(memory=4096, vcpus=4)), current))
    assert (facts["memory"], facts["memory_max"], facts["vcpus"], facts["vcpus_max"]) == (4096, 8192, 4, 8)
    facts = domain_facts(build_domain("c", normalise_spec(params(memory=16384, vcpus=16)), current))
    assert (facts["memory"], facts["memory_max"], facts["vcpus"], facts["vcpus_max"]) == (16384, 16384, 16, 16)
    with pytest.raises(LibvirtModuleError, match="must not exceed memory_max"):
        build_domain("c", normalise_spec(params(memory_max=1024)), current)


def test_restart_reasons():
    inactive = domain_facts(
        parse_xml(
            "<domain type='kvm'><name>r</name><memory unit='KiB'>2097152</memory><vcpu>2</vcpu>"
            "<os><type machine='pc-q35-7.2'>hvm</type></os><cpu mode='host-model'/><devices/></domain>"
        )
    )
    live = dict(inactive, cpu_mode="custom", memory=1024)
    assert restart_reasons(live, inactive) == []  # expanded host model, balloon below the ceiling
    assert restart_reasons(dict(live, memory_max=1024), inactive) == ["memory_max", "memory"]
    assert restart_reasons(dict(live, vcpus=1), inactive) == ["vcpus"]


# --- raw XML ------------------------------------------------------------------------------


def test_xml_matches_what_libvirt_normalised(conn):
    wanted = parse_xml(
        """<domain type='qemu'><name>xm</name><memory unit='GiB'>1</memory><vcpu>1</vcpu>
        <os><type arch='i686' machine='pc'>hvm</type><boot dev='hd'/></os>
        <devices><interface type='network'><mac address='52:54:00:AB:CD:EF'/><source network='default'/></interface>
        <console type='pty'/></devices></domain>"""
    )
    dom = define(conn, wanted)
    try:
        stored = read_back(dom)
        stored.find("./os/type").set("machine", "pc-i440fx-7.2")  # what the QEMU driver stores
        assert xml_matches(wanted, stored)
        changed = parse_xml(to_xml(wanted).replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>"))
        assert not xml_matches(changed, stored)
    finally:
        dom.undefine()


def test_carry_over_keeps_uuid_macs_and_addresses(conn):
    first = parse_xml(
        """<domain type='qemu'><name>co</name><memory>65536</memory><os><type>hvm</type></os>
        <devices><disk type='file' device='disk'><source file='/x.qcow2'/><target dev='vda' bus='virtio'/></disk>
        <interface type='network'><source network='default'/></interface></devices></domain>"""
    )
    dom = define(conn, first)
    try:
        stored = read_back(dom)
        stored_disk = stored.find("./devices/disk")
        stored_disk.append(parse_xml("<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"))
        second = parse_xml(to_xml(first).replace("65536", "131072"))
        merged = carry_over(second, stored)
        assert merged.findtext("uuid") == stored.findtext("uuid")
        assert merged.find("./devices/interface/mac").get("address") == stored.find("./devices/interface/mac").get(
            "address"
        )
        assert merged.find("./devices/disk/address").get("slot") == "0x07"
        dom = define(conn, merged)
        assert read_back(dom).findtext("uuid") == stored.findtext("uuid")
    finally:
        dom.undefine()
