"""
Tests for L{twisted_cgiserve.tap}: option parsing and the service it builds,
without sockets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock as MemoryReactor

from tests.support.certs import makeCertificate
from twisted_cgiserve._service.listen import ListeningService, parsePort
from twisted_cgiserve._service.reload import ReloadService
from twisted_cgiserve._service.shutdown import ShutdownService
from twisted_cgiserve._service.systemd import ReadinessService
from twisted_cgiserve.tap import Options, makeService


def _parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    By default the current directory is served on port 8000 on every
    interface, with CGI under /cgi-bin and /htbin.
    """
    monkeypatch.chdir(tmp_path)
    options = _parse()
    assert options["directory"] == str(tmp_path)
    assert [str(s) for s in options["listen"]] == ["[::]:8000 (and 0.0.0.0:8000)"]
    settings = options.settings()
    assert settings.cgiDirectories == ("/cgi-bin", "/htbin")
    assert settings.cgiEnabled


def test_repeatedOptions(tmp_path: Path) -> None:
    """
    --port and --cgi-dir are repeatable; --path is an alias of --directory;
    --no-cgi turns CGI off.
    """
    options = _parse(
        "--path", str(tmp_path), "-p", "8001", "--port", "unix:/tmp/x.sock",
        "--cgi-dir", "/scripts/", "--cgi-dir", "/a/b", "--no-cgi",
    )  # fmt: skip
    assert options["directory"] == str(tmp_path)
    assert [s.description for s in options["listen"]] == [None, "unix:/tmp/x.sock"]
    assert options.settings().cgiDirectories == ("/scripts", "/a/b")
    assert not options.settings().cgiEnabled


@pytest.mark.parametrize(
    ("bind", "description"),
    [
        ("127.0.0.1", "tcp:8000:interface=127.0.0.1"),
        ("::1", "tcp6:8000:interface=\\:\\:1"),
        ("[::1]", "tcp6:8000:interface=\\:\\:1"),
        ("0.0.0.0", "tcp:8000:interface=0.0.0.0"),
    ],
)
def test_bind(bind: str, description: str) -> None:
    """
    --bind turns a bare port into a TCP endpoint on that address, IPv6
    literals escaped for the endpoint syntax.
    """
    assert parsePort("8000", bind).description == description


def test_bindHostName() -> None:
    """
    A host name binds to its first address, as http.server does.
    """
    description = parsePort("8000", "localhost").description
    assert description in (
        "tcp:8000:interface=127.0.0.1",
        "tcp6:8000:interface=\\:\\:1",
    )


def test_bindOnlyQualifiesBareNumbers() -> None:
    """
    An endpoint description says where it listens; --bind leaves it alone.
    """
    assert parsePort("tcp:9:interface=::", "127.0.0.1").description == (
        "tcp:9:interface=::"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--directory", "/nonexistent/dir"], "does not exist"),
        (["--port", "70000"], "out of range"),
        (["--port", "bogus:1"], "Unknown endpoint type"),
        (["--cgi-dir", "cgi-bin"], "must start with '/'"),
        (["--cgi-dir", "/"], "normalised path"),
        (["--bind", "no-such-host.invalid"], "cannot resolve"),
        (["--frobnicate"], "not recognized"),
        (["--tls-key", "k.pem"], "--tls-key requires --tls-cert to be set"),
        (["--tls-password-file", "p"], "--tls-password-file requires --tls-cert"),
        (["--tls-cert", "/nonexistent.pem"], "cannot read --tls-cert"),
        (["--header", "X-Frame-Options"], "is not 'Name: value'"),
        (["--header", "Bad Name: 1"], "is not 'Name: value'"),
        (["-H", "Content-Length: 5"], "Content-Length is set by the server"),
        (["-H", "Transfer-Encoding: chunked"], "is set by the server"),
        (["-H", "X-A: caf\u00e9\u2603"], "must be Latin-1"),
        (["--port", "ssl:443:sslmethod=SSLv23_METHOD"], "sslmethod is not supported"),
        (["--cgi-pass-env", "NOTIFY_SOCKET"], "never passed to scripts"),
        (["--cgi-pass-env", "LISTEN_FDS"], "never passed to scripts"),
    ],
)
def test_usageErrors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Bad configuration exits with status 2 and one line on standard error.
    """
    with pytest.raises(SystemExit) as exit:
        _parse(*args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert message in err
    assert err.startswith("twistd cgiserve: error: ")


def test_fileAsDirectory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """
    A file given as the directory is refused.
    """
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit):
        _parse("--directory", str(tmp_path / "f"))
    assert "is not a directory" in capsys.readouterr().err


def test_makeService(tmp_path: Path) -> None:
    """
    The service listens on every port given, all serving the same site.
    """
    options = _parse(
        "--directory", str(tmp_path),
        "--port", "tcp:8080:interface=127.0.0.1", "--port", "tcp:8081",
    )  # fmt: skip
    reactor = MemoryReactor()
    service = makeService(options, reactor=reactor)
    children = list(service)
    assert isinstance(children[0], ShutdownService)
    assert all(isinstance(child, ListeningService) for child in children[1:3])
    # Reloads, and readiness last: it starts once every port is bound.
    assert isinstance(children[3], ReloadService)
    assert isinstance(children[4], ReadinessService)
    service.privilegedStartService()
    service.startService()
    ports = [(port, interface) for port, _f, _b, interface in reactor.tcpServers]
    assert ports == [(8080, "127.0.0.1"), (8081, "")]
    factories = {id(factory) for _p, factory, _b, _i in reactor.tcpServers}
    assert len(factories) == 1
    service.stopService()


def test_dualStack(tmp_path: Path) -> None:
    """
    A bare port listens on C{::}, which takes IPv4 too on a dual-stack host.
    """
    options = _parse("--directory", str(tmp_path), "--port", "8000")
    reactor = MemoryReactor()
    service = makeService(options, reactor=reactor)
    service.privilegedStartService()
    assert [(p, i) for p, _f, _b, i in reactor.tcpServers] == [(8000, "::")]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """
    --version names this project's version and Twisted's.
    """
    with pytest.raises(SystemExit) as exit:
        _parse("--version")
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("twisted-cgiserve ") and "Twisted" in out


def test_headers(tmp_path: Path) -> None:
    """
    --header/-H take "Name: value", repeatable, white space around either
    trimmed, in order.
    """
    options = _parse(
        "--directory", str(tmp_path),
        "--header", "Strict-Transport-Security:  max-age=63072000 ",
        "-H", "Access-Control-Allow-Origin: *",
        "-H", "X-Empty:",
    )  # fmt: skip
    assert options["headers"] == [
        (b"Strict-Transport-Security", b"max-age=63072000"),
        (b"Access-Control-Allow-Origin", b"*"),
        (b"X-Empty", b""),
    ]


def test_tlsCertWithoutTLSPort(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A certificate no port would use is a mistake (most likely an explicit
    tcp: port that was meant to speak TLS): refused, not ignored.
    """
    c = makeCertificate(tmp_path)
    with pytest.raises(SystemExit) as exit:
        _parse("--tls-cert", str(c.combined), "--port", "tcp:8443")
    assert exit.value.code == 2
    assert "no --port uses it" in capsys.readouterr().err
