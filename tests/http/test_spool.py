"""
Tests for L{twisted_cgiserve._http.spool}: request bodies in memory, then in an
anonymous temporary file, and a disk that cannot hold them refused with one
log line and a complete 507, not a traceback and a silent disconnect.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.web.resource import Resource

from twisted_cgiserve._http.site import CGIServeSite
from twisted_cgiserve._http.spool import BodySpool, SpoolError


class _Disk:
    """
    A disk with C{room} bytes free, for the files C{tempfile.TemporaryFile}
    makes: writes take at most C{chunk} bytes at a time (as a real write
    may) and fail with C{error} once the disk is full.
    """

    def __init__(
        self, room: int, chunk: int = 1 << 30, error: int = errno.ENOSPC
    ) -> None:
        self.room = room
        self.chunk = chunk
        self.error = error
        self.files: list[_File] = []
        self.createError: int | None = None

    def temporaryFile(self, *args: object, **kw: object) -> _File:
        if self.createError is not None:
            raise OSError(self.createError, os.strerror(self.createError))
        f = _File(self)
        self.files.append(f)
        return f


class _File:
    def __init__(self, disk: _Disk) -> None:
        self.disk = disk
        self.data = bytearray()
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        assert not self.closed
        count = min(len(data), self.disk.chunk, self.disk.room)
        if not count:
            raise OSError(self.disk.error, os.strerror(self.disk.error))
        self.data += data[:count]
        self.disk.room -= count
        self.position = len(self.data)
        return count

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else len(self.data) + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.position + size
        data = bytes(self.data[self.position : end])
        self.position += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self.disk.room += len(self.data)
        self.closed = True


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Disk]:
    d = _Disk(room=10 * 1024 * 1024)
    monkeypatch.setattr(tempfile, "TemporaryFile", d.temporaryFile)
    yield d


def test_smallBodyInMemory(disk: _Disk) -> None:
    """
    A body within the in-memory size makes no file.
    """
    spool = BodySpool(inMemory=100)
    spool.write(b"x" * 60)
    spool.write(b"y" * 40)
    spool.seek(0)
    assert spool.read() == b"x" * 60 + b"y" * 40
    assert disk.files == []


def test_largeBodyInFile(disk: _Disk) -> None:
    """
    Past the in-memory size the body moves to a temporary file, whole, and
    reads back from it; short writes are completed.
    """
    disk.chunk = 7
    spool = BodySpool(inMemory=100)
    spool.write(b"a" * 80)
    spool.write(b"b" * 80)
    spool.write(b"c" * 10)
    assert len(disk.files) == 1
    spool.seek(0, os.SEEK_END)
    assert spool.tell() == 170
    spool.seek(0)
    assert spool.read(100) + spool.read() == b"a" * 80 + b"b" * 80 + b"c" * 10
    spool.close()
    assert spool.closed and disk.files[0].closed


@pytest.mark.parametrize(
    "error, code",
    [
        (errno.ENOSPC, 507),
        (errno.EDQUOT, 507),
        (errno.EFBIG, 507),
        (errno.EIO, 500),
    ],
)
def test_diskFullReleasesAndRaises(disk: _Disk, error: int, code: int) -> None:
    """
    A write the disk cannot take raises L{SpoolError} with the status to
    answer, and the file (and the space it held) is released at once; the
    rest of the body is ignored and cannot be read.
    """
    disk.room = 150
    disk.error = error
    spool = BodySpool(inMemory=100)
    spool.write(b"a" * 80)
    with pytest.raises(SpoolError) as raised:
        spool.write(b"b" * 80)
    assert raised.value.code == code
    assert raised.value.error.errno == error
    assert disk.files[0].closed and disk.room == 150
    assert spool.closed
    assert spool.write(b"more") == 4
    with pytest.raises(ValueError):
        spool.seek(0)


@pytest.mark.parametrize("error, code", [(errno.ENOSPC, 507), (errno.EMFILE, 500)])
def test_fileCannotBeCreated(disk: _Disk, error: int, code: int) -> None:
    """
    A temporary file that cannot be made (no inode left, no descriptor
    left) is a L{SpoolError} too.
    """
    disk.createError = error
    spool = BodySpool(inMemory=10)
    with pytest.raises(SpoolError) as raised:
        spool.write(b"x" * 11)
    assert raised.value.code == code
    assert spool.closed


def test_reportIsOneLine() -> None:
    """
    The report is one warning naming the client, the method and the URL
    (escaped, so that it cannot forge log lines) and the error.
    """
    client = IPv4Address("TCP", "192.0.2.9", 4321)
    error = SpoolError(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with capturedLogs() as events:
        assert error.report(client, b'POST /cgi-bin/up.sh?a"\x1b') == 507
    [event] = events
    assert event["log_level"] == LogLevel.warn
    text = formatEvent(event)
    assert text == (
        '507 for 192.0.2.9: the body of POST /cgi-bin/up.sh?a\\"\\x1b cannot be '
        "stored: No space left on device"
    )


# The whole path through the site, on an in-memory connection.


class _Leaf(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[Any] = []

    def render(self, request: Any) -> bytes:
        self.rendered.append(request)
        return b"ok"


def _connect(site: CGIServeSite) -> tuple[Any, StringTransport]:
    address = IPv4Address("TCP", "192.0.2.4", 5555)
    transport = StringTransport(peerAddress=address)
    protocol = site.buildProtocol(address)
    assert protocol is not None
    protocol.makeConnection(transport)
    return protocol, transport


@pytest.mark.parametrize("chunked", [False, True])
def test_siteAnswers507(disk: _Disk, chunked: bool) -> None:
    """
    On HTTP/1.1, a body the disk cannot hold gets a complete 507 error page
    as soon as it fills the disk, the connection is closed, the rest of the
    body is not read, nothing stays on disk, and one line is logged.
    """
    disk.room = 512 * 1024
    leaf = _Leaf()
    site = CGIServeSite(leaf, reactor=MemoryReactorClock())
    protocol, transport = _connect(site)
    size = 3 * 1024 * 1024
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    head = b"POST /up HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % framing
    piece = b"z" * 65536
    with capturedLogs() as events:
        protocol.dataReceived(head)
        for _ in range(size // len(piece)):
            data = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            protocol.dataReceived(data)
        protocol.dataReceived(b"0\r\n\r\n" if chunked else b"")
    response = transport.value()
    assert response.startswith(b"HTTP/1.1 507 "), response[:200]
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(body) in head.lower()
    assert b"Error code: 507" in body
    assert transport.disconnecting
    assert leaf.rendered == []
    assert [f.closed for f in disk.files] == [True]
    assert disk.room == 512 * 1024
    warnings = [e for e in events if e["log_level"] >= LogLevel.warn]
    assert [formatEvent(e) for e in warnings] == [
        "507 for 192.0.2.4: the body of POST /up cannot be stored: "
        "No space left on device"
    ]
