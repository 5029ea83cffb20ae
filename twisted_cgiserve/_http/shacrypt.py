# -*- test-case-name: tests.http.test_shacrypt -*-
"""
SHA-crypt, the C{$5$} (SHA-256) and C{$6$} (SHA-512) password hashes of
glibc's C{crypt}, written from Ulrich Drepper's published specification
("Unix crypt using SHA-256 and SHA-512", 2008).

Python 3.13 removed the C{crypt} module. The alternatives were a
dependency (passlib is unmaintained; its fork libpass brings thirty schemes
for two), or libxcrypt through C{ctypes} (not on macOS or musl, and
C{crypt_r}'s buffer size differs between libcrypt builds). The algorithm is
short, fully specified and published with test vectors, and
L{hashlib}'s SHA-2 is the only primitive it needs, so it is implemented
here and checked against the specification's vectors and, where present,
the system's C{crypt} and C{openssl passwd}.

It is slow on purpose (5000 rounds by default) and, in pure Python, holds
the GIL while it runs, so it slows the reactor thread while it runs
even in another thread: callers run one check at a time in a thread (see
L{twisted_cgiserve._http.credentials}). Its time also grows with the
square of the password's length (steps 13 and 14 hash the password once
per byte of it): callers refuse long passwords before they get here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ROUNDS",
    "MAX_ROUNDS",
    "SHACryptHash",
    "parseSHACrypt",
    "shaCrypt",
]

DEFAULT_ROUNDS = 5000
# The specification's bounds: fewer rounds are raised to the minimum, more
# lowered to the maximum.
MIN_ROUNDS = 1000
MAX_ROUNDS = 999_999_999
_MAX_SALT = 16

_ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_HASH = re.compile(
    rb"\$(?P<id>[56])\$(?:rounds=(?P<rounds>[0-9]{1,9})\$)?"
    rb"(?P<salt>[^$:\n]{0,16})\$(?P<digest>[./0-9A-Za-z]+)"
)

_Algorithm = Callable[[bytes], "hashlib._Hash"]


@dataclass(frozen=True)
class _Variant:
    """
    What differs between C{$5$} and C{$6$}: the hash, and the order its
    digest's bytes are encoded in (specification step 22).
    """

    algorithm: _Algorithm
    size: int
    order: tuple[int, ...]
    encodedLength: int


def _order(size: int) -> tuple[int, ...]:
    """
    The byte order of step 22: triples C{(i, i + n, i + 2n)} for C{n} a
    third of the digest, each rotated by an amount that cycles with C{i}
    (rightwards for SHA-256, leftwards for SHA-512), then the bytes left
    over, last first.
    """
    third = size // 3
    order: list[int] = []
    for i in range(third):
        triple = [i, i + third, i + 2 * third]
        shift = (-i) % 3 if size == 32 else i % 3
        order.extend(triple[shift:] + triple[:shift])
    order.extend(reversed(range(3 * third, size)))
    return tuple(order)


_VARIANTS = {
    b"5": _Variant(hashlib.sha256, 32, _order(32), 43),
    b"6": _Variant(hashlib.sha512, 64, _order(64), 86),
}


def _encode(digest: bytes, order: tuple[int, ...]) -> bytes:
    """
    crypt's base-64: groups of three bytes (in C{order}) as a 24-bit number,
    written six bits at a time from the least significant; a final group of
    one or two bytes gives two or three characters.
    """
    out = bytearray()
    for start in range(0, len(order), 3):
        group = order[start : start + 3]
        value = 0
        for index in group:
            value = (value << 8) | digest[index]
        for _ in range(len(group) + 1):
            out.append(_ALPHABET[value & 0x3F])
            value >>= 6
    return bytes(out)


def _repeated(source: bytes, length: int) -> bytes:
    """
    C{source} repeated, cut to C{length} bytes (steps 16 and 20).
    """
    return (source * (length // len(source) + 1))[:length]


def _digest(variant: _Variant, password: bytes, salt: bytes, rounds: int) -> bytes:
    """
    Steps 1 to 21 of the specification: the raw digest.
    """
    new = variant.algorithm
    size = variant.size
    b = new(password + salt + password).digest()
    a = new(password + salt)
    a.update(_repeated(b, len(password)))
    length = len(password)
    while length:
        a.update(b if length & 1 else password)
        length >>= 1
    digestA = a.digest()
    # Steps 13 and 14: the password once for each of its bytes, fed in a
    # loop rather than built as one string of len(password) ** 2 bytes.
    dp = new(b"")
    for _ in range(len(password)):
        dp.update(password)
    pBytes = _repeated(dp.digest(), len(password))
    sBytes = _repeated(new(salt * (16 + digestA[0])).digest(), len(salt))
    # The loop of step 21, with its six possible inputs precomputed.
    c = digestA
    for i in range(rounds):
        h = new(pBytes if i & 1 else c)
        if i % 3:
            h.update(sBytes)
        if i % 7:
            h.update(pBytes)
        h.update(c if i & 1 else pBytes)
        c = h.digest()
    assert len(c) == size
    return c


@dataclass(frozen=True)
class SHACryptHash:
    """
    A parsed C{$5$} or C{$6$} hash.

    @ivar variant: C{b"5"} or C{b"6"}.
    @ivar rounds: The rounds it was made with, within the specification's
        bounds.
    @ivar explicitRounds: Whether the hash names its rounds.
    @ivar salt: At most 16 bytes.
    @ivar digest: The encoded digest.
    """

    variant: bytes
    rounds: int
    explicitRounds: bool
    salt: bytes
    digest: bytes

    def verify(self, password: bytes) -> bool:
        """
        Whether C{password} hashes to this, compared in constant time.
        """
        variant = _VARIANTS[self.variant]
        computed = _encode(
            _digest(variant, password, self.salt, self.rounds), variant.order
        )
        return hmac.compare_digest(computed, self.digest)


def parseSHACrypt(text: bytes) -> SHACryptHash:
    """
    Parse a C{$5$} or C{$6$} hash.

    @raise ValueError: It is not one.
    """
    match = _HASH.fullmatch(text)
    if match is None:
        raise ValueError("not a SHA-crypt hash")
    variant = _VARIANTS[match["id"]]
    if len(match["digest"]) != variant.encodedLength:
        raise ValueError("the SHA-crypt digest has the wrong length")
    rounds = DEFAULT_ROUNDS
    if match["rounds"] is not None:
        rounds = min(max(int(match["rounds"]), MIN_ROUNDS), MAX_ROUNDS)
    return SHACryptHash(
        match["id"], rounds, match["rounds"] is not None, match["salt"], match["digest"]
    )


def shaCrypt(password: bytes, setting: bytes) -> bytes:
    """
    The whole hash of C{password} as C{crypt(3)} writes it, for C{setting}:
    C{$5$salt}, C{$6$rounds=N$salt} (a longer salt is cut to 16 bytes, a
    trailing C{$} and digest are ignored).

    @raise ValueError: C{setting} is not a SHA-crypt setting.
    """
    match = re.fullmatch(
        rb"\$([56])\$(?:rounds=([0-9]{1,9})\$)?([^$:\n]*)(?:\$.*)?", setting
    )
    if match is None:
        raise ValueError("not a SHA-crypt setting")
    ident, roundsText, salt = match.groups()
    salt = salt[:_MAX_SALT]
    rounds = DEFAULT_ROUNDS
    prefix = b"$" + ident + b"$"
    if roundsText is not None:
        rounds = min(max(int(roundsText), MIN_ROUNDS), MAX_ROUNDS)
        prefix += b"rounds=%d$" % (rounds,)
    variant = _VARIANTS[ident]
    return (
        prefix
        + salt
        + b"$"
        + _encode(_digest(variant, password, salt, rounds), variant.order)
    )
