"""
Tests for L{twisted_cgiserve.testing}: the command L{serve} runs, how it
fails, and L{listen} on a memory reactor. The real server under L{serve}
(a C{unittest} suite) and the pytest plugin are tested end to end in
tests/e2e/test_testing.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_cgiserve import Settings, testing


def test_public() -> None:
    """
    The helpers are public, listed in C{__all__}.
    """
    assert set(testing.__all__) == {
        "ListeningServer",
        "RunningServer",
        "ServerStartError",
        "commandLine",
        "listen",
        "serve",
    }


def test_commandLine(tmp_path: Path) -> None:
    """
    L{serve} runs C{python -m twisted_cgiserve} on port 0 of 127.0.0.1 with
    keywords as options: C{_} for C{-}, C{True} a flag, C{False} and
    L{None} nothing, lists repeated, other values as text.
    """
    command = testing.commandLine(
        tmp_path,
        cgi=True,
        cgi_timeout=5,
        no_listing=False,
        access_log=None,
        cgi_dir=["/a", "/b"],
        header=("X-A: b",),
    )
    assert command == [
        sys.executable,
        "-m",
        "twisted_cgiserve",
        "--bind",
        "127.0.0.1",
        "--directory",
        str(tmp_path),
        "--cgi",
        "--cgi-timeout=5",
        "--cgi-dir=/a",
        "--cgi-dir=/b",
        "--header=X-A: b",
        "0",
    ]


@pytest.mark.parametrize(
    "name", ["port", "bind", "directory", "path", "b", "bi", "d", "dir", "p", "po"]
)
def test_commandLineReserved(tmp_path: Path, name: str) -> None:
    """
    Where to listen and what to serve are L{serve}'s to choose, under
    their own names or any prefix of them: the parser takes an unambiguous
    prefix as the option (C{--b 0.0.0.0} is C{--bind 0.0.0.0}).
    """
    with pytest.raises(ValueError, match="chosen by serve"):
        testing.commandLine(tmp_path, **{name: "0.0.0.0"})


@pytest.mark.parametrize("name", ["bind=0.0.0.0", "cgi bind", "-b", "", "B"])
def test_commandLineNotAnOption(tmp_path: Path, name: str) -> None:
    """
    A keyword that is not an option's name (one that would carry its own
    value, or a second word) is refused.
    """
    with pytest.raises(ValueError, match="not the name of an option"):
        testing.commandLine(tmp_path, **{name: True})


def test_commandLineValuesStayValues(tmp_path: Path) -> None:
    """
    A value is joined to its option, so one that looks like an option (or
    one given to an abbreviated option) cannot take the next word, or
    become an option of its own.
    """
    command = testing.commandLine(tmp_path, cgi_set_env="--bind", cgi_deb="0")
    assert command[-3:] == ["--cgi-set-env=--bind", "--cgi-deb=0", "0"]


def test_commandLineParses(tmp_path: Path) -> None:
    """
    The command line L{serve} runs, parsed as the server parses it,
    listens on 127.0.0.1 port 0 and serves the directory.
    """
    from twisted_cgiserve._service import cli  # noqa: PLC0415
    from twisted_cgiserve._service.twistdoptions import twistdOptions  # noqa: PLC0415

    command = testing.commandLine(tmp_path, cgi=True, cgi_timeout="5")
    maker = cli._findMaker()
    config = twistdOptions(maker, cli.frontOptions(maker.options, "cgiserve"))
    config.parseOptions(["--nodaemon", "--pidfile=", "cgiserve", *command[3:]])
    options = config.subOptions
    assert [str(spec) for spec in options.config.listen] == [
        "tcp:0:interface=127.0.0.1"
    ]
    assert options.config.directory == str(tmp_path)


def test_serveFailsWithTheLog(tmp_path: Path) -> None:
    """
    A server that does not start raises L{testing.ServerStartError}
    carrying what the server wrote.
    """
    with (
        pytest.raises(testing.ServerStartError) as e,
        testing.serve(tmp_path, cgi_timeout="soon"),
    ):
        pytest.fail("the server started")  # pragma: no cover
    assert "exited with status 2" in str(e.value)
    assert "--cgi-timeout 'soon' is not a number" in e.value.log
    assert e.value.log in str(e.value)


def test_serveMissingDirectory(tmp_path: Path) -> None:
    """
    A directory that does not exist is a start failure, not a hang.
    """
    with (
        pytest.raises(testing.ServerStartError, match="does not exist"),
        testing.serve(tmp_path / "missing"),
    ):
        pass  # pragma: no cover


def test_serveSilentProcess(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    A process that never says where it listens is stopped after the
    timeout and reported, with what it wrote.
    """
    script = "import time; print('starting', flush=True); time.sleep(60)"
    monkeypatch.setattr(
        testing, "commandLine", lambda *a, **kw: [sys.executable, "-c", script]
    )
    with (
        pytest.raises(testing.ServerStartError) as e,
        testing.serve(tmp_path, timeout=0.5),
    ):
        pass  # pragma: no cover
    assert "did not say where it listens within 0.5 s" in str(e.value)
    assert e.value.log == "starting\n"


def test_serveNoAnswer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    A process that announces a port nobody listens on is reported as not
    answering.
    """
    script = (
        "import time; print('Serving HTTP on 127.0.0.1 port 9 "
        "(http://127.0.0.1:9/) ...', flush=True); time.sleep(60)"
    )
    monkeypatch.setattr(
        testing, "commandLine", lambda *a, **kw: [sys.executable, "-c", script]
    )
    with (
        pytest.raises(testing.ServerStartError, match="does not answer"),
        testing.serve(tmp_path, timeout=2),
    ):
        pass  # pragma: no cover


def test_listen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    L{testing.listen} listens on port 0 of 127.0.0.1 with the server's
    site; C{stop} stops listening and drains the site.
    """
    reactor = MemoryReactorClock()
    server = testing.listen(tmp_path, Settings(cgiEnabled=False), reactor=reactor)
    [(port, factory, _backlog, interface)] = reactor.tcpServers
    assert (port, interface) == (0, "127.0.0.1")
    assert factory is server.site
    assert server.url == f"http://127.0.0.1:{server.port}"
    stopped: list[bool] = []
    monkeypatch.setattr(
        server.listeningPort, "stopListening", lambda: stopped.append(True)
    )
    results: list[Any] = []
    server.stop().addBoth(results.append)
    reactor.advance(10)
    assert results == [None]
    assert stopped == [True]
    assert server.site.draining
