# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SHA-512 crypt (``$6$``) in pure Python, as glibc's crypt(3) computes it.

Python's ``crypt`` module is gone in 3.13 and passlib is not on the hypervisor,
so the modules hash and verify passwords here. The algorithm is Ulrich
Drepper's "Unix crypt using SHA-256 and SHA-512" (the reference of glibc,
passlib and cloud-init's targets): a salt of up to 16 characters, 5000 rounds
unless the hash says ``rounds=N``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import random
import re

ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ROUNDS_DEFAULT = 5000
ROUNDS_MIN = 1000
ROUNDS_MAX = 999999999
SALT_MAX = 16

# The order in which the 64 bytes of the final digest are encoded, three at a time.
_PERMUTATION = (
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
)

_HASH_RE = re.compile(r"^\$6\$(?:rounds=(?P<rounds>[0-9]+)\$)?(?P<salt>[^$\n]{0,16})\$(?P<checksum>[./0-9A-Za-z]{86})$")


def _encode(value):
    return value.encode("utf-8") if not isinstance(value, bytes) else value


def _repeat(digest, length):
    """``length`` bytes of ``digest`` repeated (the P and S sequences of the algorithm)."""
    return (digest * (length // len(digest) + 1))[:length]


def _b64(byte2, byte1, byte0, count):
    word = (byte2 << 16) | (byte1 << 8) | byte0
    return "".join(ALPHABET[(word >> (6 * position)) & 0x3F] for position in range(count))


def _checksum(password, salt, rounds):
    """The 86-character checksum of ``password`` (bytes) with ``salt`` (bytes)."""
    plen = len(password)
    digest_b = hashlib.sha512(password + salt + password).digest()
    ctx = hashlib.sha512(password + salt)
    ctx.update(_repeat(digest_b, plen))
    length = plen
    while length > 0:
        ctx.update(digest_b if length & 1 else password)
        length >>= 1
    digest_a = ctx.digest()

    p_seq = _repeat(hashlib.sha512(password * plen).digest(), plen)
    s_seq = _repeat(hashlib.sha512(salt * (16 + digest_a[0])).digest(), len(salt))

    current = digest_a
    sha512 = hashlib.sha512
    for number in range(rounds):
        ctx = sha512(p_seq if number & 1 else current)
        if number % 3:
            ctx.update(s_seq)
        if number % 7:
            ctx.update(p_seq)
        ctx.update(current if number & 1 else p_seq)
        current = ctx.digest()

    parts = [_b64(current[a], current[b], current[c], 4) for a, b, c in _PERMUTATION]
    parts.append(_b64(0, 0, current[63], 2))
    return "".join(parts)


def make_salt(length=SALT_MAX):
    """A random salt of ``length`` characters from the crypt alphabet."""
    return "".join(random.SystemRandom().choices(ALPHABET, k=length))


def sha512_crypt(password, salt=None, rounds=None):
    """The ``$6$`` crypt hash of ``password``.

    ``salt`` defaults to 16 random characters (longer salts are cut to 16, as
    glibc does); ``rounds`` defaults to 5000 and is written into the hash only
    when given (clamped to 1000..999999999, as glibc does).
    """
    if b"\0" in _encode(password):
        raise ValueError("A password must not contain a NUL character.")
    if salt is None:
        salt = make_salt()
    salt = _encode(salt)[:SALT_MAX]
    if b"$" in salt or b"\n" in salt or b":" in salt:
        raise ValueError("A crypt salt must not contain '$', ':' or a newline.")
    prefix = "$6$"
    if rounds is None:
        rounds = ROUNDS_DEFAULT
    else:
        rounds = min(max(int(rounds), ROUNDS_MIN), ROUNDS_MAX)
        prefix += "rounds=%d$" % rounds
    return "%s%s$%s" % (prefix, salt.decode("utf-8"), _checksum(_encode(password), salt, rounds))


def is_sha512_crypt(value):
    """True when ``value`` has the form of a ``$6$`` hash."""
    return isinstance(value, str) and _HASH_RE.match(value) is not None


def verify(password, hashed):
    """True when ``hashed`` (a ``$6$`` hash) is the hash of ``password``."""
    if not isinstance(hashed, str) or b"\0" in _encode(password):
        return False
    match = _HASH_RE.match(hashed)
    if match is None:
        return False
    rounds = match.group("rounds")
    rounds = ROUNDS_DEFAULT if rounds is None else min(max(int(rounds), ROUNDS_MIN), ROUNDS_MAX)
    expected = _checksum(_encode(password), match.group("salt").encode("utf-8"), rounds)
    return hmac.compare_digest(expected, match.group("checksum"))
