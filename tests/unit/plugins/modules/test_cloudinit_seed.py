# -*- coding: utf-8 -*-
"""cloudinit_seed through its real main(): seeds written to a path (no
libvirt needed), and pool checks against libvirt's test driver (which has no
stream upload: uploads are tested in the lab, tests/integration/test_seed.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat

import pycdlib
import pytest
import yaml
from passlib.hash import sha512_crypt as passlib_sha512

from ansible_collections.iaas.kvm.plugins.module_utils import _seed
from tests.unit.plugins.modules.testdriver import POOL, TEST_URI, emptied_test_driver

MODULE = "cloudinit_seed"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheUnitTestsOfTheSeedModule00000 ops@example"
# The plain-text passwords of the tests: never in an image, a result or a diff.
SECRET, OTHER_SECRET = "Tr0ub4dor&3-horse", "another-battery-staple"
NETWORK = {
    "version": 2,
    "ethernets": {
        "eth0": {
            "match": {"macaddress": "52:54:00:aa:bb:cc"},
            "set-name": "eth0",
            "addresses": ["192.168.170.10/24"],
            "routes": [{"to": "default", "via": "192.168.170.1"}],
        }
    },
}


@pytest.fixture
def seed_path(tmp_path):
    return tmp_path / "iaastest-web1-seed.iso"


def task(path, **extra):
    args = dict(
        path=str(path),
        hostname="web1",
        ssh_authorized_keys=[KEY],
        user_data={"write_files": [{"path": "/etc/iaastest", "content": "hello\n"}]},
        network_config=NETWORK,
    )
    args.update(extra)
    return args


def image_documents(path):
    return _seed.read_seed(path.read_bytes())


def listing(directory):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir())


# --- converging --------------------------------------------------------------------


def test_check_mode_apply_apply_again_check_mode_again(run_module, seed_path):
    args = task(seed_path)
    predicted = run_module(MODULE, args, check_mode=True, diff=True)
    assert predicted.changed and not predicted.failed, predicted
    assert not seed_path.exists()

    made = run_module(MODULE, args, diff=True)
    assert made.changed and made["actions"] == ["created"]
    data = seed_path.read_bytes()
    assert made["sha256"] == predicted["sha256"] == hashlib.sha256(data).hexdigest()
    assert made["size"] == len(data) and made["path"] == str(seed_path) and made["volume"] is None
    assert stat.S_IMODE(seed_path.stat().st_mode) == 0o644
    assert [d["before"] for d in made["diff"]] == ["", "", ""]

    documents = image_documents(seed_path)
    assert sorted(documents) == ["meta-data", "network-config", "user-data"]
    user_data = yaml.safe_load(documents["user-data"])
    assert documents["user-data"].startswith("#cloud-config\n")
    assert user_data["hostname"] == "web1" and user_data["ssh_authorized_keys"] == [KEY]
    assert user_data["write_files"] == [{"path": "/etc/iaastest", "content": "hello\n"}]
    assert yaml.safe_load(documents["meta-data"]) == {"instance-id": "web1", "local-hostname": "web1"}
    assert yaml.safe_load(documents["network-config"]) == NETWORK
    assert made["documents"] == documents
    assert made["instance_id"] == "web1"

    inode = seed_path.stat().st_ino
    again = run_module(MODULE, args, diff=True)
    assert not again.changed and again["actions"] == []
    assert again["sha256"] == made["sha256"]
    assert seed_path.stat().st_ino == inode
    assert not run_module(MODULE, args, check_mode=True).changed


def test_a_changed_document_is_changed_and_shown(run_module, seed_path):
    run_module(MODULE, task(seed_path))
    before = seed_path.read_bytes()
    changed_network = dict(NETWORK, ethernets={"eth0": {"dhcp4": True}})
    predicted = run_module(MODULE, task(seed_path, network_config=changed_network), check_mode=True, diff=True)
    assert predicted.changed and seed_path.read_bytes() == before
    result = run_module(MODULE, task(seed_path, network_config=changed_network), diff=True)
    assert result.changed and result["actions"] == ["updated"]
    shown = {d["before_header"]: d for d in result["diff"]}
    assert shown["network-config"]["before"] != shown["network-config"]["after"]
    assert "dhcp4: true" in shown["network-config"]["after"]
    assert shown["user-data"]["before"] == shown["user-data"]["after"]
    assert yaml.safe_load(image_documents(seed_path)["network-config"])["ethernets"] == {"eth0": {"dhcp4": True}}


def test_same_inputs_give_the_same_bytes(run_module, tmp_path):
    first = run_module(MODULE, task(tmp_path / "iaastest-a.iso", meta_data={"instance-id": "i-1"}))
    second = run_module(MODULE, task(tmp_path / "iaastest-b.iso", meta_data={"instance-id": "i-1"}))
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "iaastest-a.iso").read_bytes() == (tmp_path / "iaastest-b.iso").read_bytes()


def test_another_spelling_of_the_same_documents_is_no_change(run_module, seed_path):
    """A seed whose YAML another emitter wrote (flow style, other key order) says
    the same: it is kept, not rewritten."""
    made = run_module(MODULE, task(seed_path))
    documents = image_documents(seed_path)
    respelled = {
        name: ("#cloud-config\n" if name == "user-data" else "")
        + yaml.safe_dump(yaml.safe_load(text), default_flow_style=True, sort_keys=True)
        for name, text in documents.items()
    }
    assert respelled != documents
    seed_path.write_bytes(_seed.build_iso(respelled))
    os.chmod(seed_path, 0o644)
    result = run_module(MODULE, task(seed_path))
    assert not result.changed
    assert result["sha256"] == hashlib.sha256(seed_path.read_bytes()).hexdigest() != made["sha256"]
    assert result["documents"] == respelled


def test_mode_is_set_to_0644(run_module, seed_path):
    run_module(MODULE, task(seed_path))
    os.chmod(seed_path, 0o600)
    predicted = run_module(MODULE, task(seed_path), check_mode=True)
    assert predicted.changed and stat.S_IMODE(seed_path.stat().st_mode) == 0o600
    fixed = run_module(MODULE, task(seed_path))
    assert fixed.changed and stat.S_IMODE(seed_path.stat().st_mode) == 0o644
    assert not run_module(MODULE, task(seed_path)).changed


# --- passwords ---------------------------------------------------------------------


def test_password_appears_only_as_a_hash_in_the_image(run_module, seed_path):
    args = task(seed_path, password=SECRET)
    made = run_module(MODULE, args, diff=True)
    assert made.changed
    assert SECRET not in json.dumps(made)
    data = seed_path.read_bytes()
    assert SECRET.encode() not in data
    hashed = yaml.safe_load(image_documents(seed_path)["user-data"])["password"]
    assert hashed.startswith("$6$") and passlib_sha512.verify(SECRET, hashed)
    assert hashed not in json.dumps(made)
    assert "password: ********\n" in made["documents"]["user-data"]

    # The hash already in the seed verifies: kept with its salt, no change.
    again = run_module(MODULE, args, diff=True)
    assert not again.changed and seed_path.read_bytes() == data
    assert SECRET not in json.dumps(again) and hashed not in json.dumps(again)

    # Another password: a new hash, and the diff marks the masked value as changed.
    other = run_module(MODULE, task(seed_path, password=OTHER_SECRET), diff=True)
    assert other.changed
    text = json.dumps(other)
    assert OTHER_SECRET not in text and SECRET not in text and "$6$" not in text
    user_data = next(d for d in other["diff"] if d["before_header"] == "user-data")
    assert "password: ********\n" in user_data["before"]
    assert "password: ******** (changed)\n" in user_data["after"]
    new_hash = yaml.safe_load(image_documents(seed_path)["user-data"])["password"]
    assert passlib_sha512.verify(OTHER_SECRET, new_hash) and not passlib_sha512.verify(SECRET, new_hash)


# --- bad input: one sentence, nothing written -----------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (dict(user_data="#cloud-config\nwrite_files: [\n"), "user_data is not valid YAML"),
        (dict(user_data="#cloud-config\n- one\n- two\n"), "must be a YAML mapping, not a list"),
        (dict(network_config={"ethernets": {"eth0": {"dhcp4": True}}}), "network_config needs a version"),
        (dict(user_data={"hostname": "db1"}), "hostname is given both as an option ('web1') and in user_data"),
        (dict(meta_data={"local-hostname": "db1"}), "differs from local-hostname 'db1'"),
        (dict(hostname="web_1"), "is not a valid hostname"),
        (dict(user_data={"password": "x"}, password=SECRET), "password is given both as an option and in user_data"),
        (dict(user_data="echo hi\n"), "user_data text must start with #cloud-config"),
    ],
)
def test_bad_input_fails_and_writes_nothing(run_module, tmp_path, seed_path, extra, message):
    before = listing(tmp_path)
    result = run_module(MODULE, task(seed_path, **extra), fails=True)
    assert result.failed and not result.changed
    assert message in result["msg"], result["msg"]
    assert result["msg"].count(". ") == 0 and result["msg"].endswith(".")
    assert listing(tmp_path) == before


def test_directory_that_does_not_exist(run_module, tmp_path):
    result = run_module(MODULE, task(tmp_path / "iaastest-missing" / "seed.iso"), fails=True)
    assert result.failed and "does not exist" in result["msg"]
    assert not (tmp_path / "iaastest-missing").exists()


def test_a_file_that_is_not_a_seed_is_kept_unless_forced(run_module, seed_path):
    seed_path.write_bytes(b"QFI\xfb" + b"\0" * 4096)
    result = run_module(MODULE, task(seed_path), fails=True)
    assert result.failed and "is not a NoCloud seed" in result["msg"] and "force" in result["msg"]
    assert seed_path.read_bytes().startswith(b"QFI\xfb")
    forced = run_module(MODULE, task(seed_path, force=True))
    assert forced.changed and forced["actions"] == ["replaced"]
    assert "user-data" in image_documents(seed_path)


def test_a_directory_as_path_is_refused(run_module, tmp_path):
    (tmp_path / "iaastest-dir").mkdir()
    result = run_module(MODULE, task(tmp_path / "iaastest-dir"), fails=True)
    assert result.failed and "not a regular file" in result["msg"]


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(path="/tmp/x.iso", pool=POOL, name="x.iso"), "mutually exclusive"),
        (dict(pool=POOL), "parameters are required together: pool, name"),
        (dict(hostname="web1"), "one of the following is required: path, pool"),
    ],
)
def test_destination_options(run_module, args, message):
    result = run_module(MODULE, dict(args, uri=TEST_URI), fails=True)
    assert result.failed and message in result["msg"]


# --- pools (libvirt's test driver) ---------------------------------------------------------


@pytest.fixture
def conn():
    with emptied_test_driver() as connection:
        yield connection


def test_unknown_pool_is_an_error(run_module, conn):
    result = run_module(MODULE, dict(uri=TEST_URI, pool="iaastest-nopool", name="x-seed.iso", hostname="x"), fails=True)
    assert result.failed and result["msg"] == "The storage pool 'iaastest-nopool' does not exist."


def test_bad_volume_name_is_an_error(run_module, conn):
    result = run_module(MODULE, dict(uri=TEST_URI, pool=POOL, name="../x.iso", hostname="x"), fails=True)
    assert result.failed and "must not contain path separators" in result["msg"]
    assert "../x.iso" not in [v.name() for v in conn.storagePoolLookupByName(POOL).listAllVolumes(0)]


def test_check_mode_predicts_a_new_volume(run_module, conn):
    pool = conn.storagePoolLookupByName(POOL)
    result = run_module(
        MODULE, dict(uri=TEST_URI, pool=POOL, name="iaastest-x-seed.iso", hostname="x"), check_mode=True
    )
    assert result.changed and result["volume"] == dict(name="iaastest-x-seed.iso", pool=POOL)
    assert result["instance_id"] == "x"
    assert "iaastest-x-seed.iso" not in [v.name() for v in pool.listAllVolumes(0)]


def test_what_the_image_holds_through_iso9660_joliet_and_rock_ridge(run_module, seed_path):
    run_module(MODULE, task(seed_path))
    iso = pycdlib.PyCdlib()
    iso.open(str(seed_path))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        for where in (
            dict(iso_path="/USER_DATA.;1"),
            dict(joliet_path="/user-data"),
            dict(rr_path="/user-data"),
        ):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **where)
            assert out.getvalue().startswith(b"#cloud-config\n")
    finally:
        iso.close()


SECRETS_IN_USER_DATA = [
    pytest.param(
        {
            "users": [{"name": "ops", "plain_text_passwd": "PlainSecret-1", "hashed_passwd": "$6$salt$" + "h" * 86}],
            "chpasswd": {"list": "root:ChpasswdSecret-2\nbob:ChpasswdSecret-3", "expire": False},
        },
        ["PlainSecret-1", "$6$salt$" + "h" * 86, "ChpasswdSecret-2", "ChpasswdSecret-3"],
        id="mapping",
    ),
    pytest.param(
        "#cloud-config\nchpasswd:\n  list:\n  - root:ChpasswdSecret-2\n  users:\n  - name: bob\n"
        "    password: UserSecret-4\n    type: text\n",
        ["ChpasswdSecret-2", "UserSecret-4"],
        id="text",
    ),
]


@pytest.mark.parametrize(("user_data", "secrets"), SECRETS_IN_USER_DATA)
def test_passwords_in_user_data_never_appear_in_the_output(run_module, seed_path, user_data, secrets):
    """Not in the documents, the diff or the task's arguments Ansible echoes back."""
    for check_mode in (True, False):
        result = run_module(MODULE, task(seed_path, user_data=user_data), check_mode=check_mode, diff=True)
        assert result.changed
        shown = json.dumps(result)
        assert [s for s in secrets if s in shown] == []
    # the seed itself holds them as given: cloud-init needs them
    assert all(s in image_documents(seed_path)["user-data"] for s in secrets)
