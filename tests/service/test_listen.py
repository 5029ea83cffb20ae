"""
Tests for L{twisted_cgiserve._service.listen.ListeningService}: a port that cannot be
bound ends the process with one line on standard error and exit status 1,
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
import os
import re
import socket
import textwrap
from pathlib import Path
from typing import Any

from zope.interface import implementer

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from tests.support.server import runTwistd, startServer
from twisted_cgiserve._service import listen as _listen
from twisted_cgiserve._service.listen import ListeningService, exitAfterStop, parsePort

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
        patch.setattr(_listen, "_exitHandler", [True])
        patch.setattr(_listen, "_exitStatus", status)
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
        assert svc.stopService() is None
        assert exits == []
    assert len(cancelled) == 1
    assert capfd.readouterr().err == ""


def test_exitAfterStop(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    L{exitAfterStop} stops a running reactor (or one once it runs) and, at
    interpreter exit, ends the process with the status after flushing.
    """
    status: list[int] = []
    monkeypatch.setattr(_listen, "_exitHandler", [True])
    monkeypatch.setattr(_listen, "_exitStatus", status)
    clock = MemoryReactorClock()
    exitAfterStop(1, clock)
    assert status == [1] and not clock.hasStopped
    clock.run()
    assert clock.hasStopped
    exited: list[int] = []
    monkeypatch.setattr(os, "_exit", exited.append)
    _listen._exitWithStatus()
    assert exited == [1]
    status.clear()
    _listen._exitWithStatus()
    assert exited == [1]


# End to end


LATE_FAIL_PLUGIN = '''
"""
A test-only endpoint, latefail:delay=SECONDS, whose listen fails that long
after it was asked, as an endpoint that binds asynchronously can.
"""
import errno

from zope.interface import implementer

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin


@implementer(IStreamServerEndpoint)
class LateFail:
    def __init__(self, reactor, delay):
        self.reactor = reactor
        self.delay = delay

    def listen(self, factory):
        d = defer.Deferred()
        error = CannotListenError(
            "", 0, OSError(errno.EADDRINUSE, "Address already in use")
        )
        self.reactor.callLater(self.delay, d.errback, error)
        return d


@implementer(IPlugin, IStreamServerEndpointStringParser)
class Parser:
    prefix = "latefail"

    def parseStreamServer(self, reactor, delay="0"):
        return LateFail(reactor, float(delay))


parser = Parser()
'''


@pytest.fixture
def lateFailPlugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Make the latefail: endpoint available to twistd (a C{twisted/plugins}
    directory without C{__init__.py} on the path is searched for plugins).
    """
    plugins = tmp_path / "pluginpath" / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "cgiserve_test_latefail.py").write_text(
        textwrap.dedent(LATE_FAIL_PLUGIN)
    )
    path = os.environ.get("PYTHONPATH")
    entries = [str(tmp_path / "pluginpath"), *([path] if path else [])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(entries))


_FAILED = re.compile(
    r"^twistd cgiserve: cannot listen on latefail:delay=[0-9.]+: "
    r"Address already in use$",
    re.MULTILINE,
)


@pytest.mark.e2e
@pytest.mark.usefixtures("lateFailPlugin")
def test_e2eAsyncFailureAtStartup(tmp_path: Path) -> None:
    """
    The only port fails asynchronously as the server starts: one line on
    standard error, exit status 1, no traceback (before: "Unhandled error in
    Deferred" in the log, and the server ran on, listening nowhere).
    """
    result = runTwistd(["--port", "latefail:delay=0.2"], tmp_path, timeout=20)
    assert result.returncode == 1, result
    assert _FAILED.fullmatch(result.stderr.strip()), result.stderr
    assert "Unhandled" not in result.stdout and "Traceback" not in result.stdout
    assert "cannot listen on latefail" in result.stdout


@pytest.mark.e2e
@pytest.mark.usefixtures("lateFailPlugin")
def test_e2eAsyncFailureWhileServing(tmp_path: Path) -> None:
    """
    A second port that fails a second after the first started serving ends
    the server (it stops as on SIGTERM, then exits 1) rather than leaving it
    up without that port.
    """
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a\n")
    server = startServer(
        root, ["--port", "tcp:0:interface=127.0.0.1", "--port", "latefail:delay=1"]
    )
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /a.txt HTTP/1.0\r\n\r\n")
            assert s.recv(100).split(b" ")[1] == b"200"
        assert server.process.wait(20) == 1
    finally:
        server.stop()
    log = server.log()
    assert len(_FAILED.findall(log)) == 1, log
    assert "Unhandled" not in log and "Traceback" not in log, log
    assert "Server Shut Down." in log


@pytest.mark.e2e
def test_e2ePortInUse(tmp_path: Path) -> None:
    """
    A port already in use (a synchronous failure) is one line on standard
    error and exit status 1, as before.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        description = f"tcp:{port}:interface=127.0.0.1"
        result = runTwistd(["--port", description], tmp_path)
    assert result.returncode == 1
    assert oneLine(result.stderr) == (
        f"twistd cgiserve: cannot listen on {description}: Address already in use"
    )
    assert "Traceback" not in result.stdout
