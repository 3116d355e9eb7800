# -*- coding: utf-8 -*-
"""The pure-Python SHA-512 crypt against passlib (in the test virtualenv only)
and the published test vectors of the algorithm."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import sha512_crypt as passlib_sha512

from ansible_collections.iaas.kvm.plugins.module_utils import _crypt

# From "Unix crypt using SHA-256 and SHA-512" (Ulrich Drepper), the algorithm's specification.
VECTORS = [
    (
        "$6$saltstring",
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "$6$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/"
        "YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "$6$rounds=5000$toolongsaltstring",
        "This is just a test",
        "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/"
        "e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        "$6$rounds=1400$anotherlongsaltstring",
        "a very much longer text to encrypt.  This one even stretches over morethan one line.",
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwb"
        "tEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        "$6$rounds=77777$short",
        "we have a short salt string but not a short password",
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
    ),
    (
        "$6$rounds=10$roundstoolow",
        "the minimum number is still observed",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbp"
        "BYYBaHHrsX.",
    ),
]


# crypt(3) takes C strings: a password never holds a NUL character.
PASSWORD_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def _salt_and_rounds(setting):
    parts = setting.split("$")[2:]
    rounds = int(parts[0].split("=")[1]) if parts[0].startswith("rounds=") else None
    return parts[-1], rounds


@pytest.mark.parametrize("setting, password, expected", VECTORS)
def test_specification_vectors(setting, password, expected):
    salt, rounds = _salt_and_rounds(setting)
    assert _crypt.sha512_crypt(password, salt, rounds) == expected
    assert _crypt.verify(password, expected)
    assert not _crypt.verify(password + "x", expected)


@settings(max_examples=60, deadline=None)
@given(
    password=st.text(PASSWORD_CHARS, max_size=80),
    salt=st.text(alphabet=_crypt.ALPHABET, max_size=16),
)
def test_same_hash_as_passlib(password, salt):
    ours = _crypt.sha512_crypt(password, salt)
    assert ours == passlib_sha512.using(salt=salt, rounds=5000).hash(password).replace("rounds=5000$", "")
    assert passlib_sha512.verify(password, ours)


@settings(max_examples=30, deadline=None)
@given(password=st.text(PASSWORD_CHARS, min_size=1, max_size=40))
def test_verifies_passlib_hashes(password):
    hashed = passlib_sha512.using(rounds=1000).hash(password)
    assert _crypt.verify(password, hashed)
    assert not _crypt.verify(password + "!", hashed)


def test_random_salt_of_sixteen_characters():
    first, second = _crypt.sha512_crypt("pw"), _crypt.sha512_crypt("pw")
    assert first != second
    for hashed in (first, second):
        assert _crypt.is_sha512_crypt(hashed)
        salt = hashed.split("$")[2]
        assert len(salt) == 16 and set(salt) <= set(_crypt.ALPHABET)
        assert passlib_sha512.verify("pw", hashed)


@pytest.mark.parametrize(
    "value",
    [None, "", "pw", "$5$salt$abc", "$6$salt$short", "$6$salt$" + "a" * 85 + "!", "$6$rounds=x$salt$" + "a" * 86],
)
def test_verify_refuses_what_is_not_a_sha512_hash(value):
    assert not _crypt.verify("pw", value)
    assert not _crypt.is_sha512_crypt(value)


def test_password_with_nul_is_refused():
    with pytest.raises(ValueError, match="NUL"):
        _crypt.sha512_crypt("a\x00b", "salt")
    assert not _crypt.verify("a\x00b", _crypt.sha512_crypt("a", "salt"))


@pytest.mark.parametrize("salt", ["a$b", "a:b", "a\nb"])
def test_salt_with_separators_is_refused(salt):
    with pytest.raises(ValueError, match="salt"):
        _crypt.sha512_crypt("pw", salt)


def test_imports_neither_crypt_nor_passlib():
    tree = ast.parse(Path(_crypt.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "hashlib", "hmac", "random", "re"}
