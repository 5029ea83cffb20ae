# -*- test-case-name: tests.http.test_htpasswd -*-
"""
Apache's htpasswd file, as C{htpasswd -B} (bcrypt) and C{htpasswd -5}/C{-2}
(SHA-crypt) write it: one C{user:hash} per line; blank lines and lines
starting with C{#} are skipped, as Apache's C{mod_authn_file} does.

Only hashes that resist an offline attack on a leaked file are accepted:
bcrypt (C{$2y$}, C{$2b$}, C{$2a$}) and SHA-crypt (C{$5$}, C{$6$}). The
weaker kinds C{htpasswd} can still write are refused, with the line and
how to re-create it: MD5-crypt (C{$apr1$}, C{$1$}; C{htpasswd}'s default
without C{-B}, cracked at billions of guesses a second on one GPU),
unsalted SHA-1 (C{{SHA}}), DES crypt (only the first 8 characters count)
and plain text.
A warning would let such a file serve on indefinitely; a start-up refusal
is seen once, by the admin, and fixed with one C{htpasswd -B} per user.

The file is read as bytes: user names are compared as the bytes a client
sends, whatever their encoding, and passwords are hashed as sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import bcrypt

from twisted_cgiserve._http.shacrypt import SHACryptHash, parseSHACrypt

__all__ = [
    "MAX_SHA_ROUNDS",
    "HtpasswdError",
    "PasswordHash",
    "parseHash",
    "readHtpasswd",
    "workFactor",
]

# SHA-crypt rounds above this are refused: in pure Python a million rounds
# take about half a second of a worker thread, holding the GIL.
MAX_SHA_ROUNDS = 1_000_000

# bcrypt hashes only the first 72 bytes of a password; the bcrypt package
# refuses longer ones rather than cut them, Apache's htpasswd cuts them.
_BCRYPT_LIMIT = 72

_BCRYPT = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

# What the refused kinds look like, with the name the message gives them.
_WEAK = (
    (re.compile(rb"\$apr1\$.*"), "the MD5-crypt ($apr1$)"),
    (re.compile(rb"\$1\$.*"), "the MD5-crypt ($1$)"),
    (re.compile(rb"\{SHA\}.*"), "the unsalted SHA-1 ({SHA})"),
    (re.compile(rb"[./0-9A-Za-z]{13}"), "the DES crypt"),
)

# A user name: no control characters (they would end up in the access log
# and the CGI environment), no colon (it separates the password).
_USER = re.compile(rb"[^\x00-\x1f\x7f:]+")


class HtpasswdError(Exception):
    """
    The htpasswd file cannot be used; the message names the file and, where
    there is one, the line.
    """


class PasswordHash(Protocol):
    """
    A stored password hash.
    """

    def verify(self, password: bytes) -> bool:
        """
        Whether C{password} matches, in constant time; slow by design.
        """


@dataclass(frozen=True)
class _BcryptHash:
    """
    A bcrypt hash, checked by the pyca C{bcrypt} package.
    """

    hashed: bytes

    def verify(self, password: bytes) -> bool:
        # checkpw compares in constant time.
        return bcrypt.checkpw(password[:_BCRYPT_LIMIT], self.hashed)


# The CPU time of one bcrypt round at cost 0 (2 ** cost of them make a
# check), in units of one SHA-crypt round in pure Python: measured on
# x86-64 at about 60 to 120 microseconds against 0.6 to 1.2.
_BCRYPT_ROUND = 100.0


def workFactor(hashed: PasswordHash) -> float:
    """
    How long checking a password against C{hashed} takes, in units of one
    pure-Python SHA-crypt round: enough to tell which of a file's hashes is
    the slowest to check, across kinds and costs.
    """
    if isinstance(hashed, SHACryptHash):
        return float(hashed.rounds)
    if isinstance(hashed, _BcryptHash):
        return _BCRYPT_ROUND * (1 << int(hashed.hashed[4:6]))
    return 0.0


def parseHash(text: bytes) -> PasswordHash:
    """
    The hash of one htpasswd line.

    @raise ValueError: It is not an accepted kind; the message says what it
        is and what to do.
    """
    if _BCRYPT.fullmatch(text):
        return _BcryptHash(text)
    if text.startswith((b"$5$", b"$6$")):
        try:
            parsed = parseSHACrypt(text)
        except ValueError:
            raise ValueError("the SHA-crypt hash is malformed") from None
        if parsed.rounds > MAX_SHA_ROUNDS:
            raise ValueError(
                f"a SHA-crypt hash of {parsed.rounds} rounds is too slow to "
                f"check (at most {MAX_SHA_ROUNDS})"
            )
        return parsed
    if text.startswith(b"$2"):
        raise ValueError("the bcrypt hash is malformed")
    for pattern, name in _WEAK:
        if pattern.fullmatch(text):
            raise ValueError(
                f"{name} hash is too weak to accept; re-create it with "
                "'htpasswd -B' (bcrypt)"
            )
    raise ValueError(
        "the password is neither a bcrypt nor a SHA-crypt hash (plain text, or "
        "an unknown kind); create it with 'htpasswd -B' (bcrypt)"
    )


def readHtpasswd(path: str) -> dict[bytes, PasswordHash]:
    """
    Read and check the whole file.

    @return: Each user's hash.
    @raise HtpasswdError: The file cannot be read, or a line is malformed,
        refused or names a user twice; the message names the first such
        line.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise HtpasswdError(
            f"cannot read --auth-file {path!r}: {e.strerror or e}"
        ) from None
    users: dict[bytes, PasswordHash] = {}
    lines: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), 1):

        def refuse(why: str, number: int = number) -> HtpasswdError:
            return HtpasswdError(f"--auth-file {path!r}, line {number}: {why}")

        if not line.strip() or line.startswith(b"#"):
            continue
        user, colon, hashed = line.partition(b":")
        if not colon:
            raise refuse("not 'user:hash'")
        if not _USER.fullmatch(user) or user != user.strip():
            raise refuse(
                "the user name is empty, or has spaces around it or control characters"
            )
        name = repr(user.decode("utf-8", "replace"))
        if user in users:
            raise refuse(f"user {name} is already on line {lines[user]}")
        try:
            users[user] = parseHash(hashed.strip())
        except ValueError as e:
            raise refuse(f"user {name}: {e}") from None
        lines[user] = number
    return users
