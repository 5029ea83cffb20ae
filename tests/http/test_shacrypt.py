"""
Tests for L{twisted_cgiserve._http.shacrypt}: the specification's test
vectors, and agreement with the system's C{openssl passwd}.
"""

from __future__ import annotations

import shutil
import subprocess
import tracemalloc

import pytest

from twisted_cgiserve._http.shacrypt import (
    DEFAULT_ROUNDS,
    MAX_ROUNDS,
    parseSHACrypt,
    shaCrypt,
)

# From Drepper's "Unix crypt using SHA-256 and SHA-512", section "Test
# vectors".
SPEC_VECTORS = [
    (
        b"$5$saltstring",
        b"Hello world!",
        b"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
    ),
    (
        b"$5$rounds=10000$saltstringsaltstring",
        b"Hello world!",
        b"$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
    ),
    (
        b"$5$rounds=5000$toolongsaltstring",
        b"This is just a test",
        b"$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5",
    ),
    (
        b"$5$rounds=10$roundstoolow",
        b"the minimum number is still observed",
        b"$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
    ),
    (
        b"$6$saltstring",
        b"Hello world!",
        b"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
        b"esI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        b"$6$rounds=10000$saltstringsaltstring",
        b"Hello world!",
        b"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sb"
        b"HbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        b"$6$rounds=1400$anotherlongsaltstring",
        b"a very much longer text to encrypt.  This one even stretches over more"
        b"than one line.",
        b"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wP"
        b"vMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        b"$6$rounds=10$roundstoolow",
        b"the minimum number is still observed",
        b"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1x"
        b"hLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]


@pytest.mark.parametrize(("setting", "password", "expected"), SPEC_VECTORS)
def test_specificationVectors(setting: bytes, password: bytes, expected: bytes) -> None:
    """
    L{shaCrypt} gives the specification's hashes, rounds raised to the
    minimum and salts cut to 16 bytes included.
    """
    assert shaCrypt(password, setting) == expected


@pytest.mark.parametrize(("setting", "password", "expected"), SPEC_VECTORS)
def test_verifyVectors(setting: bytes, password: bytes, expected: bytes) -> None:
    """
    A parsed hash accepts its password and nothing else.
    """
    parsed = parseSHACrypt(expected)
    assert parsed.verify(password)
    assert not parsed.verify(password + b"x")
    assert not parsed.verify(b"")


OPENSSL = shutil.which("openssl")


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize("variant", ["-5", "-6"])
@pytest.mark.parametrize(
    "password",
    ["x", "correct horse battery staple", "é" * 40, "p" * 130, "q" * 256],
)
def test_agreesWithOpenSSL(variant: str, password: str) -> None:
    """
    Hashes C{openssl passwd -5}/C{-6} writes (what admins make htpasswd
    lines with when C{htpasswd} is not installed) verify, with passwords
    shorter and longer than a digest.
    """
    assert OPENSSL is not None
    hashed = subprocess.run(
        [OPENSSL, "passwd", variant, "-salt", "Z7.salt/abc", "-stdin"],
        input=password.encode("utf-8"),
        capture_output=True,
        check=True,
    ).stdout.strip()
    assert shaCrypt(password.encode("utf-8"), hashed) == hashed
    assert parseSHACrypt(hashed).verify(password.encode("utf-8"))


def test_parse() -> None:
    """
    L{parseSHACrypt} reads the variant, rounds, salt and digest.
    """
    parsed = parseSHACrypt(SPEC_VECTORS[1][2])
    assert parsed.variant == b"5"
    assert parsed.rounds == 10000
    assert parsed.explicitRounds
    assert parsed.salt == b"saltstringsaltst"
    implicit = parseSHACrypt(SPEC_VECTORS[0][2])
    assert (implicit.rounds, implicit.explicitRounds) == (DEFAULT_ROUNDS, False)
    assert parseSHACrypt(b"$6$rounds=999999999$s$" + b"a" * 86).rounds == MAX_ROUNDS


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"$5$",
        b"$7$salt$" + b"a" * 43,
        b"$5$salt$" + b"a" * 42,
        b"$6$salt$" + b"a" * 43,
        b"$5$salt$" + b"!" * 43,
        b"$5$rounds=x$salt$" + b"a" * 43,
        b"$5$seventeen-bytes!!$" + b"a" * 43,
    ],
)
def test_parseRefuses(text: bytes) -> None:
    """
    Anything but a well-formed hash is a L{ValueError}.
    """
    with pytest.raises(ValueError, match="SHA-crypt"):
        parseSHACrypt(text)


def test_settingRefused() -> None:
    """
    L{shaCrypt} refuses a setting of another scheme.
    """
    with pytest.raises(ValueError, match="SHA-crypt setting"):
        shaCrypt(b"pw", b"$1$salt")


def test_longPasswordMemory() -> None:
    """
    Hashing a password costs memory linear in its length: steps 13 and 14
    (the password once per byte of it) are fed to the hash piece by piece,
    never built as one string of C{len(password) ** 2} bytes (16 MiB for
    4096 bytes, 2.3 GB for the 48 KB an HTTP/2 header can carry).
    """
    password = b"p" * 4096
    tracemalloc.start()
    try:
        shaCrypt(password, b"$5$rounds=1000$salt")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
