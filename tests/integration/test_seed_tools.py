# -*- coding: utf-8 -*-
"""cloudinit_seed against the reference tool: cloud-localds (cloud-image-utils,
with genisoimage) makes a seed from the same documents; isoinfo and blkid read
both the same way, and the module takes cloud-localds's seed for its own (same
documents, so no change)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils import _seed
from tests.conftest import run_module

pytestmark = [pytest.mark.lab]

TOOLS = ("cloud-localds", "isoinfo", "blkid")
TASK = dict(
    hostname="ref1",
    ssh_authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIReferenceToolCrossCheckKey000000000000000 ref@lab"],
    user_data={"write_files": [{"path": "/etc/iaastest-ref", "content": "same bytes\nfrom both tools\n"}]},
    network_config={"version": 2, "ethernets": {"eth0": {"dhcp4": True}}},
)


def tool(*command):
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture(scope="module")
def tools():
    missing = [name for name in TOOLS if shutil.which(name) is None]
    if missing:
        pytest.fail("%s missing: install cloud-image-utils, genisoimage and util-linux" % ", ".join(missing))


@pytest.fixture
def both(tmp_path, tools):
    """The module's seed and cloud-localds's seed of the same documents."""
    ours = tmp_path / "iaastest-ours.iso"
    made = run_module("cloudinit_seed", dict(TASK, path=str(ours)))
    assert made.changed and not made.failed, made
    documents = _seed.read_seed(ours.read_bytes())
    for name, text in documents.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    reference = tmp_path / "iaastest-reference.iso"
    tool(
        "cloud-localds",
        "--network-config=%s" % (tmp_path / "network-config"),
        str(reference),
        str(tmp_path / "user-data"),
        str(tmp_path / "meta-data"),
    )
    return dict(ours=ours, reference=reference, documents=documents, result=made)


def test_isoinfo_sees_the_same_volume(both):
    for image in (both["ours"], both["reference"]):
        info = tool("isoinfo", "-d", "-i", str(image))
        assert re.search(r"^Volume id: cidata$", info, re.MULTILINE), info
        assert "Joliet with UCS level 3 found" in info
        assert "Rock Ridge signatures version 1 found" in info
        assert "Logical block size is: 2048" in info


def test_blkid_sees_label_cidata(both):
    for image in (both["ours"], both["reference"]):
        probed = dict(line.split("=", 1) for line in tool("blkid", "-o", "export", str(image)).split())
        assert probed["LABEL"] == "cidata" and probed["TYPE"] == "iso9660", probed


def test_isoinfo_lists_and_extracts_the_same_files(both):
    names = sorted(both["documents"])
    assert names == ["meta-data", "network-config", "user-data"]
    for image in (both["ours"], both["reference"]):
        for space in ("-R", "-J"):
            listed = sorted(line.strip("/") for line in tool("isoinfo", "-i", str(image), space, "-f").split())
            assert listed == names, (image.name, space, listed)
            for name in names:
                extracted = tool("isoinfo", "-i", str(image), space, "-x", "/" + name)
                assert extracted == both["documents"][name], (image.name, space, name)


def test_the_module_takes_the_reference_seed_as_its_own(both):
    """Same documents in another tool's image: no change, and the file is not rewritten."""
    data = both["reference"].read_bytes()
    assert data != both["ours"].read_bytes()
    assert _seed.read_seed(data) == both["documents"]
    both["reference"].chmod(0o644)
    again = run_module("cloudinit_seed", dict(TASK, path=str(both["reference"])))
    assert not again.changed and not again.failed, again
    assert again["sha256"] == hashlib.sha256(data).hexdigest()
    assert both["reference"].read_bytes() == data
