"""
Tests for L{twisted_cgiserve._cgi.spawnerwire}: the messages between the
server and its CGI spawner, checked field by field, and packets with
descriptors over a real C{SOCK_SEQPACKET} socket pair.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from twisted_cgiserve._cgi.spawnerwire import (
    BATCH_BYTES,
    SpawnRequest,
    WireError,
    decode,
    decodeAll,
    encode,
    encodeBatch,
    graceOf,
    parseSpawn,
    pidOf,
    receivePacket,
    requireInt,
    sendPacket,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def spawnMessage(**changes: object) -> dict[str, object]:
    message: dict[str, object] = SpawnRequest(
        7, "/bin/sh", ["sh", "-c", "true"], {"A": "1", "PATH": "/bin"}, "/tmp"
    ).message()
    message.update(changes)
    return message


# --------------------------------------------------------------------------
# Encoding


def test_roundTrip() -> None:
    """
    A message comes back as it went, lone surrogates (undecodable bytes of
    an environment) included, and its packet is ASCII.
    """
    message = {"op": "x", "text": "caf\xe9 \udcff", "n": [1, 2]}
    packet = encode(message)
    packet.decode("ascii")
    assert decode(packet) == message


@pytest.mark.parametrize(
    "packet", [b"", b"not json", b"[1, 2]", b'{"op": 3}', b'{"no": "op"}', b"\xff"]
)
def test_decodeRefusesNonMessages(packet: bytes) -> None:
    with pytest.raises(WireError):
        decode(packet)


def test_decodeRefusesDeepNesting() -> None:
    """
    A packet nested past the parser's recursion limit is a L{WireError},
    not a crash.
    """
    with pytest.raises(WireError):
        decode(b"[" * 100_000 + b"]" * 100_000)


def test_batchOfOneIsItsMessage() -> None:
    """
    One message alone goes as its own object, which L{decode} reads too.
    """
    message = {"op": "exited", "pid": 3, "status": 0}
    assert encodeBatch([message]) == [encode(message)]
    assert decodeAll(encode(message)) == [message]
    assert encodeBatch([]) == []


def test_batchIsOnePacketInOrder() -> None:
    """
    Several messages go in one packet, a JSON array, and come back in
    order.
    """
    messages = [{"op": "ended", "pid": n, "killed": False} for n in range(50)]
    [packet] = encodeBatch(messages)
    assert packet.startswith(b"[")
    assert decodeAll(packet) == messages


def test_largeBatchIsSplit() -> None:
    """
    A batch larger than L{BATCH_BYTES} goes in several packets, none
    larger, every message once and in order.
    """
    messages = [{"op": "note", "n": n, "pad": "x" * 100} for n in range(1000)]
    packets = encodeBatch(messages)
    assert len(packets) > 1
    assert all(len(packet) <= BATCH_BYTES for packet in packets)
    assert [m for packet in packets for m in decodeAll(packet)] == messages


@pytest.mark.parametrize(
    "packet",
    [b"", b"not json", b"[1, 2]", b'[{"op": "x"}, {"no": "op"}]', b"3", b"\xff"],
)
def test_decodeAllRefusesNonMessages(packet: bytes) -> None:
    with pytest.raises(WireError):
        decodeAll(packet)


def test_decodeAllRefusesDeepNesting() -> None:
    with pytest.raises(WireError):
        decodeAll(b"[" * 100_000 + b"]" * 100_000)


# --------------------------------------------------------------------------
# Fields


def test_requireInt() -> None:
    assert requireInt({"n": 3}, "n") == 3
    for value in (None, "3", 3.0, True):
        with pytest.raises(WireError):
            requireInt({"n": value}, "n")


def test_pidOf() -> None:
    assert pidOf({"pid": 12}) == 12
    for value in (0, -1, "12"):
        with pytest.raises(WireError):
            pidOf({"pid": value})


def test_graceOf() -> None:
    assert graceOf({"grace": 3}) == 3.0
    assert graceOf({"grace": 0.5}) == 0.5
    for value in (-1, float("inf"), float("nan"), "3", True, None):
        with pytest.raises(WireError):
            graceOf({"grace": value})


def test_parseSpawn() -> None:
    """
    A well-formed request comes back as the L{SpawnRequest} it was made
    from.
    """
    request = parseSpawn(spawnMessage())
    assert request == SpawnRequest(
        7, "/bin/sh", ["sh", "-c", "true"], {"A": "1", "PATH": "/bin"}, "/tmp"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "7"},
        {"executable": None},
        {"directory": 3},
        {"argv": []},
        {"argv": ["sh", 3]},
        {"argv": "sh"},
        {"environment": []},
        {"environment": {"A": 1}},
        {"environment": {"": "x"}},
        {"environment": {"A=B": "x"}},
        {"environment": {"A": "x\0y"}},
        {"argv": ["sh", "a\0b"]},
        {"executable": "/bin/sh\0"},
        {"directory": "/tmp\0"},
    ],
)
def test_parseSpawnRefuses(changes: dict[str, object]) -> None:
    """
    A field missing, of the wrong type, or with a NUL exec cannot take, is
    a L{WireError}.
    """
    with pytest.raises(WireError):
        parseSpawn(spawnMessage(**changes))


# --------------------------------------------------------------------------
# Packets


def test_packetWithDescriptors(pair: tuple[socket.socket, socket.socket]) -> None:
    """
    Descriptors sent with a packet arrive with it, as new descriptors of
    the same files, not inheritable.
    """
    a, b = pair
    r, w = os.pipe()
    try:
        sendPacket(a, b"hello", [r, w])
        received = receivePacket(b, bytearray(64))
        assert received is not None
        packet, fds = received
        assert packet == b"hello"
        assert len(fds) == 2
        assert all(not os.get_inheritable(fd) for fd in fds)
        os.write(fds[1], b"x")
        assert os.read(r, 1) == b"x"
        for fd in fds:
            os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def test_packetWithoutDescriptors(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sendPacket(a, b"plain")
    assert receivePacket(b, bytearray(64)) == (b"plain", [])


def test_nothingYet(pair: tuple[socket.socket, socket.socket]) -> None:
    _, b = pair
    with pytest.raises(BlockingIOError):
        receivePacket(b, bytearray(64))


def test_peerClosed(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.close()
    assert receivePacket(b, bytearray(64)) is None


def test_tooLargeClosesDescriptors(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """
    A packet larger than the buffer is a L{WireError}, and the descriptors
    that came with it are closed, never leaked.
    """
    a, b = pair
    r, w = os.pipe()
    try:
        before = set(os.listdir("/proc/self/fd"))
        sendPacket(a, b"x" * 100, [r])
        with pytest.raises(WireError):
            receivePacket(b, bytearray(10))
        assert set(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(r)
        os.close(w)
