# -*- coding: utf-8 -*-
"""kvm_vm's tags and the GPU models it records, in the domain's <metadata>, against
libvirt's test driver: check mode, idempotence, live changes without a restart,
bad input, and the read-back by kvm_vm_info."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.iaas.kvm.plugins.module_utils import _libvirt
from ansible_collections.iaas.kvm.plugins.module_utils._domain_meta import METADATA_NS
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import parse_xml
from tests.unit.plugins.modules.test_kvm_vm import NODE_XML
from tests.unit.plugins.modules.testdriver import TEST_URI, emptied_test_driver

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE
BASE = dict(name="t1", memory=128, vcpus=1, domain_type="qemu", shutdown_timeout=5)


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


def kvm_vm(run_module, args, check_mode=False, diff=False, fails=False):
    return run_module(
        "kvm_vm", dict(args, uri=args.get("uri", TEST_URI)), check_mode=check_mode, diff=diff, fails=fails
    )


def stored_tags(dom, flags):
    """The tags as libvirt's metadata API returns them (live or persistent definition)."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, flags)
    except libvirt.libvirtError:
        return None
    return {t.get("name"): t.text or "" for t in parse_xml(text).findall("./tags/tag")}


def test_tags_on_a_new_vm_check_mode_apply_and_idempotence(run_module, conn):
    args = dict(BASE, state="running", tags={"role": "web", "owner": "team-a"})
    predicted = kvm_vm(run_module, args, check_mode=True, diff=True)
    assert not predicted.failed, predicted.get("msg")
    assert predicted["actions"] == ["defined", "tags set", "started"]
    assert predicted["vm"]["tags"] == {"role": "web", "owner": "team-a"}
    assert predicted["diff"]["after"]["tags"] == {"role": "web", "owner": "team-a"}
    assert [d.name() for d in conn.listAllDomains(0)] == ["test"], "check mode defined the VM"
    result = kvm_vm(run_module, args)
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["defined", "tags set", "started"]
    assert result["vm"]["tags"] == {"role": "web", "owner": "team-a"}
    dom = conn.lookupByName("t1")
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_CONFIG) == {"role": "web", "owner": "team-a"}
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_LIVE) == {"role": "web", "owner": "team-a"}
    root = parse_xml(dom.XMLDesc(INACTIVE)).find("./metadata/{%s}vm" % METADATA_NS)
    assert root is not None, "the tags are not in the collection's namespace"
    again = kvm_vm(run_module, args)
    assert not again.failed, again.get("msg")
    assert not again.changed and again["actions"] == []
    assert not kvm_vm(run_module, args, check_mode=True).changed


def test_a_tag_change_on_a_running_vm_is_live_and_needs_no_restart(run_module, conn):
    kvm_vm(run_module, dict(BASE, state="running", tags={"role": "web"}))
    dom = conn.lookupByName("t1")
    changed_args = dict(BASE, state="running", tags={"role": "db", "tier": "1"})
    predicted = kvm_vm(run_module, changed_args, check_mode=True)
    assert not predicted.failed, predicted.get("msg")
    assert predicted.changed and predicted["actions"] == ["tags set"]
    assert predicted["vm"]["tags"] == {"role": "db", "tier": "1"}
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_LIVE) == {"role": "web"}, "check mode changed the tags"
    result = kvm_vm(run_module, changed_args, diff=True)
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["tags set"]
    assert result["restart_required"] is False and result["restart_reasons"] == []
    assert result["diff"]["before"]["tags"] == {"role": "web"}
    assert result["diff"]["after"]["tags"] == {"role": "db", "tier": "1"}
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_LIVE) == {"role": "db", "tier": "1"}
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_CONFIG) == {"role": "db", "tier": "1"}
    assert dom.isActive(), "the tag change stopped the VM"
    again = kvm_vm(run_module, changed_args)
    assert not again.failed, again.get("msg")
    assert not again.changed and again["restart_required"] is False


def test_live_tags_that_differ_from_the_persistent_ones_are_set_again(run_module, conn):
    args = dict(BASE, state="running", tags={"role": "web"})
    kvm_vm(run_module, args)
    dom = conn.lookupByName("t1")
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        "<vm><tags><tag name='role'>stale</tag></tags></vm>",
        "iaas",
        METADATA_NS,
        libvirt.VIR_DOMAIN_AFFECT_LIVE,
    )
    result = kvm_vm(run_module, args)
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["tags set"]
    assert stored_tags(dom, libvirt.VIR_DOMAIN_AFFECT_LIVE) == {"role": "web"}


def test_tags_left_out_stay_and_an_empty_dict_removes_them(run_module, conn):
    kvm_vm(run_module, dict(BASE, tags={"role": "web"}))
    kept = kvm_vm(run_module, dict(BASE, memory=256))
    assert not kept.failed, kept.get("msg")
    assert kept["actions"] == ["redefined"] and kept["vm"]["tags"] == {"role": "web"}
    removed = kvm_vm(run_module, dict(BASE, memory=256, tags={}))
    assert not removed.failed, removed.get("msg")
    assert removed["actions"] == ["tags set"] and removed["vm"]["tags"] == {}
    dom = conn.lookupByName("t1")
    assert parse_xml(dom.XMLDesc(INACTIVE)).find("./metadata/{%s}vm" % METADATA_NS) is None
    assert not kvm_vm(run_module, dict(BASE, memory=256, tags={})).changed


@pytest.mark.parametrize(
    "tags, message",
    [
        ({"version": 1}, "tags.version must be a string, got int 1; quote it in YAML."),
        ({"on": True}, "tags.on must be a string, got bool True; quote it in YAML."),
        ({" ": "x"}, "Every tag needs a non-empty name, got ' '."),
    ],
)
def test_bad_tags_are_one_sentence_and_change_nothing(run_module, conn, tags, message):
    result = kvm_vm(run_module, dict(BASE, state="running", tags=tags), fails=True)
    assert result.failed and result["msg"] == message
    assert not result.changed
    assert [d.name() for d in conn.listAllDomains(0)] == ["test"]


def test_raw_xml_redefine_keeps_the_tags(run_module, conn):
    xml = "<domain type='test'><name>t1</name><memory unit='MiB'>128</memory><os><type>hvm</type></os></domain>"
    kvm_vm(run_module, dict(xml=xml, tags={"role": "web"}))
    bigger = kvm_vm(run_module, dict(xml=xml.replace(">128<", ">256<")))
    assert not bigger.failed, bigger.get("msg")
    assert bigger["actions"] == ["redefined"]
    assert bigger["vm"]["tags"] == {"role": "web"}


def test_kvm_vm_info_returns_the_tags(run_module, conn):
    kvm_vm(run_module, dict(BASE, tags={"role": "web"}))
    kvm_vm(run_module, dict(BASE, name="t2"))
    result = run_module("kvm_vm_info", dict(uri=TEST_URI, name=["t1", "t2"]))
    assert not result.failed, result.get("msg")
    assert [(vm["name"], vm["tags"]) for vm in result["vms"]] == [("t1", {"role": "web"}), ("t2", {})]


def test_gpus_without_node_devices_are_recorded_without_a_model(run_module, conn):
    result = kvm_vm(run_module, dict(BASE, memory=1024, gpus=["0000:41:00.0"]))
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["defined", "gpu models recorded"]
    assert result["vm"]["gpus"] == [dict(address="0000:41:00.0", managed=True, model=None)]
    assert not kvm_vm(run_module, dict(BASE, memory=1024, gpus=["0000:41:00.0"])).changed


class _KeptOpen:
    """A connection the module may close without ending the custom test driver: a
    driver read from a file lives only as long as its connection, so the module's
    successive runs must share one to see each other's domains."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def close(self):
        return 0


@pytest.fixture
def node_device_host(tmp_path, monkeypatch):
    """A custom test driver with PCI node devices (a GPU with its audio function, a
    second GPU), shared by every module run of the test."""
    path = tmp_path / "node.xml"
    path.write_text(NODE_XML)
    uri = "test://%s" % path
    real = libvirt.open(uri)
    monkeypatch.setattr(_libvirt, "connect", lambda _uri=None: _KeptOpen(real))
    yield uri, real
    real.close()


def test_gpu_models_come_from_the_node_devices(run_module, node_device_host):
    uri, conn = node_device_host
    args = dict(BASE, uri=uri, memory=1024, gpus=["41:00.0"], tags={"role": "train"})
    result = kvm_vm(run_module, args)
    assert not result.failed, result.get("msg")
    assert result["actions"] == ["defined", "tags set", "gpu models recorded"]
    assert result["vm"]["gpus"] == [
        dict(address="0000:41:00.0", managed=True, model="10de:2204"),
        dict(address="0000:41:00.1", managed=True, model=None),
    ]
    gpu = parse_xml(conn.lookupByName("t1").XMLDesc(INACTIVE)).find(
        "./metadata/{%s}vm/{%s}gpus/{%s}gpu" % (METADATA_NS, METADATA_NS, METADATA_NS)
    )
    assert (gpu.get("address"), gpu.get("model")) == ("0000:41:00.0", "10de:2204")
    again = kvm_vm(run_module, args)
    assert not again.failed, again.get("msg")
    assert not again.changed and again["actions"] == []
    moved = kvm_vm(run_module, dict(args, gpus=["0000:42:00.0"]))
    assert not moved.failed, moved.get("msg")
    assert moved["actions"] == ["redefined", "gpu models recorded"]
    assert moved["vm"]["gpus"] == [dict(address="0000:42:00.0", managed=True, model="10de:20b5")]
    assert moved["vm"]["tags"] == {"role": "train"}
