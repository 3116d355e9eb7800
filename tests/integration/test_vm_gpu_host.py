# -*- coding: utf-8 -*-
"""kvm_vm's eight-GPU, two-node VM defined by the lab's real libvirtd (defined only, never
started: its GPUs are those of a fake HGX host, tests/fakesys.py, whose sysfs kvm_vm reads
through its root option).

Real libvirt keeps what the test driver drops (the qemu: namespace that carries OVMF's 64-bit
window) and validates what the test driver does not (expander bus numbers, <maxphysaddr>
against the host CPU's address width), so the large-BAR definition round-trips here."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from tests.fakesys import HGX_CPUS, HGX_NODE0, HGX_NODE1, HGX_NVSWITCHES
from tests.integration.vmtools import Made, kvm_vm, lookup_domain

pytestmark = [pytest.mark.lab]

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE
BOARD = sorted(HGX_NODE0 + HGX_NODE1 + HGX_NVSWITCHES)
QEMU_ARG = "{http://libvirt.org/schemas/domain/qemu/1.0}arg"


@pytest.fixture
def made(lab_conn):
    with Made(lab_conn) as things:
        yield things


def converge(lab_conn, name, args):
    predicted = kvm_vm(args, check_mode=True)
    assert not predicted.failed, predicted.get("msg")
    assert predicted.changed and lookup_domain(lab_conn, name) is None, "check mode defined the VM"
    applied = kvm_vm(args)
    assert not applied.failed, applied.get("msg")
    assert applied.changed and applied["actions"][0] == "defined"
    for check_mode in (False, True):
        again = kvm_vm(args, check_mode=check_mode)
        assert not again.failed, again.get("msg")
        assert not again.changed and again["actions"] == [], again.get("diff")
    return predicted, applied, parse_xml(lab_conn.lookupByName(name).XMLDesc(INACTIVE))


def cell_of(tree, element):
    by_index = {int(c.get("index")): c for c in tree.findall("./devices/controller[@type='pci']")}
    port = by_index[int(element.find("./address").get("bus"), 16)]
    assert port.get("model") == "pcie-root-port"
    expander = by_index[int(port.find("./address").get("bus"), 16)]
    assert expander.get("model") == "pcie-expander-bus" and expander.find("./target").get("busNr")
    return int(expander.findtext("./target/node"))


def test_eight_gpus_on_two_nodes_with_their_nvswitches(lab_conn, fake_host, made):
    host = fake_host("hgx")
    name = made.domain("iaastest-train8-%s" % uuid.uuid4().hex[:6])
    args = dict(
        name=name,
        domain_type="qemu",
        root=str(host.root),
        cpu_mode="host-passthrough",
        vcpus=16,
        memory="512GiB",
        hugepages=True,
        gpus=BOARD,
    )
    predicted, applied, tree = converge(lab_conn, name, args)
    print(predicted["xml"])  # the definition check mode shows (pytest -s prints it)
    assert [(c.get("id"), c.get("cpus"), c.get("memory")) for c in tree.findall("./cpu/numa/cell")] == [
        ("0", "0-7", "268435456"),
        ("1", "8-15", "268435456"),
    ]
    pins = {int(p.get("vcpu")): p.get("cpuset") for p in tree.findall("./cputune/vcpupin")}
    assert pins == {v: HGX_CPUS[0 if v < 8 else 1] for v in range(16)}
    assert [(m.get("cellid"), m.get("nodeset")) for m in tree.findall("./numatune/memnode")] == [("0", "0"), ("1", "1")]
    hostdevs = {}
    for hostdev in tree.findall("./devices/hostdev[@type='pci']"):
        source = hostdev.find("./source/address")
        hostdevs["%04x:%02x:%02x.%x" % tuple(int(source.get(k), 16) for k in ("domain", "bus", "slot", "function"))] = (
            hostdev
        )
    assert sorted(hostdevs) == BOARD
    for address in BOARD:
        assert cell_of(tree, hostdevs[address]) == (1 if address in HGX_NODE1 else 0), address
    # The 2 TiB OVMF window and the host's address width, as libvirt stored them.
    assert "name=opt/ovmf/X-PciMmio64Mb,string=2097152" in [a.get("value") for a in tree.iter(QEMU_ARG)]
    assert tree.find("./cpu/maxphysaddr").get("mode") == "passthrough"
    assert applied["vm"]["mmio64_mb"] == 2 * 1024 * 1024 and applied["vm"]["maxphysaddr"] == "passthrough"


def test_explicit_window_and_width_win_when_they_are_enough(lab_conn, fake_host, made):
    host = fake_host("hgx")
    name = made.domain("iaastest-train4-%s" % uuid.uuid4().hex[:6])
    args = dict(
        name=name,
        domain_type="qemu",
        root=str(host.root),
        cpu_mode="maximum",
        vcpus=4,
        memory="64GiB",
        gpus=HGX_NODE0,
        mmio64_mb=2 * 1024 * 1024,
        maxphysaddr=44,
    )
    _predicted, applied, tree = converge(lab_conn, name, args)
    # Computed, four H100s would take 1 TiB and 41 bits; the task's 2 TiB and 44 bits are kept.
    assert "name=opt/ovmf/X-PciMmio64Mb,string=2097152" in [a.get("value") for a in tree.iter(QEMU_ARG)]
    assert tree.find("./cpu/maxphysaddr").attrib == {"mode": "emulate", "bits": "44"}
    assert [c["node"] for c in applied["vm"]["topology"]["cells"]] == [0]
    computed = kvm_vm(dict(args, mmio64_mb=None, maxphysaddr=None), check_mode=True)
    assert not computed.failed, computed.get("msg")
    assert not computed.changed  # left out, the stored values stay: they are enough
