"""
Tests for L{twisted_cgiserve._service.listen.ListeningService}: the port it
listens on is announced, kept and stopped; a port that cannot be bound ends
the process with one line on standard error and exit status 1,
whether the endpoint fails at once or later (its L{Deferred} failing while
the reactor runs, where a C{SystemExit} would only be logged as an
unhandled error in a L{Deferred} and the server would run on without its
port).

The unit tests drive the service with endpoints whose L{Deferred}s the test
fires, on a L{MemoryReactorClock}; the end-to-end ones run the real twistd
with a port in use, and with a test-only endpoint plugin whose listen fails
after a delay, as a C{systemd:}-like or third-party endpoint can.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from zope.interface import implementer

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from twisted_cgiserve._service import exitstatus as _exitstatus
from twisted_cgiserve._service import listen as _listen
from twisted_cgiserve._service.listen import ListeningService
from twisted_cgiserve._service.ports import parsePort

IN_USE = CannotListenError(
    "127.0.0.1", 8000, OSError(errno.EADDRINUSE, "Address already in use")
)


@implementer(IListeningPort)
class FakePort:
    def __init__(self) -> None:
        self.stopped = False

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        self.stopped = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 8000)


@implementer(IStreamServerEndpoint)
class LaterEndpoint:
    """
    An endpoint whose listen the test (or a clock) completes later.
    """

    def __init__(self) -> None:
        self.listening: list[defer.Deferred[IListeningPort]] = []

    def listen(self, factory: object) -> defer.Deferred[IListeningPort]:
        d: defer.Deferred[IListeningPort] = defer.Deferred()
        self.listening.append(d)
        return d


@implementer(IStreamServerEndpoint)
class NowEndpoint:
    def __init__(self, outcome: object) -> None:
        self.outcome = outcome

    def listen(self, factory: object) -> defer.Deferred[Any]:
        if isinstance(self.outcome, Failure):
            return defer.fail(self.outcome)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return defer.succeed(self.outcome)


def service(
    endpoint: IStreamServerEndpoint, exits: list[int], reactor: Any = None
) -> ListeningService:
    return ListeningService(
        parsePort("tcp:8000:interface=127.0.0.1", None),
        endpoint,
        Factory(),
        reactor=reactor,
        exitWith=exits.append,
    )


def oneLine(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_failsLater(capfd: pytest.CaptureFixture[str]) -> None:
    """
    An endpoint whose listen fails after start-up (the reactor running)
    writes the one line and asks for exit status 1; whoever waits for the
    port hears of the failure; nothing is left unhandled in a L{Deferred}.
    """
    endpoint = LaterEndpoint()
    exits: list[int] = []
    svc = service(endpoint, exits)
    svc.privilegedStartService()
    svc.startService()
    waiting = svc.whenListening()
    assert exits == []
    endpoint.listening[0].errback(IN_USE)
    assert exits == [1]
    line = oneLine(capfd.readouterr().err)
    assert line == (
        "twistd cgiserve: cannot listen on tcp:8000:interface=127.0.0.1: "
        "Address already in use"
    )
    failures: list[Failure] = []
    waiting.addErrback(failures.append)
    svc.whenListening().addErrback(failures.append)
    assert [f.value for f in failures] == [IN_USE, IN_USE]
    # The failure was consumed: no "Unhandled error in Deferred".
    assert svc._listening is not None
    svc._listening.addBoth(failures.append)
    assert failures[-1] is None


def test_failsLaterOnClock(capfd: pytest.CaptureFixture[str]) -> None:
    """
    With the default exit, a failure while the reactor runs stops the
    reactor and sets the status the process exits with; a second failing
    port does not stop it twice.
    """
    clock = MemoryReactorClock()
    clock.run()
    endpoints = [LaterEndpoint(), LaterEndpoint()]
    services = [
        ListeningService(
            parsePort(f"tcp:{8000 + i}:interface=127.0.0.1", None),
            endpoint,
            Factory(),
            reactor=clock,
        )
        for i, endpoint in enumerate(endpoints)
    ]
    status: list[int] = []
    with pytest.MonkeyPatch.context() as patch:
        # Neither install the real exit handler in the test process nor
        # share its state.
        patch.setattr(_exitstatus, "_exitHandler", [True])
        patch.setattr(_exitstatus, "_exitStatus", status)
        for svc in services:
            svc.privilegedStartService()
        for i, endpoint in enumerate(endpoints):
            clock.callLater(1 + i, endpoint.listening[0].errback, IN_USE)
        clock.advance(1)
        assert clock.hasStopped and not clock.running
        assert status == [1]
        clock.advance(1)
        assert status == [1]
    assert len(capfd.readouterr().err.strip().splitlines()) == 2


def test_failsAtOnce(capfd: pytest.CaptureFixture[str]) -> None:
    """
    An endpoint that fails at once (before the reactor runs) raises
    C{SystemExit(1)} out of the start, which twistd turns into exit status
    1; an endpoint that raises instead of failing its L{Deferred} too.
    """
    for outcome in (Failure(IN_USE), IN_USE):
        exits: list[int] = []
        svc = service(NowEndpoint(outcome), exits)
        with pytest.raises(SystemExit) as raised:
            svc.privilegedStartService()
        assert raised.value.code == 1
        assert exits == []
        assert "Address already in use" in oneLine(capfd.readouterr().err)


def test_failureNamesTheCommand(capfd: pytest.CaptureFixture[str]) -> None:
    """
    The error line names the command the user ran (C{twistd cgiserve} by
    default, C{python -m twisted_cgiserve} from there).
    """
    svc = service(NowEndpoint(IN_USE), [])
    with pytest.raises(SystemExit):
        svc.privilegedStartService()
    assert oneLine(capfd.readouterr().err).startswith(
        "twistd cgiserve: cannot listen on "
    )
    svc = ListeningService(
        parsePort("tcp:8000:interface=127.0.0.1", None),
        NowEndpoint(IN_USE),
        Factory(),
        exitWith=[].append,
        commandName="python -m twisted_cgiserve",
    )
    with pytest.raises(SystemExit):
        svc.privilegedStartService()
    assert oneLine(capfd.readouterr().err).startswith(
        "python -m twisted_cgiserve: cannot listen on tcp:8000:interface=127.0.0.1: "
    )


def test_listensLater(capfd: pytest.CaptureFixture[str]) -> None:
    """
    An endpoint that binds later: its port is kept and announced, and those
    waiting for it get it.
    """
    endpoint = LaterEndpoint()
    exits: list[int] = []
    svc = service(endpoint, exits)
    svc.privilegedStartService()
    ports: list[IListeningPort] = []
    svc.whenListening().addCallback(ports.append)
    port = FakePort()
    endpoint.listening[0].callback(port)
    svc.whenListening().addCallback(ports.append)
    assert ports == [port, port]
    assert svc.port is port
    assert svc.address() == "http://127.0.0.1:8000/"
    assert exits == []
    assert capfd.readouterr().err == ""


def test_stoppedWhileBinding(capfd: pytest.CaptureFixture[str]) -> None:
    """
    Stopping the service while its endpoint still binds gives up on it
    (cancels the endpoint's L{Deferred}): that is no failure to report.
    """
    cancelled: list[object] = []

    @implementer(IStreamServerEndpoint)
    class Cancellable:
        def listen(self, factory: object) -> defer.Deferred[IListeningPort]:
            return defer.Deferred(cancelled.append)

    for endpoint in (LaterEndpoint(), Cancellable()):
        exits: list[int] = []
        svc = service(endpoint, exits)
        svc.privilegedStartService()
        svc.startService()
        stopped: list[object] = []
        d = svc.stopService()
        assert d is not None
        d.addBoth(stopped.append)
        assert stopped == [None]
        assert not svc.running
        assert exits == []
    assert len(cancelled) == 1
    assert capfd.readouterr().err == ""


def test_announcesOnceRunning() -> None:
    """
    The port is announced as http.server did, one reactor turn after the
    reactor runs (once every start-up trigger has run), and stopped with
    the service; the service is Twisted's L{StreamServerEndpointService}.
    """
    clock = MemoryReactorClock()
    exits: list[int] = []
    svc = service(NowEndpoint(FakePort()), exits, clock)
    assert isinstance(svc, StreamServerEndpointService)
    with capturedLogs() as events:
        svc.privilegedStartService()
        svc.startService()
        clock.run()
        assert _listenLog(events) == []
        clock.advance(0)
    assert _listenLog(events) == [
        "Serving HTTP on 127.0.0.1 port 8000 (http://127.0.0.1:8000/) ..."
    ]
    port = svc.port
    assert isinstance(port, FakePort)
    stopped: list[object] = []
    d = svc.stopService()
    assert d is not None
    d.addBoth(stopped.append)
    assert stopped == [None] and port.stopped and svc.port is None


def test_announcesHTTPSAndSockets(tmp_path: Path) -> None:
    """
    A secure port says HTTPS; a UNIX socket is named by its path.
    """
    assert _listen._describe(FakePort(), True) == (
        "Serving HTTPS on 127.0.0.1 port 8000 (https://127.0.0.1:8000/) ..."
    )
    sock = FakePort()
    sock.getHost = lambda: UNIXAddress(b"/run/x.sock")  # type: ignore[method-assign,assignment,return-value]
    assert _listen._describe(sock, False) == "Serving HTTP on /run/x.sock"
    v6 = FakePort()
    v6.getHost = lambda: IPv6Address("TCP", "::", 80)  # type: ignore[method-assign,assignment,return-value]
    assert _listen._address(v6, False) == "http://[::]:80/"


def test_notStarted() -> None:
    """
    A service never started has nothing to stop and no port to wait for;
    its address is the configured one.
    """
    svc = service(LaterEndpoint(), [])
    assert svc.stopService() is None
    failures: list[Failure] = []
    svc.whenListening().addErrback(failures.append)
    assert failures[0].check(RuntimeError)
    assert svc.address() == "tcp:8000:interface=127.0.0.1"


def test_otherFailureReason(capfd: pytest.CaptureFixture[str]) -> None:
    """
    A failure that is not a socket error is named as it is.
    """
    exits: list[int] = []
    with pytest.raises(SystemExit):
        service(
            NowEndpoint(Failure(ValueError("no such thing"))), exits
        ).privilegedStartService()
    assert oneLine(capfd.readouterr().err) == (
        "twistd cgiserve: cannot listen on tcp:8000:interface=127.0.0.1: no such thing"
    )


def _listenLog(events: Any) -> list[str]:
    return [formatEvent(e) for e in events if e["log_namespace"] == "cgiserve.listen"]
