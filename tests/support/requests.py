"""
Helpers for rendering resources against in-memory requests.
"""

from __future__ import annotations

from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest


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
