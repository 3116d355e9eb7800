# -*- coding: utf-8 -*-
"""kvm_gpu_passthrough through its real main() against fake hosts (tests/fakesys.py), whose
fake kernel enforces the kernel's binding rules. Every scenario of tests/fakesys.py runs the same life cycle:
check mode (writes nothing, predicts the writes), apply, apply again (no write), check mode
again (no change), then back to the host drivers.

Every refusal (non-viable group, boot VGA, IOMMU off, SR-IOV PF with VFs, ACS override,
vfio-pci not loadable, a running guest, libvirt unreachable) is checked the same way: the
whole fake host (sysfs and the modprobe.d file under /etc) is identical before and after, in
check mode and in a real run, with changed false and the actions it would have done."""

from __future__ import annotations

import re

import pytest

from tests.fakesys import GPU_3D, HGX_NODE0, HGX_NODE1, HGX_NVSWITCHES, NVIDIA, VGA, standard_drivers

MODULE = "kvm_gpu_passthrough"
URI = "test:///default"


def run(run_module, host, check_mode=False, diff=False, fails=False, **args):
    args.setdefault("uri", URI)
    args["root"] = str(host.root)
    return run_module(MODULE, args, check_mode=check_mode, diff=diff, fails=fails)


def assert_refused(result, host, before, pattern, actions):
    """A refusal: failed, changed false, the planned actions, nothing written, the host unchanged."""
    assert result.failed, "the request was expected to be refused"
    assert re.search(pattern, result["msg"]), result["msg"]
    assert result.changed is False
    assert result["actions"] == actions
    assert result["writes"] == []
    assert host.snapshot() == before, "a refused request changed the host"
    assert host.events == [] and host.violations == []


def binds(*addresses):
    return ["bind %s to vfio-pci" % a for a in addresses]


# scenario, arguments, the functions that end on vfio-pci, or a pattern of the refusal
CASES = [
    pytest.param(
        "gpu_audio",
        dict(devices=["0000:01:00.0"]),
        ["0000:01:00.0", "0000:01:00.1"],
        None,
        id="gpu-and-hdmi-audio-bind-together",
    ),
    pytest.param(
        "gpu_audio",
        dict(devices=["01:00.1"]),
        ["0000:01:00.0", "0000:01:00.1"],
        None,
        id="audio-function-brings-its-gpu",
    ),
    pytest.param(
        "shared_usb",
        dict(devices=["0000:0a:00.0"]),
        None,
        (
            r"^Refusing to bind 0000:0a:00\.0 to vfio-pci: IOMMU group 12 is not viable, it also holds 0000:0b:00\.0 "
            r"\(class 0x0c0330, on driver xhci_hcd\)",
            binds("0000:0a:00.0", "0000:0a:00.1"),
        ),
        id="group-shared-with-usb-controller-refused",
    ),
    pytest.param(
        "shared_usb",
        dict(devices=["0000:0a:00.0", "0000:0b:00.0"]),
        ["0000:0a:00.0", "0000:0a:00.1", "0000:0b:00.0"],
        None,
        id="group-shared-with-usb-controller-widened",
    ),
    pytest.param(
        "behind_bridge",
        dict(devices=["0000:01:00.0"]),
        ["0000:01:00.0", "0000:01:00.1"],
        None,
        id="gpu-behind-pcie-bridge-in-its-group",
    ),
    pytest.param(
        "boot_vga",
        dict(devices=["0000:01:00.0"]),
        None,
        (
            r"^Refusing to bind 0000:01:00\.0 to vfio-pci: it is the boot VGA device, the host's console",
            binds("0000:01:00.0", "0000:01:00.1"),
        ),
        id="boot-vga-refused",
    ),
    pytest.param(
        "boot_vga",
        dict(devices=["0000:01:00.0"], allow_boot_vga=True),
        ["0000:01:00.0", "0000:01:00.1"],
        None,
        id="boot-vga-allowed",
    ),
    pytest.param(
        "quadro",
        dict(devices=["0000:65:00.0"]),
        ["0000:65:00.0", "0000:65:00.1", "0000:65:00.2", "0000:65:00.3"],
        None,
        id="quadro-with-usb-and-ucsi-functions",
    ),
    pytest.param(
        "hgx",
        dict(selector=dict(vendor="nvidia", numa_node=1, count=4)),
        HGX_NODE1,
        None,
        id="hgx-8-gpus-selector-count-4-on-node-1",
    ),
    pytest.param(
        "hgx",
        dict(selector=dict(vendor="10de", device="2330")),
        HGX_NODE0 + HGX_NODE1,
        None,
        id="hgx-all-h100s",
    ),
    pytest.param(
        "sriov",
        dict(devices=["0000:41:00.0"]),
        None,
        (
            r"^Refusing to bind 0000:41:00\.0 to vfio-pci: it is an SR-IOV physical function with 16 virtual functions",
            binds("0000:41:00.0"),
        ),
        id="sriov-pf-with-vfs-refused",
    ),
    pytest.param(
        "sriov",
        dict(devices=["0000:41:00.4"]),
        ["0000:41:00.4"],
        None,
        id="sriov-vf-alone",
    ),
    pytest.param(
        "iommu_off",
        dict(devices=["0000:01:00.0"]),
        None,
        (
            r"^Refusing to bind 0000:01:00\.0, 0000:01:00\.1 to vfio-pci: the IOMMU is off \(no IOMMU groups under ",
            binds("0000:01:00.0", "0000:01:00.1"),
        ),
        id="iommu-off-refused",
    ),
]


@pytest.mark.parametrize("scenario, args, bound, refusal", CASES)
def test_scenario(run_module, fake_host, scenario, args, bound, refusal):
    host = fake_host(scenario)
    initial = host.bindings()
    before = host.snapshot()

    predicted = run(run_module, host, check_mode=True, fails=bool(refusal), **args)
    assert host.snapshot() == before, "check mode wrote to the host"
    assert host.events == []

    if refusal:
        pattern, actions = refusal
        assert_refused(predicted, host, before, pattern, actions)
        applied = run(run_module, host, fails=True, **args)
        assert_refused(applied, host, before, pattern, actions)
        assert applied["msg"] == predicted["msg"]
        return

    assert not predicted.failed, predicted.get("msg")
    assert predicted.changed
    assert sorted(d["address"] for d in predicted["devices"]) == bound
    assert predicted["actions"] == binds(*bound)

    applied = run(run_module, host, **args)
    assert not applied.failed, applied.get("msg")
    assert applied.changed and host.violations == []
    assert applied["writes"] == predicted["writes"], "check mode did not predict the writes"
    assert applied["actions"] == predicted["actions"]
    after = host.bindings()
    for address, driver in initial.items():
        assert after[address] == ("vfio-pci" if address in bound else driver), address
    assert all(host.override_of(a) == "vfio-pci" for a in bound)
    assert [d["driver"] for d in applied["devices"]] == ["vfio-pci"] * len(bound)

    events = len(host.events)
    again = run(run_module, host, **args)
    assert not again.failed, again.get("msg")
    assert not again.changed and again["writes"] == [] and again["actions"] == []
    assert len(host.events) == events
    checked = run(run_module, host, check_mode=True, **args)
    assert not checked.failed and not checked.changed

    released = run(run_module, host, state="host", devices=bound)
    assert not released.failed, released.get("msg")
    assert released.changed and host.violations == []
    assert released["actions"] == ["return %s to its host driver" % a for a in bound]
    assert host.bindings() == initial
    assert all(host.override_of(a) is None for a in bound)
    released_again = run(run_module, host, state="host", devices=bound)
    assert not released_again.failed and not released_again.changed


def test_writes_follow_the_kernel_rules(run_module, fake_host):
    host = fake_host("gpu_audio")
    sysfs = str(host.root / "sys")
    result = run(run_module, host, devices=["0000:01:00.0"])
    assert result["writes"] == [
        dict(path=sysfs + "/bus/pci/devices/0000:01:00.0/driver_override", value="vfio-pci"),
        dict(path=sysfs + "/bus/pci/drivers/nvidia/unbind", value="0000:01:00.0"),
        dict(path=sysfs + "/bus/pci/drivers_probe", value="0000:01:00.0"),
        dict(path=sysfs + "/bus/pci/devices/0000:01:00.1/driver_override", value="vfio-pci"),
        dict(path=sysfs + "/bus/pci/drivers/snd_hda_intel/unbind", value="0000:01:00.1"),
        dict(path=sysfs + "/bus/pci/drivers_probe", value="0000:01:00.1"),
    ]
    assert host.events == [
        ("unbind", "0000:01:00.0", "nvidia"),
        ("probe", "0000:01:00.0", "vfio-pci"),
        ("unbind", "0000:01:00.1", "snd_hda_intel"),
        ("probe", "0000:01:00.1", "vfio-pci"),
    ]
    released = run(run_module, host, state="host", devices=["0000:01:00.0"])
    assert released["writes"][:3] == [
        dict(path=sysfs + "/bus/pci/devices/0000:01:00.0/driver_override", value="\n"),
        dict(path=sysfs + "/bus/pci/drivers/vfio-pci/unbind", value="0000:01:00.0"),
        dict(path=sysfs + "/bus/pci/drivers_probe", value="0000:01:00.0"),
    ]
    assert host.violations == []


def test_diff_shows_drivers_before_and_after(run_module, fake_host):
    host = fake_host("gpu_audio")
    result = run(run_module, host, check_mode=True, diff=True, devices=["0000:01:00.0"])
    assert result["diff"] == dict(
        before={
            "0000:01:00.0": dict(driver="nvidia", driver_override=None),
            "0000:01:00.1": dict(driver="snd_hda_intel", driver_override=None),
        },
        after={
            "0000:01:00.0": dict(driver="vfio-pci", driver_override="vfio-pci"),
            "0000:01:00.1": dict(driver="vfio-pci", driver_override="vfio-pci"),
        },
    )
    run(run_module, host, devices=["0000:01:00.0"])
    back = run(run_module, host, diff=True, state="host", devices=["0000:01:00.0"])
    assert back["diff"]["after"]["0000:01:00.0"] == dict(driver="nvidia", driver_override=None)


def test_selector_count_keeps_the_gpus_already_bound(run_module, fake_host):
    host = fake_host("hgx")
    run(run_module, host, selector=dict(vendor="nvidia", numa_node=1, count=4))
    # The same four satisfy a selector without the node: nothing moves.
    result = run(run_module, host, selector=dict(vendor="nvidia", count=4))
    assert not result.changed
    assert sorted(d["address"] for d in result["devices"]) == HGX_NODE1
    assert all(host.driver_of(a) == "nvidia" for a in HGX_NODE0)


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(devices=["0000:0c:00.0"]), r"^There is no PCI device 0000:0c:00\.0 on this host"),
        (dict(devices=["01:00"]), r"is not a PCI address such as 0000:01:00\.0\.$"),
        (dict(devices=[]), r"^devices must list at least one PCI address\.$"),
        (dict(selector=dict(vendor="nvidia", count=9)), r"matches 8 GPU\(s\) .*, fewer than count 9\.$"),
        (dict(selector=dict(vendor="nvidia", numa_node=3)), r"matches no GPU on this host\.$"),
        (dict(selector=dict(vendor="geforce")), r"^selector\.vendor 'geforce' is not a PCI vendor ID"),
        (dict(selector=dict(count=0)), r"^selector\.count must be at least 1, not 0\.$"),
        (
            dict(selector={}),
            r"^one of the following is required: vendor, device, numa_node, count, board found in selector$",
        ),
        (dict(devices=["0000:9a:00.0"], selector=dict(count=1)), r"mutually exclusive: devices\|selector"),
        (dict(devices=["0000:99:00.0"]), r"^0000:99:00\.0 is a PCI bridge; bridges stay on their driver\.$"),
    ],
)
def test_bad_requests_fail_without_writing(run_module, fake_host, args, message):
    host = fake_host("hgx")
    before = host.snapshot()
    result = run(run_module, host, fails=True, **args)
    assert result.failed, "bad input was expected to fail"
    assert re.search(message, result["msg"]), result["msg"]
    assert not result.changed
    assert host.snapshot() == before and host.events == []


def test_acs_override_refused_unless_allowed(run_module, fake_host):
    host = fake_host("gpu_audio")
    host.set_cmdline("root=/dev/sda1 ro intel_iommu=on pcie_acs_override=downstream,multifunction")
    before = host.snapshot()
    for check_mode in (True, False):
        refused = run(run_module, host, check_mode=check_mode, fails=True, devices=["0000:01:00.0"], persistent=True)
        assert_refused(
            refused,
            host,
            before,
            r"^Refusing to bind 0000:01:00\.0, 0000:01:00\.1 to vfio-pci: the kernel runs with "
            r"pcie_acs_override=downstream,multifunction",
            [*binds("0000:01:00.0", "0000:01:00.1"), "write %s/etc/modprobe.d/iaas-kvm-vfio.conf" % host.root],
        )
    allowed = run(run_module, host, devices=["0000:01:00.0"], allow_acs_override=True)
    assert not allowed.failed, allowed.get("msg")
    assert allowed.changed and host.driver_of("0000:01:00.0") == "vfio-pci"


@pytest.fixture
def guest_uri(tmp_path):
    """A libvirt test driver whose running guest iaastest-gpuvm has 0000:01:00.0 as a hostdev."""
    path = tmp_path / "iaastest-node.xml"
    path.write_text(
        """<node>
  <domain type='test'>
    <name>iaastest-gpuvm</name>
    <memory>1048576</memory>
    <os><type arch='x86_64' machine='q35'>hvm</type></os>
    <devices>
      <hostdev mode='subsystem' type='pci' managed='no'>
        <source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source>
      </hostdev>
    </devices>
  </domain>
</node>
"""
    )
    return "test://" + str(path)


def test_device_of_a_running_guest_is_not_touched(run_module, fake_host, guest_uri):
    host = fake_host("gpu_audio")
    before = host.snapshot()
    refused = run(run_module, host, uri=guest_uri, devices=["0000:01:00.0"], persistent=True, fails=True)
    assert_refused(
        refused,
        host,
        before,
        r"^Refusing to change the driver of 0000:01:00\.0: the running guest\(s\) iaastest-gpuvm use it; stop "
        r"them first\.$",
        [*binds("0000:01:00.0", "0000:01:00.1"), "write %s/etc/modprobe.d/iaas-kvm-vfio.conf" % host.root],
    )

    # Bound while the guest was off: binding again writes nothing, so the running guest is no obstacle...
    run(run_module, host, devices=["0000:01:00.0"])
    same = run(run_module, host, uri=guest_uri, devices=["0000:01:00.0"])
    assert not same.failed and not same.changed
    # ...but returning it to the host would pull it from under the guest.
    bound = host.snapshot()
    events = list(host.events)
    back = run(run_module, host, uri=guest_uri, state="host", devices=["0000:01:00.0"], fails=True)
    assert back.failed and "iaastest-gpuvm" in back["msg"]
    assert back.changed is False and back["actions"] == [
        "return 0000:01:00.0 to its host driver",
        "return 0000:01:00.1 to its host driver",
    ]
    assert host.snapshot() == bound and host.events == events


def test_unreachable_libvirt_is_said_not_assumed(run_module, fake_host, tmp_path):
    host = fake_host("gpu_audio")
    before = host.snapshot()
    uri = "qemu+unix:///system?socket=%s" % (tmp_path / "iaastest-missing.sock")
    result = run(run_module, host, uri=uri, devices=["0000:01:00.0"], fails=True)
    assert_refused(
        result,
        host,
        before,
        r"^Cannot tell whether a running guest uses 0000:01:00\.0, 0000:01:00\.1, so nothing was changed: "
        r"Cannot connect to the hypervisor at qemu\+unix:///system",
        binds("0000:01:00.0", "0000:01:00.1"),
    )
    # Nothing to change needs no answer from libvirt.
    run(run_module, host, devices=["0000:01:00.0"])
    same = run(run_module, host, uri=uri, devices=["0000:01:00.0"])
    assert not same.failed and not same.changed


def test_vfio_pci_not_loaded_under_a_prefix(run_module, fake_host):
    def build(host):
        standard_drivers(host, vfio=False)
        host.iommu_on()
        host.add_device("0000:01:00.0", NVIDIA, "2204", VGA, driver="nvidia", group=1)

    host = fake_host(build=build)
    before = host.snapshot()
    result = run(run_module, host, devices=["0000:01:00.0"], fails=True)
    assert_refused(
        result,
        host,
        before,
        r"^The vfio-pci driver is not loaded \(no .*/sys/bus/pci/drivers/vfio-pci\)",
        [*binds("0000:01:00.0"), "load vfio-pci"],
    )
    assert result["commands"] == [dict(cmd=["modprobe", "vfio-pci"], ran=False)]


def test_unbound_device_and_no_host_driver(run_module, fake_host):
    # A GPU no loaded host driver matches: vfio-pci takes it through the override and a probe,
    # and back on the host it stays unbound, with a warning.
    def build(host):
        standard_drivers(host)
        host.iommu_on()
        host.add_device("0000:21:00.0", "1234", "1111", VGA, group=7)

    host = fake_host(build=build)
    bound = run(run_module, host, devices=["0000:21:00.0"])
    assert bound["writes"][1:] == [dict(path=str(host.root / "sys/bus/pci/drivers_probe"), value="0000:21:00.0")]
    assert host.driver_of("0000:21:00.0") == "vfio-pci"
    back = run(run_module, host, state="host", devices=["0000:21:00.0"])
    assert back.changed and host.driver_of("0000:21:00.0") is None
    assert any("No host driver claimed 0000:21:00.0" in str(w) for w in back["warnings"])
    assert not run(run_module, host, state="host", devices=["0000:21:00.0"]).changed
    assert host.violations == []


# -- persistent: true ----------------------------------------------------------------------


def test_persistent_configuration(run_module, fake_host):
    host = fake_host("quadro")
    (host.root / "usr/sbin").mkdir(parents=True)
    (host.root / "usr/sbin/update-initramfs").write_text("")
    conf = host.root / "etc/modprobe.d/iaas-kvm-vfio.conf"

    predicted = run(run_module, host, check_mode=True, diff=True, devices=["0000:65:00.0"], persistent=True)
    assert not conf.exists()
    assert predicted["reboot_required"] is True
    assert predicted["commands"] == [dict(cmd=["update-initramfs", "-u", "-k", "all"], ran=False)]
    assert predicted["diff"]["before"][str(conf)] is None

    applied = run(run_module, host, devices=["0000:65:00.0"], persistent=True)
    assert applied["writes"] == predicted["writes"]
    assert applied["writes"][-1] == dict(path=str(conf), value=conf.read_text())
    assert applied["commands"] == [dict(cmd=["update-initramfs", "-u", "-k", "all"], ran=False)]
    text = conf.read_text()
    lines = text.splitlines()
    assert "# device 0000:65:00.0 nvidia" in lines
    assert "# device 0000:65:00.2 xhci_pci" in lines
    assert [line for line in lines if line.startswith("softdep")] == [
        "softdep i2c_nvidia_gpu pre: vfio-pci",
        "softdep nvidia pre: vfio-pci",
        "softdep snd_hda_intel pre: vfio-pci",
        "softdep xhci_pci pre: vfio-pci",
    ]
    install = [line for line in lines if line.startswith("install vfio-pci ")]
    assert install == [
        "install vfio-pci for dev in 0000:65:00.0 0000:65:00.1 0000:65:00.2 0000:65:00.3; do "
        "if [ -e /sys/bus/pci/devices/$dev/driver_override ]; then echo vfio-pci > "
        "/sys/bus/pci/devices/$dev/driver_override; fi; done; /sbin/modprobe --ignore-install vfio-pci $CMDLINE_OPTS"
    ]

    again = run(run_module, host, devices=["0000:65:00.0"], persistent=True)
    assert not again.changed and again["reboot_required"] is False and again["commands"] == []
    assert conf.read_text() == text

    released = run(run_module, host, state="host", devices=["0000:65:00.0"], persistent=True)
    assert released.changed and released["reboot_required"] is True
    assert not conf.exists()
    assert released["writes"][-1] == dict(path=str(conf), value=None)
    assert host.violations == []


def test_persistent_keeps_the_other_devices(run_module, fake_host):
    host = fake_host("hgx")
    conf = host.root / "etc/modprobe.d/iaas-kvm-vfio.conf"
    run(run_module, host, devices=[HGX_NODE1[0]], persistent=True)
    run(run_module, host, devices=[HGX_NODE1[1]], persistent=True)
    assert "for dev in %s %s;" % (HGX_NODE1[0], HGX_NODE1[1]) in conf.read_text()
    # Bound before the file knew it: the host module recorded earlier stays.
    run(run_module, host, state="host", devices=[HGX_NODE1[0]], persistent=True)
    text = conf.read_text()
    assert "for dev in %s;" % HGX_NODE1[1] in text
    assert "# device %s nvidia" % HGX_NODE1[1] in text
    assert HGX_NODE1[0] not in text


def test_persistent_after_a_live_binding_finds_the_host_modules_by_alias(run_module, fake_host):
    # Bound live first: the device sits on vfio-pci, so its host modules come from modules.alias.
    host = fake_host("gpu_audio")
    host.add_module_aliases(
        "alias pci:v000010DEd*sv*sd*bc03sc00i00* nouveau\n"
        "alias pci:v000010DEd*sv*sd*bc03sc00i00* nvidia\n"
        "alias pci:v*d*sv*sd*bc04sc03i00* snd_hda_intel\n"
        "alias pci:v*d*sv*sd*bc*sc*i* vfio_pci\n"
    )
    run(run_module, host, devices=["0000:01:00.0"])
    result = run(run_module, host, devices=["0000:01:00.0"], persistent=True)
    assert result.changed and [w["path"] for w in result["writes"]] == [result["persistent_file"]]
    lines = (host.root / "etc/modprobe.d/iaas-kvm-vfio.conf").read_text().splitlines()
    assert "# device 0000:01:00.0 nouveau,nvidia" in lines
    assert [line for line in lines if line.startswith("softdep")] == [
        "softdep nouveau pre: vfio-pci",
        "softdep nvidia pre: vfio-pci",
        "softdep snd_hda_intel pre: vfio-pci",
    ]
    assert not run(run_module, host, devices=["0000:01:00.0"], persistent=True).changed


def test_persistent_warns_about_a_built_in_host_driver(run_module, fake_host):
    def build(host):
        host.add_driver("nvidia", ids=[(NVIDIA, None, 0x0302)], module=None)
        host.add_driver("vfio-pci")
        host.iommu_on()
        host.add_device("0000:9a:00.0", NVIDIA, "2330", GPU_3D, driver="nvidia", group=1)

    host = fake_host(build=build)
    result = run(run_module, host, devices=["0000:9a:00.0"], persistent=True)
    assert result.changed
    assert any("nvidia of 0000:9a:00.0 is built into the kernel" in str(w) for w in result["warnings"])
    lines = (host.root / "etc/modprobe.d/iaas-kvm-vfio.conf").read_text().splitlines()
    assert "# device 0000:9a:00.0 -" in lines
    assert not [line for line in lines if line.startswith("softdep ")]


# -- a failure after a change says what changed ---------------------------------------------


def test_a_failure_halfway_returns_changed_and_the_actions_done(run_module, fake_host):
    host = fake_host("gpu_audio")
    host.break_attribute("0000:01:00.1", "driver_override")
    result = run(run_module, host, devices=["0000:01:00.0"], fails=True)
    assert result.failed, "the broken attribute was expected to fail the run"
    assert re.match(r"^The kernel refused 'vfio-pci' written to .*0000:01:00\.1/driver_override: ", result["msg"])
    assert result.changed is True
    assert result["actions"] == binds("0000:01:00.0")
    assert [w["value"] for w in result["writes"]] == ["vfio-pci", "0000:01:00.0", "0000:01:00.0"]
    assert host.driver_of("0000:01:00.0") == "vfio-pci" and host.driver_of("0000:01:00.1") == "snd_hda_intel"


def test_a_failed_file_write_after_the_binds_returns_changed(run_module, fake_host):
    host = fake_host("gpu_audio")
    (host.root / "etc/modprobe.d").rmdir()
    (host.root / "etc/modprobe.d").write_text("not a directory\n")
    result = run(run_module, host, devices=["0000:01:00.0"], persistent=True, fails=True)
    assert result.failed, "the file write was expected to fail"
    assert result["msg"].startswith("Writing %s/etc/modprobe.d" % host.root), result["msg"]
    assert result.changed is True
    assert result["actions"] == binds("0000:01:00.0", "0000:01:00.1")
    assert host.driver_of("0000:01:00.0") == "vfio-pci"


# -- NVSwitch boards ---------------------------------------------------------------------------


def test_a_whole_board_with_its_nvswitches_is_one_selector(run_module, fake_host):
    host = fake_host("hgx")
    board = sorted(HGX_NODE0 + HGX_NODE1 + HGX_NVSWITCHES)
    predicted = run(run_module, host, check_mode=True, selector=dict(board=0))
    assert not predicted.failed, predicted.get("msg")
    assert [d["address"] for d in predicted["devices"]] == board
    # (Warnings of earlier runs in this process stay in the list: look for one about these devices.)
    assert not [w for w in predicted.get("warnings", []) if "0000:05:00.0" in str(w)]
    applied = run(run_module, host, selector=dict(board=0))
    assert not applied.failed, applied.get("msg")
    assert applied.changed and all(host.driver_of(a) == "vfio-pci" for a in board)
    again = run(run_module, host, selector=dict(board=0))
    assert not again.failed and not again.changed
    back = run(run_module, host, state="host", selector=dict(board=0))
    assert not back.failed and back.changed
    assert all(host.driver_of(a) == "nvidia" for a in board) and host.violations == []


def test_a_part_of_a_board_warns_about_nvlink(run_module, fake_host):
    host = fake_host("hgx")
    result = run(run_module, host, check_mode=True, selector=dict(vendor="nvidia", numa_node=1, count=4))
    assert not result.failed, result.get("msg")
    warnings = [str(w) for w in result["warnings"]]
    assert any(
        "belong to NVSwitch board 0 but its other GPUs and NVSwitches are not passed along: NVLink is not available "
        "in the guest unless the host runs NVIDIA's shared NVSwitch mode" in w
        for w in warnings
    ), warnings


@pytest.mark.parametrize(
    "selector, message",
    [
        (dict(board=0, count=2), r"^parameters are mutually exclusive: board\|count found in selector$"),
        (dict(board=3), r"^There is no NVSwitch board 3 on this host \(boards: 0\)\.$"),
    ],
)
def test_bad_board_selectors(run_module, fake_host, selector, message):
    host = fake_host("hgx")
    before = host.snapshot()
    result = run(run_module, host, selector=selector, fails=True)
    assert result.failed, "the selector was expected to fail"
    assert re.search(message, result["msg"]), result["msg"]
    assert host.snapshot() == before
