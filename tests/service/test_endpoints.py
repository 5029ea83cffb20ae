"""
Tests for L{twisted_cgiserve._service.endpoints}: the endpoint each kind of
C{--port} gets, checked without a reactor and built with a fake one.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from tests.support.certs import makeCertificate
from twisted_cgiserve._service import endpoints as _endpoints
from twisted_cgiserve._service.endpoints import (
    DualStackEndpoint,
    checkDescription,
    endpointFor,
)
from twisted_cgiserve._service.ports import parsePort
from twisted_cgiserve._service.tls import ReloadingServerCreator, TLSFiles


class _NoIPv6(MemoryReactorClock):
    """
    A reactor on a host where binding C{::} fails with C{error}.
    """

    def __init__(self, error: int) -> None:
        super().__init__()
        self.error = error

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        if interface == "::":
            raise CannotListenError(interface, port, OSError(self.error, "no"))
        return super().listenTCP(port, factory, backlog, interface)


def _listened(reactor: MemoryReactorClock, port: int) -> list[tuple[int, str]]:
    endpoint = DualStackEndpoint(reactor, port)
    results: list[object] = []
    endpoint.listen(Factory()).addBoth(results.append)
    assert not isinstance(results[0], Failure), results
    return [(p, interface) for p, _f, _b, interface in reactor.tcpServers]


def test_dualStackListensOnIPv6Wildcard() -> None:
    """
    On a host with IPv6, a bare port listens on C{::} (which takes IPv4
    too), and only there.
    """
    assert _listened(MemoryReactorClock(), 8000) == [(8000, "::")]


@pytest.mark.parametrize(
    "error", [errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT]
)
def test_dualStackFallsBackToIPv4(error: int) -> None:
    """
    Where IPv6 is off, binding C{::} fails and the IPv4 wildcard is used.
    """
    assert _listened(_NoIPv6(error), 8000) == [(8000, "")]


def test_dualStackOtherErrorsFail() -> None:
    """
    Any other failure (the port is in use) is the endpoint's failure: not
    hidden by trying IPv4 instead.
    """
    reactor = _NoIPv6(errno.EADDRINUSE)
    results: list[object] = []
    DualStackEndpoint(reactor, 8000).listen(Factory()).addBoth(results.append)
    (failure,) = results
    assert isinstance(failure, Failure) and failure.check(CannotListenError)
    assert reactor.tcpServers == []


def test_dualStackWithoutIPv6(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A Python built without IPv6 listens on IPv4 at once.
    """
    monkeypatch.setattr(socket, "has_ipv6", False)
    assert _listened(MemoryReactorClock(), 8000) == [(8000, "")]


def test_endpointForKinds(tmp_path: Path) -> None:
    """
    A bare number gets the dual-stack endpoint; descriptions Twisted's.
    """
    reactor = MemoryReactorClock()
    assert isinstance(endpointFor(reactor, parsePort("8000", None)), DualStackEndpoint)
    assert isinstance(
        endpointFor(reactor, parsePort("8000", "127.0.0.1")), TCP4ServerEndpoint
    )
    assert isinstance(
        endpointFor(reactor, parsePort("tcp6:8000", None)), TCP6ServerEndpoint
    )
    unix = f"unix:{tmp_path}/s.sock"
    assert isinstance(endpointFor(reactor, parsePort(unix, None)), UNIXServerEndpoint)


def test_endpointForTLS(tmp_path: Path) -> None:
    """
    With TLS settings, the endpoint listens through TLS with them.
    """
    c = makeCertificate(tmp_path)
    creator = ReloadingServerCreator(TLSFiles(str(c.combined)))
    reactor = MemoryReactorClock()
    spec = parsePort("8443", "127.0.0.1", creator.files)
    endpoint = endpointFor(reactor, spec, creator)
    endpoint.listen(Factory())
    ((port, factory, _, interface),) = reactor.tcpServers
    assert (port, interface) == (8443, "127.0.0.1")
    assert type(factory).__name__ == "TLSMemoryBIOFactory"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bogus:1", "bad --port bogus:1: Unknown endpoint type: 'bogus'"),
        ("tcp:notaport", "bad --port tcp:notaport: invalid literal for int()"),
        ("unix:/x:mode=9", "bad --port unix:/x:mode=9: invalid literal for int()"),
        (
            "systemd:domain=INET:index=7",
            "bad --port systemd:domain=INET:index=7: systemd passed no such socket "
            "(is the .socket unit active, and its FileDescriptorName= this name?)",
        ),
    ],
)
def test_badDescriptions(value: str, message: str) -> None:
    """
    A description Twisted cannot parse is one C{ValueError} naming the
    value, the same whether checked without a reactor or built with one.
    """
    spec = parsePort(value, None)
    with pytest.raises(ValueError) as checked:
        checkDescription(spec)
    assert str(checked.value).startswith(message)
    with pytest.raises(ValueError) as built:
        endpointFor(MemoryReactorClock(), spec)
    assert str(built.value) == str(checked.value)


def test_checkDescriptionGoodOnes(tmp_path: Path) -> None:
    """
    Good descriptions and bare numbers pass the check.
    """
    for value in ("8000", "tcp:0:interface=127.0.0.1", f"unix:{tmp_path}/s"):
        checkDescription(parsePort(value, None))


def test_checkDescriptionUsesNoReactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The check hands the parser a stand-in that fails on any use; a parser
    that uses the reactor at once (a plugin may) is left to L{endpointFor},
    which gets the real one.
    """
    given: list[object] = []

    def parser(reactor: Any, description: str) -> object:
        given.append(reactor)
        return reactor.seconds()

    monkeypatch.setattr(_endpoints, "serverFromString", parser)
    spec = parsePort("eager:1", None)
    checkDescription(spec)
    with pytest.raises(_endpoints._ReactorNeeded):
        given[0].callLater  # noqa: B018
    reactor = MemoryReactorClock()
    assert endpointFor(reactor, spec) == 0.0
    assert given[1] is reactor
