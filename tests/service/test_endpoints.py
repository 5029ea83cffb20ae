"""
Tests for L{twisted_cgiserve._service.endpoints}: the endpoint each kind of
C{--port} gets, checked without a reactor and built with a fake one.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import tcp
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


# Workers: listening on the parent's sockets.


class _Adopting(MemoryReactorClock):
    """
    A reactor that records the sockets it adopts, and checks that nothing
    else is listened on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.adoptions: list[tuple[int, int, Any]] = []

    def adoptStreamPort(self, fileno: int, addressFamily: Any, factory: Any) -> Any:
        self.adoptions.append((fileno, addressFamily, factory))
        return _AdoptedPort()

    def listenTCP(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("listened instead of adopting")

    listenUNIX = listenTCP


class _AdoptedPort:
    lost: list[object]
    _shouldShutdown = True
    numberAccepts = 100

    def __init__(self) -> None:
        self.lost = []
        self.reads: list[int] = []

    def doRead(self) -> None:
        self.reads.append(self.numberAccepts)
        # Twisted grows it after a read that accepted all it could.
        self.numberAccepts += 20

    def connectionLost(self, reason: object) -> None:
        self.lost.append(reason)


def _listening(family: int = socket.AF_INET, path: str = "") -> int:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(path or ("127.0.0.1", 0))
    sock.listen()
    return sock.detach()


def _isOpen(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "given",
    [
        "8000",
        "tcp:8000:interface=127.0.0.1",
        "tcp6:8000",
        "unix:/run/never.sock",
        "systemd:domain=INET:index=0",
    ],
)
def test_adoptInsteadOfListening(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    In a worker, every kind of port listens on the socket the parent passed
    (its descriptor closed once the reactor holds a copy), never on a new
    one.
    """
    monkeypatch.setenv("LISTEN_FDNAMES", "web")
    monkeypatch.setattr(
        "twisted.internet.endpoints._SystemdParser._sddaemon",
        _systemdFDs([3], ["web"]),
    )
    reactor = _Adopting()
    fd = _listening()
    factory = Factory()
    endpoint = endpointFor(reactor, parsePort(given, None), None, adopt=fd)
    results: list[object] = []
    endpoint.listen(factory).addBoth(results.append)
    assert isinstance(results[0], _AdoptedPort), results
    [(adopted, family, wrapped)] = reactor.adoptions
    assert (adopted, family, wrapped) == (fd, socket.AF_INET, factory)
    assert not _isOpen(fd)
    assert results[0]._shouldShutdown is False


def _systemdFDs(fds: list[int], names: list[str]) -> Any:
    from twisted.python.systemd import ListenFDs  # noqa: PLC0415

    return ListenFDs(fds, names)


def test_adoptKeepsTheWrapping(tmp_path: Path) -> None:
    """
    What a description wraps around the factory (the PROXY protocol, TLS)
    is kept: only the socket is the parent's.
    """
    from twisted.protocols.haproxy._wrapper import (  # noqa: PLC0415
        HAProxyWrappingFactory,
    )
    from twisted.protocols.tls import TLSMemoryBIOFactory  # noqa: PLC0415

    reactor = _Adopting()
    endpoint = endpointFor(
        reactor, parsePort("haproxy:tcp:8000", None), None, adopt=_listening()
    )
    endpoint.listen(Factory())
    assert isinstance(reactor.adoptions[0][2], HAProxyWrappingFactory)
    cert = makeCertificate(tmp_path)
    files = TLSFiles(str(cert.cert), str(cert.key))
    endpoint = endpointFor(
        reactor,
        parsePort("8443", None, files),
        ReloadingServerCreator(files),
        adopt=_listening(),
    )
    endpoint.listen(Factory())
    assert isinstance(reactor.adoptions[1][2], TLSMemoryBIOFactory)


def test_adoptUNIXKeepsTheFile(tmp_path: Path) -> None:
    """
    A worker's UNIX port does not remove the socket's file when it stops:
    the parent owns it, and the other workers still listen on it.
    """
    path = tmp_path / "s.sock"
    fd = _listening(socket.AF_UNIX, str(path))
    reactor = _Adopting()
    adopting = _endpoints.AdoptingReactor(reactor, fd)
    port: Any = adopting.adopt(Factory())
    assert reactor.adoptions[0][1] == socket.AF_UNIX
    calls: list[tuple[object, object]] = []
    original = tcp.Port.connectionLost
    try:
        tcp.Port.connectionLost = (  # type: ignore[method-assign]
            lambda self, reason: calls.append((self, reason))
        )
        port.connectionLost("why")
    finally:
        tcp.Port.connectionLost = original  # type: ignore[method-assign]
    assert calls == [(port, "why")]
    assert port.lost == []
    assert path.exists()


def test_adoptOnce() -> None:
    """
    The socket is adopted once; the reactor's other methods are the
    wrapped reactor's.
    """
    reactor = _Adopting()
    adopting = _endpoints.AdoptingReactor(reactor, _listening())
    assert adopting.seconds() == reactor.seconds()
    adopting.listenTCP(80, Factory())
    with pytest.raises(CannotListenError, match="already adopted"):
        adopting.listenUNIX("/x", Factory())
    with pytest.raises(CannotListenError):
        adopting.adoptStreamPort(9, socket.AF_INET, Factory())


def test_canariesForAdoption() -> None:
    """
    What adopting a socket in a worker relies on in Twisted: ports shut
    their socket down before closing it unless C{_shouldShutdown} is false,
    and a UNIX port's C{connectionLost} (which removes the file) wraps
    C{tcp.Port}'s.
    """
    from twisted.internet import unix  # noqa: PLC0415

    assert tcp.Port._shouldShutdown is True
    assert unix.Port.connectionLost is not tcp.Port.connectionLost
    assert "unlink" in unix.Port.connectionLost.__code__.co_names


def test_adoptedPortAcceptsOneConnectionPerWakeUp() -> None:
    """
    Every worker is woken for a new connection; each accepts one, so that a
    burst of connections spreads over the workers instead of going to the
    first one woken (nginx's multi_accept off).
    """
    reactor = _Adopting()
    port: Any = _endpoints.AdoptingReactor(reactor, _listening()).adopt(Factory())
    port.doRead()
    port.doRead()
    assert port.reads == [1, 1]
