"""
Helpers for rendering resources against in-memory requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

__all__ = [
    "StreamingRequest",
    "body",
    "header",
    "makeRequest",
    "render",
]


@dataclass
class _Site:
    """
    What a response's sender reads of its request's site.
    """

    reactor: MemoryReactorClock = field(default_factory=MemoryReactorClock)
    sendTimeout: float = 60.0


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:
        # A socket does not mind an unregistration too many.
        self.producer = None


class _Channel:
    """
    An HTTP/1.x connection, as far as cutting a response goes.
    """

    def __init__(self) -> None:
        self.transport = _Transport()


class StreamingRequest(DummyRequest):
    """
    A L{DummyRequest} whose consumer is a client the test drives: a push
    producer is registered and left alone (L{DummyRequest} would pull it in
    a loop), so the test pauses and resumes it as a slow or a fast client
    would; its site's clock is a L{MemoryReactorClock}, and its connection
    a L{StringTransport} that shows whether the response was cut.

    @ivar producer: The registered producer, or L{None}.
    """

    def __init__(
        self, uri: bytes = b"/", method: bytes = b"GET", bufferSize: int | None = None
    ) -> None:
        """
        @param bufferSize: Unsent bytes past which the client pauses the
            producer (as a full socket buffer does), until L{drain};
            L{None} for a client that keeps up.
        """
        super().__init__([])
        self.bufferSize = bufferSize
        self.unsent = 0
        self.uri = uri
        self.method = method
        self.site = _Site()
        self.channel: Any = _Channel()
        self.producer: IPushProducer | None = None
        self.streaming: bool | None = None

    def write(self, data: bytes) -> None:
        super().write(data)
        self.unsent += len(data)
        if (
            self.bufferSize is not None
            and self.producer is not None
            and self.unsent > self.bufferSize
        ):
            self.producer.pauseProducing()

    def drain(self) -> None:
        """
        The client read everything written so far: resume the producer.
        """
        self.unsent = 0
        if self.producer is not None:
            self.producer.resumeProducing()

    @property
    def clock(self) -> MemoryReactorClock:
        return self.site.reactor

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        assert self.producer is None, "a producer is already registered"
        self.producer = producer
        self.streaming = streaming

    def unregisterProducer(self) -> None:
        assert self.producer is not None, "no producer registered"
        self.producer = None

    @property
    def cut(self) -> bool:
        """
        Whether the response was cut: its connection closed before the
        request finished.
        """
        return bool(self.channel.transport.disconnecting) and not self.finished


def makeRequest(
    uri: bytes,
    method: bytes = b"GET",
    headers: dict[bytes, bytes] | None = None,
    prepath: list[bytes] | None = None,
) -> DummyRequest:
    """
    A request for C{uri} as a client would send it.
    """
    request = DummyRequest([])
    request.uri = uri
    request.method = method
    request.prepath = list(prepath or [])
    for name, value in (headers or {}).items():
        request.requestHeaders.addRawHeader(name, value)
    return request


def render(resource: IResource, request: DummyRequest) -> DummyRequest:
    """
    Render C{request} and check that the resource finished it exactly once.
    """
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    assert request.finished == 1
    return request


def header(request: DummyRequest, name: bytes) -> bytes | None:
    """
    The single value of a response header, or L{None}.
    """
    values = request.responseHeaders.getRawHeaders(name)
    if values is None:
        return None
    assert len(values) == 1, values
    return values[0]


def body(request: DummyRequest) -> bytes:
    return b"".join(request.written)
