# -*- coding: utf-8 -*-
"""The seed documents and the ISO image of module_utils/_seed.py, read back
with pycdlib through all three name spaces (ISO 9660, Joliet, Rock Ridge)."""

from __future__ import annotations

import email
import io
import time

import pycdlib
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import sha512_crypt as passlib_sha512

from ansible_collections.iaas.kvm.plugins.module_utils import _crypt, _seed

# Passwords of the tests (plain text that must never reach an image, a result or a diff).
HORSE, PW1, PW2 = "correct horse", "pw-one", "pw-two"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyExampleKeyExampleKeyExampleKe admin@example"


def spec(destination="web1-seed.iso", **params):
    return _seed.SeedSpec(params, destination)


def texts(seed_spec, password_hash=None):
    return {name: doc.text for name, doc in seed_spec.documents(password_hash).items()}


def open_iso(data):
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    return iso


def file_of(iso, **where):
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **where)
    return out.getvalue().decode("utf-8")


# --- the image -----------------------------------------------------------------


def test_image_has_label_and_all_three_name_spaces():
    documents = texts(
        spec(hostname="web1", ssh_authorized_keys=[KEY], network_config={"version": 2, "ethernets": {}}),
    )
    documents["vendor-data"] = "#cloud-config\npackages: [htop]\n"
    iso = open_iso(_seed.build_iso(documents))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        assert iso.has_joliet() and iso.has_rock_ridge()
        rr_names = sorted(
            c.rock_ridge.name().decode() for c in iso.list_children(rr_path="/") if not (c.is_dot() or c.is_dotdot())
        )
        assert rr_names == ["meta-data", "network-config", "user-data", "vendor-data"]
        joliet_names = sorted(
            c.file_identifier().decode("utf-16_be")
            for c in iso.list_children(joliet_path="/")
            if not (c.is_dot() or c.is_dotdot())
        )
        assert joliet_names == rr_names
        for name, text in documents.items():
            assert file_of(iso, rr_path="/" + name) == text
            assert file_of(iso, joliet_path="/" + name) == text
            assert file_of(iso, iso_path=_seed.iso9660_name(name)) == text
        assert _seed.iso9660_name("user-data") == "/USER_DATA.;1"
        # Every date is the fixed one, in UTC.
        created = iso.pvd.volume_creation_date
        assert (created.year, created.month, created.dayofmonth, created.gmtoffset) == (2000, 1, 1, 0)
    finally:
        iso.close()


def test_same_documents_give_the_same_bytes_whatever_the_clock_and_time_zone(monkeypatch):
    documents = texts(spec(hostname="web1", ssh_authorized_keys=[KEY]))
    first = _seed.build_iso(documents)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.5)
    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    try:
        second = _seed.build_iso(documents)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert first == second
    assert _seed.build_iso(dict(documents, **{"meta-data": "instance-id: other\n"})) != first


def test_clock_of_pycdlib_is_restored():
    with _seed.fixed_clock():
        assert pycdlib.dates.time.time() == _seed.FIXED_TIME
    assert pycdlib.dates.time is time
    assert pycdlib.headervd.time is time


def test_read_seed_returns_the_documents():
    documents = texts(spec(hostname="db1", network_config={"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}))
    assert _seed.read_seed(_seed.build_iso(documents)) == documents


def _plain_iso(label="cidata", joliet=True, rock_ridge=True):
    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=3,
        vol_ident=label,
        joliet=3 if joliet else None,
        rock_ridge="1.09" if rock_ridge else None,
    )
    data = b"#cloud-config\n"
    iso.add_fp(
        io.BytesIO(data),
        len(data),
        "/USER_DATA.;1",
        rr_name="user-data" if rock_ridge else None,
        joliet_path="/user-data" if joliet else None,
    )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def test_joliet_names_are_read_without_rock_ridge():
    assert _seed.read_seed(_plain_iso(rock_ridge=False)) == {"user-data": "#cloud-config\n"}


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "not an ISO 9660 image"),
        (b"QFI\xfb" + b"\0" * 70000, "not an ISO 9660 image"),
        (_plain_iso(label="config-2"), "volume label is 'config-2'"),
        (_plain_iso(joliet=False, rock_ridge=False), "neither Rock Ridge nor Joliet"),
    ],
)
def test_what_is_not_a_seed(data, reason):
    with pytest.raises(_seed.NotASeed, match=reason):
        _seed.read_seed(data)


# --- user-data -----------------------------------------------------------------


def test_conveniences_merge_into_a_mapping_in_a_fixed_order():
    user_data = texts(
        spec(
            hostname="web1",
            ssh_authorized_keys=[KEY + "\n\n# a comment\nssh-rsa AAAAB3 other"],
            packages=["htop"],
            runcmd=[["touch", "/x"], "echo hi"],
            users=["default", {"name": "ops"}],
            user_data={"write_files": [{"path": "/etc/motd", "content": "hello\nworld\n"}]},
        )
    )["user-data"]
    assert user_data.startswith("#cloud-config\n")
    data = yaml.safe_load(user_data)
    assert list(data) == ["write_files", "hostname", "users", "ssh_authorized_keys", "packages", "runcmd"]
    assert data["ssh_authorized_keys"] == [KEY, "ssh-rsa AAAAB3 other"]
    assert data["write_files"][0]["content"] == "hello\nworld\n"
    # Multi-line strings are literal blocks; long lines are not folded.
    assert "content: |\n" in user_data
    assert KEY in user_data


def test_empty_conveniences_are_left_out():
    assert texts(spec(ssh_authorized_keys=[], packages=[], users=[]))["user-data"] == "#cloud-config\n{}\n"


def test_cloud_config_text_is_kept_as_written():
    text = "#cloud-config\n# my comment\nhostname:   web1\n"
    assert texts(spec(user_data=text))["user-data"] == text
    # With a convenience it is rendered again from its data.
    merged = texts(spec(user_data=text, packages=["curl"]))["user-data"]
    assert yaml.safe_load(merged) == {"hostname": "web1", "packages": ["curl"]}


def test_script_and_conveniences_become_a_multipart_document():
    script = "#!/bin/sh\necho hello > /var/tmp/hello\n"
    user_data = texts(spec(user_data=script, hostname="web1", ssh_authorized_keys=[KEY]))["user-data"]
    assert user_data == texts(spec(user_data=script, hostname="web1", ssh_authorized_keys=[KEY]))["user-data"]
    parts = [
        (part.get_content_type(), part.get_payload(decode=True).decode())
        for part in email.message_from_string(user_data).walk()
        if not part.is_multipart()
    ]
    assert parts[0][0] == "text/cloud-config"
    assert yaml.safe_load(parts[0][1]) == {"hostname": "web1", "ssh_authorized_keys": [KEY]}
    assert parts[1] == ("text/x-shellscript", script)
    shown = _seed.mask_text(user_data)
    assert "# part 1: text/cloud-config\n#cloud-config\nhostname: web1\n" in shown
    assert "# part 2: text/x-shellscript\n#!/bin/sh\n" in shown
    # A script alone is written as given.
    assert texts(spec(user_data=script))["user-data"] == script


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(user_data="#cloud-config\nkey: [unclosed\n"), "user_data is not valid YAML (line 3, column 1)"),
        (
            dict(user_data="#cloud-config\n- a\n- b\n"),
            "user_data after #cloud-config must be a YAML mapping, not a list",
        ),
        (dict(user_data="hostname: web1\n"), "user_data text must start with #cloud-config"),
        (dict(user_data=["a"]), "user_data must be a dict or a text, not a list"),
        (dict(user_data={"hostname": "web2"}, hostname="web1"), "hostname is given both as an option ('web1')"),
        (dict(user_data={"password": "x"}, password=PW1), "password is given both as an option and in user_data"),
        (
            dict(user_data="Content-Type: multipart/mixed; boundary=x\n\n--x--\n", hostname="web1"),
            "MIME multipart document, into which hostname cannot be merged",
        ),
        (dict(vendor_data="plain text"), "vendor_data text must start with #cloud-config"),
        (dict(network_config={"ethernets": {}}), "network_config needs a version"),
        (dict(network_config={"network": {"ethernets": {}}}), "network_config needs a version"),
        (dict(network_config={"version": 3}), "network_config version must be 1 or 2, not 3"),
        (dict(meta_data={"local-hostname": "a"}, hostname="b"), "hostname 'b' differs from local-hostname 'a'"),
        (dict(meta_data={"instance-id": ""}), "instance-id in meta_data must be a non-empty string"),
        (dict(hostname="bad_name!"), "'bad_name!' is not a valid hostname (RFC 1123"),
        (dict(hostname="-web"), "is not a valid hostname"),
        (dict(hostname="web1."), "is not a valid hostname"),
        (dict(hostname="a" * 64), "is not a valid hostname"),
        (dict(password=""), "password must not be empty"),
    ],
)
def test_bad_input_is_one_sentence(params, message):
    with pytest.raises(_seed.SeedError) as info:
        spec(**params)
    assert message in str(info.value)
    assert str(info.value).endswith(".")


def test_same_value_in_user_data_and_convenience_is_no_conflict():
    user_data = texts(spec(user_data={"hostname": "web1"}, hostname="web1"))["user-data"]
    assert yaml.safe_load(user_data) == {"hostname": "web1"}


# --- meta-data and network-config -------------------------------------------------


@pytest.mark.parametrize(
    "params, destination, expected",
    [
        (dict(hostname="web1"), "x-seed.iso", "web1"),
        (dict(meta_data={"local-hostname": "db1"}), "x-seed.iso", "db1"),
        (dict(), "web2-seed.iso", "web2"),
        (dict(), "/var/lib/libvirt/images/web3_seed.ISO", "web3"),
        (dict(), "/srv/seeds/plain.iso", "plain"),
        (dict(meta_data={"instance-id": "i-123"}, hostname="web1"), "x.iso", "i-123"),
    ],
)
def test_instance_id_is_stable_and_never_random(params, destination, expected):
    first = spec(destination, **params)
    assert first.instance_id == expected
    meta = yaml.safe_load(texts(first)["meta-data"])
    assert meta["instance-id"] == expected
    assert texts(spec(destination, **params)) == texts(first)


def test_meta_data_keeps_other_keys_after_instance_id_and_hostname():
    meta = texts(spec(hostname="web1", meta_data={"dsmode": "local"}))["meta-data"]
    assert meta == "instance-id: web1\nlocal-hostname: web1\ndsmode: local\n"


def test_network_config_under_a_network_key_is_accepted():
    config = {"network": {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}}
    assert yaml.safe_load(texts(spec(network_config=config))["network-config"]) == config


# --- passwords -------------------------------------------------------------------


def test_password_is_stored_only_as_a_sha512_hash():
    seed_spec = spec(password=HORSE, hostname="web1")
    hashed = seed_spec.password_hash(None)
    assert hashed.startswith("$6$") and passlib_sha512.verify(HORSE, hashed)
    documents = texts(seed_spec, hashed)
    assert yaml.safe_load(documents["user-data"])["password"] == hashed
    image = _seed.build_iso(documents)
    assert HORSE.encode() not in image
    assert all(HORSE not in text for text in documents.values())


def test_hash_in_the_seed_is_kept_when_it_verifies():
    seed_spec = spec(password=PW1)
    first = seed_spec.password_hash(None)
    user_data = texts(seed_spec, first)["user-data"]
    assert seed_spec.password_hash(user_data) == first
    assert spec(password=PW2).password_hash(user_data) != first
    # Also from the cloud-config part of a multipart user-data.
    multipart = texts(spec(password=PW1, user_data="#!/bin/sh\ntrue\n"), first)["user-data"]
    assert spec(password=PW1, user_data="#!/bin/sh\ntrue\n").password_hash(multipart) == first


STRONG_HASHES = [
    pytest.param("$6$abcdefgh$" + "x" * 86, id="sha512"),
    pytest.param("$6$rounds=5000$abcdefgh$" + "x" * 86, id="sha512-rounds"),
    pytest.param("$5$abcdefgh$" + "x" * 43, id="sha256"),
    pytest.param("$2a$12$" + "x" * 53, id="bcrypt-2a"),
    pytest.param("$2y$12$" + "x" * 53, id="bcrypt-2y"),
]


@pytest.mark.parametrize("given_hash", STRONG_HASHES)
def test_a_given_strong_hash_is_stored_as_given(given_hash):
    assert spec(password=given_hash).password_hash(None) == given_hash


WEAK_OR_UNREADABLE = [
    pytest.param("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "weak scheme", id="md5"),
    pytest.param("abJnggxhB/yWI", "weak scheme", id="des"),
    pytest.param("_J9..K0AyUubDrfOgO4s", "weak scheme", id="bsdi-des"),
    pytest.param("$sha1$40000$salt$hash", "weak scheme", id="sha1"),
    pytest.param("$y$j9T$salt$" + "x" * 43, "takes for plain text", id="yescrypt"),
    pytest.param("$2b$12$" + "x" * 53, "takes for plain text", id="bcrypt-2b"),
]


@pytest.mark.parametrize(("password", "reason"), WEAK_OR_UNREADABLE)
def test_weak_or_unreadable_hashes_are_refused(password, reason):
    with pytest.raises(_seed.SeedError, match=reason):
        spec(password=password)


PLAIN = "correct horse battery"


def test_a_plain_password_is_hashed_with_sha512():
    hashed = spec(password=PLAIN).password_hash(None)
    assert hashed.startswith("$6$") and _crypt.verify(PLAIN, hashed)


CHPASSWD_LISTS = [
    pytest.param("chpasswd:\n  list: |\n    root:s3cret-one\n    bob:s3cret-two\n  expire: false\n", id="block"),
    pytest.param("chpasswd:\n  list:\n  - root:s3cret-one\n  - bob:s3cret-two\n", id="yaml-list"),
    pytest.param('chpasswd: {list: "root:s3cret-one\\nbob:s3cret-two"}\n', id="flow"),
]


@pytest.mark.parametrize("chpasswd", CHPASSWD_LISTS)
def test_chpasswd_list_passwords_are_masked(chpasswd):
    text = "#cloud-config\n" + chpasswd
    masked = _seed.mask_text(text)
    assert "s3cret" not in masked, masked
    assert "root:" in masked and "bob:" in masked
    assert _seed.secret_values(text) >= {"s3cret-one", "s3cret-two"}
    changed = _seed.mask_text(text.replace("s3cret-two", "s3cret-new"), known=_seed.secret_values(text))
    assert "(changed)" in changed and "s3cret" not in changed


def test_chpasswd_inside_a_multipart_is_masked():
    text = _seed.multipart(
        [
            ("text/cloud-config", "#cloud-config\nchpasswd:\n  list: |\n    root:s3cret-one\n"),
            ("text/x-shellscript", "#!/bin/sh\ntrue\n"),
        ]
    )
    assert "s3cret" not in _seed.mask_text(text)


def test_masking_hides_secrets_and_marks_changed_ones():
    old = "#cloud-config\npassword: $6$salt$" + "a" * 86 + "\nusers:\n- name: ops\n  passwd: 'secret'\n"
    new = old.replace("'secret'", "'other'")
    assert "secret" not in _seed.mask_text(old) and "$6$" not in _seed.mask_text(old)
    assert _seed.mask_text(old) == "#cloud-config\npassword: ********\nusers:\n- name: ops\n  passwd: ********\n"
    marked = _seed.mask_text(new, known=_seed.secret_values(old))
    assert "  passwd: ******** (changed)\n" in marked and "password: ********\n" in marked
    assert _seed.masked_documents({"user-data": old, "vendor-data": None}) == {"user-data": _seed.mask_text(old)}


# --- comparing ---------------------------------------------------------------------


def test_same_data_in_another_spelling_is_unchanged():
    documents = spec(hostname="web1", network_config={"version": 2, "ethernets": {"eth0": {"dhcp4": True}}})
    rendered = documents.documents(None)
    before = {name: doc.text for name, doc in rendered.items()}
    before["user-data"] = '#cloud-config\n{"hostname": "web1"}\n'
    before["network-config"] = "ethernets: {eth0: {dhcp4: yes}}\nversion: 2\n"
    assert _seed.unchanged(rendered, before)
    assert not _seed.unchanged(rendered, dict(before, **{"meta-data": "instance-id: other\n"}))
    assert not _seed.unchanged(rendered, dict(before, **{"vendor-data": "#cloud-config\n{}\n"}))
    # A text given as text is compared as text.
    script = spec(user_data="#!/bin/sh\ntrue\n").documents(None)
    assert not _seed.unchanged(script, {n: d.text for n, d in script.items()} | {"user-data": "#!/bin/sh\ntrue \n"})


# --- a round trip of any user-data ---------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
)
_KEYS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_any_user_data_mapping_survives_the_image(user_data):
    documents = texts(spec(user_data=user_data))
    back = _seed.read_seed(_seed.build_iso(documents))
    assert back == documents
    assert back["user-data"].startswith("#cloud-config\n")
    assert (yaml.safe_load(back["user-data"]) or {}) == user_data
