"""
The one raw HTTP/1.1 client of the end-to-end tests: exact bytes out, the
response back as it came off the wire, framing included (chunked bodies,
early closes, keep-alive and pipelining), for what no HTTP library lets a
test send or see. Tests that need a bare socket use L{Conn.sock}.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TIMEOUT",
    "Conn",
    "Response",
    "chunked",
    "exchange",
    "fetch",
    "parseResponses",
    "refused",
    "request",
    "statusOf",
]

TIMEOUT = 10.0


@dataclass
class Response:
    """
    One response as it came off the wire.

    @ivar complete: Whether its framing said the body ended (the final
        chunk, or all Content-Length bytes); L{False} when the connection
        closed first.
    """

    version: bytes
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    head: bytes = b""
    body: bytes = b""
    chunked: bool = False
    complete: bool = True

    def header(self, name: str) -> str | None:
        values = self.headerValues(name)
        return values[-1] if values else None

    def headerValues(self, name: str) -> list[str]:
        wanted = name.lower().encode("ascii")
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == wanted]

    def headerDict(self, skip: tuple[str, ...] = ()) -> dict[str, str]:
        """
        All headers, names lower-cased, minus C{skip}.
        """
        return {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in self.headers
            if k.decode("latin-1").lower() not in skip
        }

    def names(self) -> set[str]:
        return {k.decode("latin-1").lower() for k, _ in self.headers}

    def json(self) -> dict[str, Any]:
        assert self.status == 200, (self.status, self.reason, self.body[:500])
        result: dict[str, Any] = json.loads(self.body)
        return result


class Conn:
    """
    A client connection that reads one response at a time.
    """

    def __init__(
        self,
        port: int | Path,
        timeout: float | None = TIMEOUT,
        bind: bool = False,
        *,
        host: str = "127.0.0.1",
        receiveBuffer: int | None = None,
    ):
        """
        Connect to C{host}:C{port}, or to the UNIX socket at C{port} if it
        is a path.

        @param bind: Bind an ephemeral local port first (so the test knows
            it before connecting).
        @param receiveBuffer: A small C{SO_RCVBUF}, for a client that reads
            nothing and must fill its window quickly.
        """
        address: str | tuple[str, int]
        if isinstance(port, Path):
            family, address = socket.AF_UNIX, str(port)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            address = (host, port)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if receiveBuffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        if bind:
            self.sock.bind((host, 0))
        try:
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self.buffer = bytearray()
        self.eof = False

    @classmethod
    def fromBytes(cls, data: bytes) -> Conn:
        """
        A closed connection that received C{data}, to parse responses
        already read off the wire.
        """
        conn = cls.__new__(cls)
        conn.buffer = bytearray(data)
        conn.eof = True
        return conn

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """
        Close with a reset (C{SO_LINGER} 0) rather than a FIN, so the
        server sees the client gone at once.
        """
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    @property
    def localPort(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, size: int = 65536) -> bytes:
        """
        What one read returns: whatever bytes are buffered or arrive next
        (C{b""} at end of file).
        """
        if self.buffer:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
            return data
        return self.sock.recv(size)

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            self.eof = True
        self.buffer += chunk
        return bool(chunk)

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        end = self.buffer.index(b"\r\n")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n and self._fill():
            pass
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def readAll(self) -> bytes:
        """
        Everything until the server closes the connection.
        """
        while self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def readUntilClosed(self, wait: float) -> tuple[bytes, bool]:
        """
        Everything the server sends within C{wait} seconds, and whether it
        closed the connection in that time.
        """
        deadline = time.monotonic() + wait
        chunks = [bytes(self.buffer)]
        self.buffer.clear()
        closed = self.eof
        while not closed and (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = self.eof = True
                break
            chunks.append(chunk)
        return b"".join(chunks), closed

    def readResponse(self, method: str = "GET") -> Response:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AssertionError(
                    f"connection closed before a complete response head: "
                    f"{bytes(self.buffer[:300])!r}"
                )
        end = self.buffer.index(b"\r\n\r\n")
        head = bytes(self.buffer[: end + 4])
        del self.buffer[: end + 4]
        lines = head[:-4].split(b"\r\n")
        version, status, reason = [*lines[0].split(b" ", 2), b""][:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
        r = Response(version, int(status), reason, headers, head)
        if method == "HEAD" or r.status in (204, 304) or r.status < 200:
            return r
        if (r.header("Transfer-Encoding") or "").lower() == "chunked":
            r.chunked = True
            r.complete = False
            body = bytearray()
            while True:
                sizeLine = self._line()
                if sizeLine is None:
                    break
                size = int(sizeLine.split(b";")[0], 16)
                if size == 0:
                    while (trailer := self._line()) not in (None, b""):
                        pass
                    r.complete = trailer == b""
                    break
                data = self._take(size)
                body += data
                if len(data) < size or self._take(2) != b"\r\n":
                    break
            r.body = bytes(body)
        elif r.header("Content-Length") is not None:
            n = int(r.header("Content-Length") or 0)
            r.body = self._take(n)
            r.complete = len(r.body) == n
        else:
            r.body = self.readAll()
        return r

    def closedByPeer(self, wait: float = 2.0) -> bool:
        """
        Whether the server closes the connection within C{wait} seconds
        with nothing more to send.
        """
        if self.buffer:
            return False
        if self.eof:
            return True
        previous = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(previous)


def request(
    port: int,
    target: str | bytes,
    method: str = "GET",
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    body: bytes | None = None,
    *,
    version: str = "HTTP/1.1",
    close: bool = True,
    host: str | None = None,
) -> bytes:
    """
    The bytes of one request, the target exactly as given; C{headers} (a
    mapping, or pairs that may repeat names) are sent in order.
    """
    if isinstance(target, str):
        target = target.encode("utf-8")
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    lines = [b"%s %s %s" % (method.encode(), target, version.encode())]
    lines.append(f"Host: {host or f'127.0.0.1:{port}'}".encode())
    for name, value in headers or []:
        lines.append(f"{name}: {value}".encode("latin-1"))
    names = {name.lower() for name, _ in headers or []}
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def fetch(port: int, target: str | bytes, method: str = "GET", **kw: Any) -> Response:
    """
    One request on a fresh connection, and its response.
    """
    with Conn(port) as conn:
        conn.send(request(port, target, method, **kw))
        return conn.readResponse(method)


def exchange(
    port: int | Path, data: bytes, host: str = "127.0.0.1", timeout: float = 5
) -> bytes:
    """
    Send C{data} as is and return everything the server sends until it
    closes the connection or goes quiet for C{timeout} seconds.
    """
    with Conn(port, timeout, host=host) as conn:
        conn.send(data)
        chunks = []
        try:
            while chunk := conn.recv():
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def statusOf(response: bytes) -> int:
    """
    The status code of a raw response.
    """
    return int(response.split(b" ", 2)[1])


def parseResponses(data: bytes, count: int, method: str = "GET") -> list[Response]:
    """
    The first C{count} responses in C{data}, all the bytes a connection
    received.
    """
    conn = Conn.fromBytes(data)
    return [conn.readResponse(method) for _ in range(count)]


def chunked(data: bytes, size: int, *, last: bool = False) -> bytes:
    """
    C{data} in the chunked transfer coding, C{size} bytes a chunk; with the
    terminating zero-size chunk if C{last}.
    """
    body = b"".join(
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    )
    return body + (b"0\r\n\r\n" if last else b"")


def refused(port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> bool:
    """
    Whether a new connection to C{host}:C{port} is refused (nothing
    listens there); L{False} when it connects or fails otherwise.
    """
    try:
        Conn(port, timeout, host=host).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False
