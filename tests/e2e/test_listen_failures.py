"""
A port that cannot be bound ends the real C{twistd -n cgiserve} with one
line on standard error and exit status 1, whether it fails at once (a port
in use) or later: a test-only endpoint plugin, C{latefail:}, fails its
listen after a delay, as a C{systemd:}-like or third-party endpoint can.
"""

from __future__ import annotations

import os
import re
import socket
import textwrap
from pathlib import Path

import pytest

from tests.support.raw import fetch
from tests.support.server import runTwistd, startServer

pytestmark = pytest.mark.e2e


def oneLine(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


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
        assert fetch(server.port, "/a.txt").status == 200
        assert server.process.wait(20) == 1
    finally:
        server.stop()
    log = server.log()
    assert len(_FAILED.findall(log)) == 1, log
    assert "Unhandled" not in log and "Traceback" not in log, log
    assert "Server Shut Down." in log


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
