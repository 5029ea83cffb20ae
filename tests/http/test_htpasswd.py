"""
Tests for L{twisted_cgiserve._http.htpasswd}: which hashes are accepted,
and the one-line refusals naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest

from twisted_cgiserve._http.htpasswd import (
    MAX_SHA_ROUNDS,
    HtpasswdError,
    parseHash,
    readHtpasswd,
    workFactor,
)
from twisted_cgiserve._http.shacrypt import shaCrypt


def bcryptHash(password: bytes, prefix: bytes = b"$2y$") -> bytes:
    """
    A cheap bcrypt hash, as C{htpasswd -B -C 4} writes it.
    """
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(4))
    return prefix + hashed[4:]


@pytest.mark.parametrize("prefix", [b"$2y$", b"$2b$", b"$2a$"])
def test_bcrypt(prefix: bytes) -> None:
    """
    bcrypt hashes of each prefix Apache and others write are accepted and
    check their password.
    """
    stored = parseHash(bcryptHash(b"secret", prefix))
    assert stored.verify(b"secret")
    assert not stored.verify(b"Secret")


def test_bcryptLongPassword() -> None:
    """
    bcrypt counts the first 72 bytes of a password, as Apache's does: a
    longer one is cut rather than refused.
    """
    stored = parseHash(bcryptHash(b"a" * 72))
    assert stored.verify(b"a" * 100)
    assert not stored.verify(b"a" * 71)


@pytest.mark.parametrize("variant", [b"5", b"6"])
def test_shaCrypt(variant: bytes) -> None:
    """
    SHA-crypt hashes are accepted.
    """
    stored = parseHash(shaCrypt(b"secret", b"$" + variant + b"$saltsalt"))
    assert stored.verify(b"secret")
    assert not stored.verify(b"secreT")


def test_shaCryptTooManyRounds() -> None:
    """
    A SHA-crypt hash too slow to check in pure Python is refused.
    """
    text = b"$6$rounds=%d$salt$" % (MAX_SHA_ROUNDS + 1,) + b"a" * 86
    with pytest.raises(ValueError, match="too slow"):
        parseHash(text)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (b"$apr1$abcdefgh$0123456789abcdefghijkl", r"MD5-crypt \(\$apr1\$\)"),
        (b"$1$abcdefgh$0123456789abcdefghijkl", r"MD5-crypt \(\$1\$\)"),
        (b"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", r"SHA-1 \(\{SHA\}\)"),
        (b"abJnggxhB/yWI", "DES crypt"),
        (b"plain password", "neither a bcrypt nor a SHA-crypt"),
        (b"", "neither a bcrypt nor a SHA-crypt"),
        (b"$2x$10$" + b"a" * 53, "bcrypt hash is malformed"),
        (b"$2y$10$short", "bcrypt hash is malformed"),
        (b"$6$salt$short", "SHA-crypt hash is malformed"),
    ],
)
def test_refused(text: bytes, what: str) -> None:
    """
    Weak and malformed hashes are refused, saying what they are and, for
    the weak ones, how to replace them.
    """
    with pytest.raises(ValueError, match=what):
        parseHash(text)


def test_weakSaysHowToFix() -> None:
    with pytest.raises(ValueError, match="htpasswd -B"):
        parseHash(b"$apr1$abcdefgh$0123456789abcdefghijkl")


def write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "htpasswd"
    path.write_bytes(data)
    return str(path)


def test_readFile(tmp_path: Path) -> None:
    """
    Users are read by name, as bytes; blank lines, comments, CRLF line ends
    and spaces after the hash are fine.
    """
    path = write(
        tmp_path,
        b"# users\r\n\r\nalice:"
        + bcryptHash(b"a")
        + b"\r\n   \n"
        + "jörg".encode()
        + b":"
        + shaCrypt(b"j", b"$5$x")
        + b"  \n",
    )
    users = readHtpasswd(path)
    assert sorted(users) == [b"alice", "jörg".encode()]
    assert users[b"alice"].verify(b"a")
    assert users["jörg".encode()].verify(b"j")


def test_emptyFile(tmp_path: Path) -> None:
    assert readHtpasswd(write(tmp_path, b"")) == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"alice", "not 'user:hash'"),
        (b":" + shaCrypt(b"x", b"$5$x"), "user name is empty"),
        (b" alice:" + shaCrypt(b"x", b"$5$x"), "spaces around it"),
        (b"al\x1bice:" + shaCrypt(b"x", b"$5$x"), "control characters"),
        (b"alice:$apr1$abcdefgh$0123456789abcdefghijkl", "user 'alice': the MD5"),
        (b"bob:" + shaCrypt(b"x", b"$5$x"), "user 'bob' is already on line 2"),
    ],
)
def test_badLine(tmp_path: Path, line: bytes, message: str) -> None:
    """
    The first bad line ends reading with one line naming the file, the
    line number and what is wrong.
    """
    path = write(
        tmp_path, b"# header\nbob:" + shaCrypt(b"b", b"$5$y") + b"\n" + line + b"\n"
    )
    with pytest.raises(HtpasswdError) as raised:
        readHtpasswd(path)
    text = str(raised.value)
    assert text.startswith(f"--auth-file {path!r}, line 3: ")
    assert message in text
    assert "\n" not in text


def test_unreadable(tmp_path: Path) -> None:
    """
    A file that cannot be read is one line naming it and why.
    """
    path = str(tmp_path / "missing")
    with pytest.raises(HtpasswdError, match=r"cannot read --auth-file .*missing.*: No"):
        readHtpasswd(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(HtpasswdError, match="Is a directory"):
        readHtpasswd(str(tmp_path))


def test_workFactor() -> None:
    """
    L{workFactor} orders hashes by how long a check takes: bcrypt doubles
    with each cost step, SHA-crypt grows with its rounds, and bcrypt at
    cost 10 (about 60 ms) outweighs SHA-crypt's default 5000 rounds (a few).
    """

    def bcryptAt(cost: int) -> float:
        return workFactor(parseHash(b"$2b$%02d$" % (cost,) + b"." * 53))

    def shaAt(rounds: int) -> float:
        return workFactor(parseHash(shaCrypt(b"pw", b"$6$rounds=%d$s" % (rounds,))))

    assert bcryptAt(11) == 2 * bcryptAt(10)
    assert shaAt(10000) == 2 * shaAt(5000)
    assert bcryptAt(10) > shaAt(5000) > bcryptAt(4)
    assert bcryptAt(4) > shaAt(1000)
