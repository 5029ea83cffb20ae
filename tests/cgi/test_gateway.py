"""
Tests for L{twisted_cgiserve._cgi.gateway}: locating, admitting and starting
a request's script, with a fake spawn and a fake process, so no process is
started.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor as globalReactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from tests.support.requests import body, header, makeRequest
from twisted_cgiserve._cgi.environ import CGIEnvironmentSettings
from twisted_cgiserve._cgi.gateway import ScriptGateway
from twisted_cgiserve._cgi.locate import ScriptClaim
from twisted_cgiserve._cgi.process import SpawnRefused
from twisted_cgiserve._cgi.protocol import ScriptRun
from twisted_cgiserve._cgi.redirect import ILocalRedirects
from twisted_cgiserve._http.paths import resolvePath


class FakeProcess:
    """
    The transport of a script that was never started: records what its
    protocol asks of it.
    """

    pid = 4242

    def __init__(self) -> None:
        self.started: Deferred[None] | None = None
        self.stdinClosed = False
        self.terminated: list[float] = []
        self.stdin = b""
        self._producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Pull the request body to the end, as a script reading its standard
        input would.
        """
        assert not streaming
        self._producer = producer
        while self._producer is not None:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self._producer = None

    def write(self, data: bytes) -> None:
        self.stdin += data

    def closeStdin(self) -> None:
        self.stdinClosed = True

    def terminate(self, grace: float) -> Deferred[bool]:
        self.terminated.append(grace)
        return Deferred()


class Spawned:
    """
    One call of L{FakeSpawn}.
    """

    def __init__(  # noqa: PLR0917
        self,
        reactor: Any,
        protocol: IProcessProtocol,
        executable: str,
        args: Sequence[str],
        environment: Mapping[str, str],
        directory: str,
        user: tuple[int, int] | None,
    ) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.executable = executable
        self.args = list(args)
        self.environment = dict(environment)
        self.directory = directory
        self.user = user
        self.process = FakeProcess()

    @property
    def run(self) -> ScriptRun:
        assert isinstance(self.protocol, ScriptRun)
        return self.protocol

    def end(self) -> None:
        """
        The script's process group is gone and reaped.
        """
        self.run.processEnded(Failure(ProcessDone(0)))


class FakeSpawn:
    """
    Starts nothing: connects each protocol to a L{FakeProcess}, or fails as
    told.
    """

    def __init__(self, error: Exception | None = None, late: bool = False) -> None:
        """
        @param late: Fail as the spawner does, after the script's transport
            was returned (its C{started} fails when the test says).
        """
        self.calls: list[Spawned] = []
        self.error = error
        self.late = late

    def __call__(
        self,
        reactor: Any,
        protocol: IProcessProtocol,
        executable: str,
        args: Sequence[str],
        *,
        environment: Mapping[str, str],
        directory: str,
        user: tuple[int, int] | None,
    ) -> object:
        if self.error is not None and not self.late:
            raise self.error
        spawned = Spawned(
            reactor, protocol, executable, args, environment, directory, user
        )
        self.calls.append(spawned)
        if self.late:
            spawned.process.started = Deferred()
        protocol.makeConnection(spawned.process)  # type: ignore[arg-type]
        return spawned.process

    def failLate(self) -> None:
        """
        The spawner's late answer: the script was not started; its
        transport then reports the end (the pipes close, output that ends
        is dropped).
        """
        assert self.error is not None
        for spawned in self.calls:
            assert spawned.process.started is not None
            spawned.process.started.errback(Failure(self.error))
            spawned.run.outConnectionLost()
            spawned.end()


def cgiRequest(
    uri: bytes,
    method: bytes = b"GET",
    headers: dict[bytes, bytes] | None = None,
    prepath: list[bytes] | None = None,
) -> DummyRequest:
    """
    A request for C{uri} over plain HTTP, as the router hands it on.
    """
    request = makeRequest(uri, method, headers, prepath)
    request.isSecure = lambda: False  # type: ignore[method-assign]
    return request


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "cgi-bin").mkdir(parents=True)
    for name in ("x.sh", "nph-raw.sh"):
        (root / "cgi-bin" / name).write_text("#!/bin/sh\n")
        (root / "cgi-bin" / name).chmod(0o755)
    (root / "cgi-bin" / "owner-only.sh").write_text("#!/bin/sh\n")
    (root / "cgi-bin" / "owner-only.sh").chmod(0o744)
    return root


@pytest.fixture
def notRoot(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The server does not run as root (whoever runs the tests).
    """
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def gateway(
    root: Path,
    spawn: FakeSpawn,
    user: tuple[int, int] | None = None,
    maxProcesses: int = 0,
    reactor: Any = None,
) -> ScriptGateway:
    return ScriptGateway(
        str(root),
        CGIEnvironmentSettings(),
        user,
        Resource(),
        MemoryReactorClock() if reactor is None else reactor,
        timeout=30,
        maxProcesses=maxProcesses,
        spawn=spawn,
    )


def serve(cgi: ScriptGateway, request: DummyRequest | Request) -> object:
    """
    Hand C{request} to C{cgi} as the router does.
    """
    path = request.uri.split(b"?", 1)[0]
    prefix = b"/" + b"/".join(request.prepath or [])
    resolved = resolvePath(path[len(prefix.rstrip(b"/")) :])
    return cgi.serve(request, resolved, "/cgi-bin")


@pytest.mark.usefixtures("notRoot")
def test_startsTheScript(root: Path) -> None:
    """
    A script is started in its own directory, with its filename and an
    indexed query's words as arguments and the CGI environment (the mount
    path in C{SCRIPT_NAME}, the body's length), as the server's user; its
    run is tracked until its process is gone.
    """
    spawn = FakeSpawn()
    reactor = MemoryReactorClock()
    cgi = gateway(root, spawn, user=(65534, 65534), reactor=reactor)
    request = cgiRequest(
        b"/mnt/cgi-bin/x.sh/more?a+b",
        method=b"POST",
        headers={b"Content-Length": b"4"},
        prepath=[b"mnt"],
    )
    request.content = BytesIO(b"data")
    assert serve(cgi, request) is NOT_DONE_YET
    [spawned] = spawn.calls
    script = str(root / "cgi-bin" / "x.sh")
    assert spawned.reactor is reactor
    assert (spawned.executable, spawned.args) == (script, [script])
    assert spawned.directory == str(root / "cgi-bin")
    assert spawned.user is None
    env = spawned.environment
    assert env["SCRIPT_NAME"] == "/mnt/cgi-bin/x.sh"
    assert env["PATH_INFO"] == "/more"
    assert env["SCRIPT_FILENAME"] == script
    assert env["DOCUMENT_ROOT"] == str(root)
    assert env["CONTENT_LENGTH"] == "4"
    assert env["REQUEST_METHOD"] == "POST"
    assert spawned.process.stdin == b"data"
    assert spawned.process.stdinClosed
    assert cgi.running == {spawned.run}
    assert not request.finished
    spawned.end()
    assert cgi.running == set()


@pytest.mark.usefixtures("notRoot")
def test_indexedQueryArguments(root: Path) -> None:
    """
    A GET's indexed query (no C{=}) becomes the script's arguments.
    """
    spawn = FakeSpawn()
    cgi = gateway(root, spawn)
    serve(cgi, cgiRequest(b"/cgi-bin/x.sh?a+b%20c"))
    script = str(root / "cgi-bin" / "x.sh")
    assert spawn.calls[0].args == [script, "a", "b c"]
    assert "CONTENT_LENGTH" not in spawn.calls[0].environment


@pytest.mark.usefixtures("notRoot")
def test_noSuchScript(root: Path) -> None:
    """
    A refusal from locating the script is sent as it is; nothing starts.
    """
    spawn = FakeSpawn()
    cgi = gateway(root, spawn)
    request = cgiRequest(b"/cgi-bin/missing.sh")
    serve(cgi, request)
    assert request.responseCode == 404
    assert request.responseMessage == b"No such CGI script ('/cgi-bin/missing.sh')"
    assert spawn.calls == []
    assert cgi.running == set()


def test_asTheConfiguredUser(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    While the server runs as root, a script runs as the configured user,
    and one that user may not execute is refused before anything starts
    (root itself could execute it).
    """
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    st = (root / "cgi-bin" / "x.sh").stat()
    user = (st.st_uid + 1, st.st_gid + 1)
    spawn = FakeSpawn()
    cgi = gateway(root, spawn, user=user)
    serve(cgi, cgiRequest(b"/cgi-bin/x.sh"))
    assert [spawned.user for spawned in spawn.calls] == [user]
    request = cgiRequest(b"/cgi-bin/owner-only.sh")
    serve(cgi, request)
    assert request.responseCode == 403
    assert request.responseMessage == (
        b"CGI script is not executable ('/cgi-bin/owner-only.sh')"
    )
    assert len(spawn.calls) == 1


def test_rootUserIsNotSwitchedTo(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A configured user that is root switches nothing, so any execute bit
    will do.
    """
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    spawn = FakeSpawn()
    cgi = gateway(root, spawn, user=(0, 0))
    serve(cgi, cgiRequest(b"/cgi-bin/owner-only.sh"))
    assert [spawned.user for spawned in spawn.calls] == [None]


@pytest.mark.usefixtures("notRoot")
def test_admissionCap(root: Path) -> None:
    """
    With C{maxProcesses} runs alive, the next request is a 503 with
    C{Retry-After} and starts nothing; once a run has ended (its whole
    process group gone) another is admitted.
    """
    spawn = FakeSpawn()
    cgi = gateway(root, spawn, maxProcesses=2)
    for _ in range(2):
        assert serve(cgi, cgiRequest(b"/cgi-bin/x.sh")) is NOT_DONE_YET
    refused = cgiRequest(b"/cgi-bin/x.sh")
    serve(cgi, refused)
    assert refused.responseCode == 503
    assert header(refused, b"retry-after") == b"1"
    assert b"try again" in body(refused)
    assert len(spawn.calls) == 2
    spawn.calls[0].end()
    assert serve(cgi, cgiRequest(b"/cgi-bin/x.sh")) is NOT_DONE_YET
    assert len(spawn.calls) == 3
    assert len(cgi.running) == 2


@pytest.mark.usefixtures("notRoot")
def test_refusalsBeforeAdmission(root: Path) -> None:
    """
    A request refused anyway (no such script) is refused as such even when
    no run may start.
    """
    spawn = FakeSpawn()
    cgi = gateway(root, spawn, maxProcesses=1)
    serve(cgi, cgiRequest(b"/cgi-bin/x.sh"))
    request = cgiRequest(b"/cgi-bin/missing.sh")
    serve(cgi, request)
    assert request.responseCode == 404


@pytest.mark.usefixtures("notRoot")
@pytest.mark.parametrize(
    ("clientproto", "started"),
    [(b"HTTP/1.1", True), (b"HTTP/1.0", True), (b"HTTP/2", False)],
)
def test_nphNeedsHTTP1(root: Path, clientproto: bytes, started: bool) -> None:
    """
    An NPH script writes an HTTP/1.x response itself: over another
    protocol it is a 505 and is not started.
    """
    spawn = FakeSpawn()
    cgi = gateway(root, spawn)
    request = cgiRequest(b"/cgi-bin/nph-raw.sh")
    request.clientproto = clientproto
    result = serve(cgi, request)
    assert bool(spawn.calls) is started
    assert result is NOT_DONE_YET
    assert request.finished is (0 if started else 1)
    if not started:
        assert request.responseCode == 505


@pytest.mark.usefixtures("notRoot")
@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied"),
            403,
            b"CGI script is not executable ('/cgi-bin/x.sh')",
        ),
        (OSError(errno.ENOEXEC, "Exec format error"), 502, b"Bad Gateway"),
        (OSError("no errno"), 502, b"Bad Gateway"),
    ],
)
@pytest.mark.parametrize("late", [False, True])
def test_cannotStart(
    root: Path, error: OSError, code: int, message: bytes, late: bool
) -> None:
    """
    A script that cannot be started is a 403 when it may not be executed,
    a 502 otherwise; nothing is tracked. When the spawner says so later
    (C{late}), the client gets the same, once, and the run ends.
    """
    spawn = FakeSpawn(error, late)
    cgi = gateway(root, spawn)
    request = cgiRequest(b"/cgi-bin/x.sh")
    serve(cgi, request)
    if late:
        assert not request.finished
        spawn.failLate()
        assert spawn.calls[0].run.ended.called
    assert (request.responseCode, request.responseMessage) == (code, message)
    assert request.finished == 1
    assert cgi.running == set()


@pytest.mark.usefixtures("notRoot")
@pytest.mark.parametrize(
    "error",
    [SpawnRefused("too many scripts"), RuntimeError("a bug")],
)
def test_lateRefusal(root: Path, error: Exception) -> None:
    """
    The spawner's late refusal (the server-wide cap) is a 503 with
    C{Retry-After}; anything else it could fail with is a 502.
    """
    spawn = FakeSpawn(error, late=True)
    cgi = gateway(root, spawn)
    request = cgiRequest(b"/cgi-bin/x.sh")
    serve(cgi, request)
    spawn.failLate()
    if isinstance(error, SpawnRefused):
        assert request.responseCode == 503
        assert header(request, b"retry-after") == b"1"
    else:
        assert request.responseCode == 502
    assert request.finished == 1
    assert cgi.running == set()


@pytest.mark.usefixtures("notRoot")
def test_lateFailureAfterTheClientLeft(root: Path) -> None:
    """
    A client that went away while its script was being started gets
    nothing when the spawner then fails it; the body stops being fed, the
    run ends, nothing is left tracked.
    """
    spawn = FakeSpawn(OSError(errno.ENOENT, "No such file"), late=True)
    cgi = gateway(root, spawn)
    request = cgiRequest(b"/cgi-bin/x.sh")
    serve(cgi, request)
    [spawned] = spawn.calls
    request.processingFailed(Failure(ConnectionError("gone")))
    written = list(request.written)
    assert spawned.process.terminated == [3.0]
    spawn.failLate()
    assert request.written == written
    assert request.responseCode != 502
    assert cgi.running == set()


@pytest.mark.usefixtures("notRoot")
def test_lateFailureAfterATimeout(root: Path) -> None:
    """
    A script the spawner was so slow to fail that the run timed out first:
    the client got its 504, and nothing more.
    """
    clock = MemoryReactorClock()
    spawn = FakeSpawn(OSError(errno.ENOENT, "No such file"), late=True)
    cgi = gateway(root, spawn, reactor=clock)
    request = cgiRequest(b"/cgi-bin/x.sh")
    request.startedWriting = False  # type: ignore[attr-defined]
    serve(cgi, request)
    clock.advance(30)
    assert request.responseCode == 504
    assert request.finished == 1
    spawn.failLate()
    assert request.responseCode == 504
    assert request.finished == 1
    assert cgi.running == set()


@pytest.mark.usefixtures("notRoot")
def test_stopAll(root: Path) -> None:
    """
    L{ScriptGateway.stopAll} ends every running script's process group and
    fires once every one of them is gone.
    """
    spawn = FakeSpawn()
    cgi = gateway(root, spawn)
    for _ in range(2):
        serve(cgi, cgiRequest(b"/cgi-bin/x.sh"))
    fired: list[object] = []
    cgi.stopAll().addCallback(fired.append)
    assert [len(spawned.process.terminated) for spawned in spawn.calls] == [1, 1]
    spawn.calls[0].end()
    assert fired == []
    spawn.calls[1].end()
    assert fired == [None]
    assert cgi.running == set()


def test_stopAllWithNothingRunning(root: Path) -> None:
    """
    With no script running, L{ScriptGateway.stopAll} fires at once.
    """
    fired: list[object] = []
    gateway(root, FakeSpawn()).stopAll().addCallback(fired.append)
    assert fired == [None]


@pytest.mark.usefixtures("notRoot")
def test_globalReactorByDefault(root: Path) -> None:
    """
    Without a reactor, scripts run with the global one.
    """
    spawn = FakeSpawn()
    cgi = ScriptGateway(
        str(root), CGIEnvironmentSettings(), None, Resource(), spawn=spawn
    )
    serve(cgi, cgiRequest(b"/cgi-bin/x.sh"))
    assert spawn.calls[0].reactor is globalReactor


@pytest.mark.usefixtures("notRoot")
def test_localRedirectServedBySiteRoot(root: Path) -> None:
    """
    A script's local redirect is followed with the resource the gateway
    was given (for a request that came through no site): the script is
    ended and the path served in its place.
    """

    class Static(Resource):
        isLeaf = True

        def render(self, request: Any) -> bytes:
            return b"served " + request.uri

    spawn = FakeSpawn()
    cgi = ScriptGateway(
        str(root),
        CGIEnvironmentSettings(),
        None,
        Static(),
        MemoryReactorClock(),
        spawn=spawn,
    )
    channel = DummyChannel()
    request = Request(channel)
    request.method = b"GET"
    request.uri = request.path = b"/cgi-bin/x.sh"
    request.clientproto = b"HTTP/1.1"
    request.content = BytesIO()
    serve(cgi, request)
    [spawned] = spawn.calls
    spawned.run.outReceived(b"Location: /a.txt\n\n")
    assert spawned.process.terminated
    assert request.getComponent(ILocalRedirects).count == 1
    written = channel.transport.written.getvalue()
    assert written.startswith(b"HTTP/1.1 200 ")
    assert written.endswith(b"served /a.txt")


# --cgi-interpreter: interpreted scripts need no execute bit, only to be
# readable by the user they run as.


def test_interpretedScript(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An interpreted script starts as its interpreter with the script as its
    first argument, as the configured user, who must be able to read it.
    """
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    for name, mode in (("t.pl", 0o644), ("private.pl", 0o600)):
        (root / "cgi-bin" / name).write_text("print 1;\n")
        (root / "cgi-bin" / name).chmod(mode)
    st = (root / "cgi-bin" / "t.pl").stat()
    user = (st.st_uid + 1, st.st_gid + 1)
    spawn = FakeSpawn()
    cgi = gateway(root, spawn, user=user)
    claim = ScriptClaim(1, True, ((".pl", "/bin/sh"),))
    request = cgiRequest(b"/cgi-bin/t.pl?a")
    cgi.serve(request, resolvePath(b"/cgi-bin/t.pl"), claim)
    [spawned] = spawn.calls
    script = str(root / "cgi-bin" / "t.pl")
    assert (spawned.executable, spawned.args) == ("/bin/sh", ["/bin/sh", script, "a"])
    assert spawned.user == user
    refused = cgiRequest(b"/cgi-bin/private.pl")
    cgi.serve(refused, resolvePath(b"/cgi-bin/private.pl"), claim)
    assert refused.responseCode == 403
    assert refused.responseMessage == (
        b"CGI script is not readable ('/cgi-bin/private.pl')"
    )
    assert len(spawn.calls) == 1


def debugGateway(root: Path, spawn: FakeSpawn, debug: str | None) -> ScriptGateway:
    return ScriptGateway(
        str(root),
        CGIEnvironmentSettings(setEnvironment=(("API_TOKEN", "t0ken"),)),
        None,
        Resource(),
        MemoryReactorClock(),
        timeout=30,
        spawn=spawn,
        debug=debug,
    )


@pytest.mark.usefixtures("notRoot")
@pytest.mark.parametrize(
    ("debug", "client", "kept"),
    [
        (None, "127.0.0.1", False),
        ("local", "127.0.0.1", True),
        ("local", "192.0.2.9", False),
        ("all", "192.0.2.9", True),
    ],
)
def test_debugContext(root: Path, debug: str | None, client: str, kept: bool) -> None:
    """
    A run keeps what its script was started with for the --cgi-debug page
    only when the mode lets this client see it; --cgi-set-env names are
    hidden.
    """
    spawn = FakeSpawn()
    cgi = debugGateway(root, spawn, debug)
    request = cgiRequest(b"/cgi-bin/x.sh")
    request.client = IPv4Address("TCP", client, 1234)
    serve(cgi, request)
    (spawned,) = spawn.calls
    context = spawned.run._debug
    assert (context is not None) is kept
    if context is not None:
        assert context.argv == tuple(spawned.args)
        assert context.environment == spawned.environment
        assert context.isHidden("API_TOKEN")


@pytest.mark.usefixtures("notRoot")
@pytest.mark.parametrize("late", [False, True])
def test_cannotStartDebugPage(root: Path, late: bool) -> None:
    """
    Under --cgi-debug, a script that cannot be started gets the page, with
    the reason, instead of the bare 502 (also when the spawner says so
    later).
    """
    spawn = FakeSpawn(OSError(errno.ENOENT, "No such file"), late)
    cgi = debugGateway(root, spawn, "all")
    request = cgiRequest(b"/cgi-bin/x.sh")
    serve(cgi, request)
    if late:
        spawn.failLate()
    assert request.finished == 1
    assert request.responseCode == 502
    body = b"".join(request.written)
    assert b"could not be started: No such file." in body
    assert b"never started" in body
    assert cgi.running == set()
