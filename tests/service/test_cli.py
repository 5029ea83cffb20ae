"""
Tests for L{twisted_cgiserve._service.cli}: http.server's command line in
front of C{twistd cgiserve}, parsed without starting anything (the process
itself is tested end to end in tests/e2e/test_main.py).
"""

from __future__ import annotations

import io
from typing import Any, NoReturn

import pytest
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage

from twisted_cgiserve._service import cli
from twisted_cgiserve._service.twistdoptions import twistdOptions

PROGRAM = "python -m twisted_cgiserve"


def parse(*argv: str) -> Any:
    """
    The front options, parsed from C{argv} as the command would parse them
    (as twistd's subcommand).
    """
    maker = cli._findMaker()
    config = twistdOptions(maker, cli.frontOptions(maker.options, PROGRAM))
    config.parseOptions(["--nodaemon", "--pidfile=", "cgiserve", *argv])
    return config.subOptions


def test_programName() -> None:
    """
    Usage and error lines name the command as it was run.
    """
    assert cli.programName("/x/twisted_cgiserve/__main__.py") == PROGRAM
    assert cli.programName("/venv/bin/cgiserve") == "cgiserve"
    assert cli.programName("") == PROGRAM


def test_joinHeadersTwoWords() -> None:
    """
    Python 3.15's C{-H NAME VALUE} becomes one C{--header "NAME: VALUE"};
    C{"Name: value"} and what follows C{--} are left alone.
    """
    assert cli.joinHeaders(["-H", "X-A", "b c", "8000"]) == [
        "--header",
        "X-A: b c",
        "8000",
    ]
    assert cli.joinHeaders(["--header", "X-A", "1"]) == ["--header", "X-A: 1"]
    assert cli.joinHeaders(["-H", "X-A: b", "8000"]) == ["-H", "X-A: b", "8000"]
    assert cli.joinHeaders(["--", "-H", "X", "y"]) == ["--", "-H", "X", "y"]
    # A dangling -H NAME is left for the parser to refuse.
    assert cli.joinHeaders(["-H", "X-A"]) == ["-H", "X-A"]


def test_withoutCGIScriptsDoNotRun() -> None:
    """
    Without C{--cgi}, the CGI directories are ordinary directories, as in
    http.server; with it, scripts run.
    """
    assert parse().config.settings.cgiEnabled is False
    assert parse("--cgi").config.settings.cgiEnabled is True


def test_cgiAndNoCGIContradict(capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{--cgi} with C{--no-cgi}: one line naming the command, exit status 2.
    """
    with pytest.raises(SystemExit) as e:
        parse("--cgi", "--no-cgi")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"{PROGRAM}: error: --cgi and --no-cgi contradict each other "
        f"(see '{PROGRAM} --help')\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--cgi-dir", "/scripts"],
        ["--cgi-ext", ".cgi"],
        ["--cgi-interpreter", "/usr/bin/env"],
    ],
)
def test_scriptOptionsNeedCGI(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Without C{--cgi} nothing runs, as in http.server: an option that says
    what a script is would do nothing, so it is refused in one line (with
    C{--cgi} it is taken).
    """
    if args[0] == "--cgi-interpreter":
        args = ["--cgi-interpreter", ".sh=/bin/sh"]
    with pytest.raises(SystemExit) as e:
        parse(*args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"{args[0]} says what runs as a script; scripts run only with --cgi" in err
    assert len(err.strip().splitlines()) == 1
    assert not parse("--cgi", *args)["no-cgi"]


def test_httpServerOptions() -> None:
    """
    http.server's options: the positional port (with C{-b}), C{-d},
    C{-H} in both spellings, and every option of C{twistd cgiserve}.
    """
    options = parse(
        "--cgi",
        "-b",
        "127.0.0.1",
        "-d",
        "/",
        "-H",
        "X-A",
        "b",
        "--header",
        "X-B: c",
        "--cgi-timeout",
        "5",
        "8123",
    )
    config = options.config
    assert config.directory == "/"
    assert [str(spec) for spec in config.listen] == ["tcp:8123:interface=127.0.0.1"]
    assert config.headers == ((b"X-A", b"b"), (b"X-B", b"c"))
    assert config.settings.cgiTimeout == 5


def test_defaultPort() -> None:
    """
    Without a port, the server listens on 8000, as http.server.
    """
    [spec] = parse().config.listen
    assert "8000" in str(spec)


@pytest.mark.parametrize("flag", ["-p", "--protocol"])
@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1", "http/1.1"])
def test_protocolAccepted(flag: str, version: str) -> None:
    """
    C{-p} is http.server's C{--protocol} (not C{--port}): both HTTP/1.x
    versions are accepted.
    """
    options = parse(flag, version)
    assert options["protocol"] == version.upper()
    [spec] = options.config.listen
    assert "8000" in str(spec)


def test_protocolRefused(capsys: pytest.CaptureFixture[str]) -> None:
    """
    Any other protocol is one line and exit status 2.
    """
    with pytest.raises(SystemExit) as e:
        parse("-p", "HTTP/2.0")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--protocol 'HTTP/2.0' is not HTTP/1.0 or HTTP/1.1" in err


def test_unknownOption(capsys: pytest.CaptureFixture[str]) -> None:
    """
    An unknown option is one line naming the command, exit status 2.
    """
    with pytest.raises(SystemExit) as e:
        parse("--bogus")
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"{PROGRAM}: error: option --bogus")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{-h} and C{--help} list http.server's options and those of C{twistd
    cgiserve}, under the command's own name, and exit with status 0.
    """
    with pytest.raises(SystemExit) as e:
        parse(flag)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: {PROGRAM} [options] [port]\n")
    for option in (
        "--cgi ",
        "-b, --bind=",
        "-d, --directory=",
        "-p, --protocol=",
        "-H, --header=",
        "--tls-cert=",
        "--tls-key=",
        "--tls-password-file=",
        "--cgi-timeout=",
        "--port=",
        "-h, --help",
    ):
        assert option in out, option
    assert "-p, --port" not in out


def capture(event: dict[str, Any]) -> tuple[str, str]:
    """
    What L{cli.TerminalObserver} writes for one event: (out, err).
    """
    out, err = io.StringIO(), io.StringIO()
    cli.TerminalObserver(out, err)(event)
    return out.getvalue(), err.getvalue()


def event(namespace: str, text: str, level: LogLevel = LogLevel.info, **kw: Any) -> Any:
    return {
        "log_namespace": namespace,
        "log_level": level,
        "log_format": text,
        "log_time": 0.0,
        **kw,
    }


def test_observerServingLine() -> None:
    """
    The start-up line goes to standard output, bare, as http.server
    printed it.
    """
    line = "Serving HTTP on 127.0.0.1 port 8000 (http://127.0.0.1:8000/) ..."
    assert capture(event("cgiserve.listen", "{line}", line=line)) == (line + "\n", "")


def test_observerAccessLine() -> None:
    """
    Each request's line goes to standard error, bare.
    """
    line = '127.0.0.1 - - [x] "GET / HTTP/1.1" 200 3 "-" "-"'
    assert capture(event("cgiserve.access", "{line}", line=line)) == ("", line + "\n")


def test_observerInterrupt() -> None:
    """
    Ctrl-C is said in http.server's words on standard output; SIGTERM as
    the server says it, on standard error.
    """
    sigint = event("cgiserve.shutdown", "Received {signal}; stopping.", signal="SIGINT")
    assert capture(sigint) == ("\nKeyboard interrupt received, exiting.\n", "")
    sigterm = event(
        "cgiserve.shutdown", "Received {signal}; stopping.", signal="SIGTERM"
    )
    out, err = capture(sigterm)
    assert out == ""
    assert "[cgiserve.shutdown#info] Received SIGTERM; stopping." in err


def test_observerFilters() -> None:
    """
    The server's messages and every warning or error are shown (with a
    timestamp); Twisted's informational chatter is not.
    """
    assert capture(event("twisted.web.server", "Starting factory")) == ("", "")
    _, err = capture(event("cgiserve.cgi", "script says hi"))
    assert "script says hi" in err
    _, err = capture(event("twisted.internet", "broken", LogLevel.error))
    assert "broken" in err


def test_observerSurvivesClosedStream() -> None:
    """
    A closed terminal does not stop the server.
    """
    out = io.StringIO()
    out.close()
    cli.TerminalObserver(out, out)(event("cgiserve.listen", "x"))


def test_observerIsAnObserver() -> None:
    """
    twistd's logger option takes the class as the observer factory.
    """
    observer = cli.TerminalObserver(io.StringIO(), io.StringIO())
    globalLogPublisher.addObserver(observer)
    globalLogPublisher.removeObserver(observer)


def test_frontOptionsExtendThePlugin() -> None:
    """
    The front options are the plugin's, extended: C{makeService} takes
    them as its own.
    """
    maker = cli._findMaker()
    front = cli.frontOptions(maker.options, PROGRAM)
    assert issubclass(front, maker.options)
    assert issubclass(front, usage.Options)
    assert front.commandName == PROGRAM


def _serviceError(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """
    The one line on standard error with which making the service from
    C{args} ends (exit status 2).
    """
    from twisted.internet.testing import MemoryReactorClock  # noqa: PLC0415

    options = parse(*args)
    with pytest.raises(SystemExit) as e:
        cli._findMaker().makeService(options, reactor=MemoryReactorClock())
    assert e.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"(see '{PROGRAM} --help')"), lines
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--auth-file", "/nonexistent-htpasswd"), "cannot read --auth-file"),
        (("--tls-cert", "/nonexistent.pem"), "cannot read --tls-cert"),
    ],
)
def test_serviceErrorsNameTheCommand(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    The errors found while the service is made (files read only then)
    name the command being run, as parse errors do, not C{twistd
    cgiserve}.
    """
    assert _serviceError(capsys, *args).startswith(f"{PROGRAM}: error: {message}")


def test_endpointErrorNamesTheCommand(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    An endpoint that only fails once the reactor is there (a description
    checked without one) names the command being run too.
    """
    from twisted_cgiserve import tap  # noqa: PLC0415

    def endpointFor(*args: object) -> NoReturn:
        raise ValueError("bad --port tcp:8000: broken")

    monkeypatch.setattr(tap, "endpointFor", endpointFor)
    line = _serviceError(capsys, "--port", "tcp:8000")
    assert line.startswith(f"{PROGRAM}: error: bad --port tcp:8000: broken")
