# -*- test-case-name: tests.cgi.test_spawnerwire -*-
"""
The messages between the server and its CGI spawner.

One message is one C{SOCK_SEQPACKET} packet on a Unix socket: the kernel
keeps the boundaries, so there is no framing to get wrong, and the three
file descriptors of a script travel with its C{spawn} request as
C{SCM_RIGHTS}. A packet holds one JSON object (ASCII: lone surrogates of
undecodable bytes in an environment are escaped, and come back as they
went). The spawner checks every message it receives: a peer it let in
could still be buggy, and nothing it sends may crash the spawner.

From the server:

 - C{spawn}: C{id}, C{executable}, C{argv}, C{environment}, C{directory},
   with the child's stdin, stdout and stderr attached. Answered, as soon
   as the script has started (answers to several requests may come in
   another order than the requests), by C{spawned} (C{id}, C{pid}),
   C{failed} (C{id}, C{errno}, C{message}: the exec's error) or
   C{refused} (C{id}, C{message}: the server-wide process cap).
 - C{terminate}: C{pid}, C{grace}: end that group (C{SIGTERM}, then
   C{SIGKILL} after the grace).
 - C{signal}: C{pid}, C{signal}: signal that group while it is anchored.

From the spawner, for a script it started for this connection:

 - C{exited}: C{pid}, C{status} (negative: the signal that killed it).
 - C{ended}: C{pid}, C{killed}: nothing of its group is left, its leader
   is reaped, and the PID means nothing any more.

The spawner sends what it has to say at the end of its reactor's turn, in
one packet for each connection (L{encodeBatch}): a JSON array of messages
when there are several (answers, exits and ends of scripts that fell in
the same turn; a group scan ends many at once). Each packet wakes the
server up, and on a machine whose cores are all busy such a wake-up costs
as much as the message itself; under load most packets carry several
messages. A packet holding one message is that message's object, so the
server reads both shapes (L{decodeAll}).
"""

from __future__ import annotations

import array
import json
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BATCH_BYTES",
    "ENVIRONMENT_VARIABLE",
    "MAX_MESSAGE",
    "SpawnRequest",
    "WireError",
    "decode",
    "decodeAll",
    "encode",
    "encodeBatch",
    "graceOf",
    "parseSpawn",
    "pidOf",
    "receivePacket",
    "requireInt",
    "sendPacket",
]

# Where a worker process finds the spawner's abstract socket address.
ENVIRONMENT_VARIABLE = "CGISERVE_SPAWNER"

# The largest packet either side sends or accepts: an environment of a few
# hundred long headers fits; the kernel refuses larger ones (EMSGSIZE),
# which the server reports as the exec would (E2BIG).
MAX_MESSAGE = 4 * 1024 * 1024


class WireError(ValueError):
    """
    A packet that is not a well-formed message.
    """


def sendPacket(sock: socket.socket, packet: bytes, fds: Sequence[int] = ()) -> None:
    """
    Send one packet, with C{fds} attached (the caller keeps its copies).

    @raise BlockingIOError: The socket's buffer is full (non-blocking).
    @raise OSError: The peer is gone, or the packet is too large.
    """
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        sock.sendmsg([packet], ancillary)
    else:
        sock.send(packet)


# Room for the three descriptors of a spawn request, and a few more a
# broken peer may send (they are closed, never leaked).
_ANCILLARY = socket.CMSG_SPACE(16 * array.array("i").itemsize)


def receivePacket(
    sock: socket.socket, buffer: bytearray
) -> tuple[bytes, list[int]] | None:
    """
    Receive one packet into C{buffer} (its size bounds the packet), and the
    descriptors attached to it (the caller owns them).

    @return: The packet and its descriptors; L{None} when the peer has
        closed the connection.
    @raise BlockingIOError: Nothing to receive yet (non-blocking).
    @raise WireError: The packet or its descriptors did not fit (whatever
        did arrive is closed).
    """
    size, ancillary, flags, _ = sock.recvmsg_into([buffer], _ANCILLARY)
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % array.array("i").itemsize
            fds.extend(array.array("i", data[:usable]))
    for fd in fds:
        # Received descriptors are inheritable: never into another child.
        os.set_inheritable(fd, False)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise WireError("packet too large")
    if size == 0 and not fds:
        return None
    return bytes(buffer[:size]), fds


# One encoder for every message: json.dumps makes a new one per call when
# given separators.
_encoder = json.JSONEncoder(separators=(",", ":"))


def encode(message: dict[str, Any]) -> bytes:
    """
    One message as the bytes of its packet.
    """
    return _encoder.encode(message).encode("ascii")


# The most of a batch's messages in one packet: far below what the server
# receives at once (64 KiB), whatever the messages' lengths (a message from
# the spawner is a few hundred bytes at most).
BATCH_BYTES = 16 * 1024


def encodeBatch(messages: Sequence[dict[str, Any]]) -> list[bytes]:
    """
    C{messages}, in order, as few packets as fit L{BATCH_BYTES} each: one
    message alone is its object, several a JSON array.
    """
    packets: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for message in messages:
        part = encode(message)
        if parts and size + len(part) > BATCH_BYTES:
            packets.append(_joined(parts))
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
    if parts:
        packets.append(_joined(parts))
    return packets


def _joined(parts: list[bytes]) -> bytes:
    if len(parts) == 1:
        return parts[0]
    return b"[" + b",".join(parts) + b"]"


def decodeAll(packet: bytes) -> list[dict[str, Any]]:
    """
    The messages in C{packet}: one object, or an array of them (see
    L{encodeBatch}).

    @raise WireError: It is neither, or an element is not a message (none
        of the packet's messages is returned then).
    """
    try:
        value = json.loads(packet)
    except (ValueError, RecursionError) as e:
        raise WireError(f"not JSON: {e}") from None
    messages = value if isinstance(value, list) else [value]
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise WireError("not a message")
    return messages


def decode(packet: bytes) -> dict[str, Any]:
    """
    The message in C{packet}.

    @raise WireError: It is not a JSON object with a string C{op}.
    """
    try:
        message = json.loads(packet)
    except (ValueError, RecursionError) as e:
        raise WireError(f"not JSON: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise WireError("not a message")
    return message


def requireInt(message: dict[str, Any], name: str) -> int:
    """
    The integer field C{name} of C{message}.

    @raise WireError: It is missing or not an integer.
    """
    value = message.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(f"{name!r} must be an integer")
    return value


def pidOf(message: dict[str, Any]) -> int:
    """
    The positive C{pid} field of C{message}.

    @raise WireError: It is missing or not a positive integer.
    """
    pid = requireInt(message, "pid")
    if pid <= 0:
        raise WireError("'pid' must be positive")
    return pid


def graceOf(message: dict[str, Any]) -> float:
    """
    The C{grace} field of C{message}: finite seconds, at least 0.

    @raise WireError: It is missing or not such a number.
    """
    grace = message.get("grace")
    if (
        not isinstance(grace, int | float)
        or isinstance(grace, bool)
        or not math.isfinite(grace)
        or grace < 0
    ):
        raise WireError("'grace' must be a number of seconds")
    return float(grace)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _noNul(*texts: str) -> bool:
    return all("\0" not in text for text in texts)


@dataclass(frozen=True)
class SpawnRequest:
    """
    A checked C{spawn} message.
    """

    id: int
    executable: str
    argv: list[str]
    environment: dict[str, str]
    directory: str

    def message(self) -> dict[str, Any]:
        """
        The message that carries this request.
        """
        return {
            "op": "spawn",
            "id": self.id,
            "executable": self.executable,
            "argv": self.argv,
            "environment": self.environment,
            "directory": self.directory,
        }


def parseSpawn(message: dict[str, Any]) -> SpawnRequest:
    """
    The C{spawn} request C{message} holds.

    @raise WireError: A field is missing or malformed (a NUL where exec
        cannot take one, an empty argv).
    """
    ident = requireInt(message, "id")
    executable = message.get("executable")
    argv = message.get("argv")
    environment = message.get("environment")
    directory = message.get("directory")
    if not isinstance(executable, str) or not isinstance(directory, str):
        raise WireError("'executable' and 'directory' must be strings")
    if not _strings(argv) or not argv:
        raise WireError("'argv' must be a non-empty list of strings")
    if not isinstance(environment, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k
        for k, v in environment.items()
    ):
        raise WireError("'environment' must map names to strings")
    if not _noNul(executable, directory, *argv, *environment, *environment.values()):
        raise WireError("NUL in a spawn request")
    return SpawnRequest(ident, executable, list(argv), dict(environment), directory)
