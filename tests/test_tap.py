"""
Tests for L{twisted_cgiserve.tap}: option parsing into a
L{ServerConfig}, and the service it builds, without sockets.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock as MemoryReactor

from tests.support.certs import makeCertificate
from twisted_cgiserve import tap
from twisted_cgiserve._cgi.spawnerclient import SpawnerService
from twisted_cgiserve._http.request import CGIServeRequest
from twisted_cgiserve._service.config import ServerConfig
from twisted_cgiserve._service.listen import ListeningService
from twisted_cgiserve._service.ports import parsePort
from twisted_cgiserve._service.proxyprotocol import ProxyHeaderFactory
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
    assert [str(s) for s in options.config.listen] == ["[::]:8000 (and 0.0.0.0:8000)"]
    settings = options.config.settings
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
    assert [s.description for s in options.config.listen] == [
        None,
        "unix:/tmp/x.sock",
    ]
    assert options.config.settings.cgiDirectories == ("/scripts", "/a/b")
    assert not options.config.settings.cgiEnabled


def test_newOptions(tmp_path: Path) -> None:
    """
    The options for what counts as a script, the debug page, listings,
    index files, content types and authentication reach the settings and
    the configuration; a port may follow the options, as in
    C{python -m http.server 8000}.
    """
    options = _parse(
        "--directory", str(tmp_path), "--cgi-ext", ".cgi", "--cgi-ext", ".pl",
        "--cgi-interpreter", f".py={sys.executable}", "--cgi-inherit-env",
        "--cgi-debug", "--no-listing", "--index", "home.html",
        "--mime-type", ".md=text/markdown", "--auth-file", "users",
        "--auth-path", "/private", "--auth-realm", "Staff", "8123",
    )  # fmt: skip
    settings = options.config.settings
    assert settings.cgiExtensions == (".cgi", ".pl")
    assert settings.cgiInterpreters == ((".py", sys.executable),)
    assert settings.cgiInheritEnvironment
    assert settings.cgiDebug == "local"
    assert not settings.listDirectories
    assert settings.indexNames == ("home.html",)
    assert settings.mimeTypes == ((".md", "text/markdown"),)
    assert options.config.authFile == "users"
    assert options.config.authPaths == ("/private",)
    assert options.config.authRealm == "Staff"
    assert [s.port for s in options.config.listen] == [8123]
    assert _parse("--cgi-debug=all").config.settings.cgiDebug == "all"
    defaults = _parse().config
    assert defaults.settings.cgiDebug is None
    assert defaults.settings.indexNames == ("index.html", "index.htm")
    assert defaults.authFile is None and defaults.authPaths == ()


@pytest.mark.parametrize(
    ("args", "scope", "ports"),
    [
        (["--cgi-debug"], "local", []),
        (["--cgi-debug", "all"], "all", []),
        (["--cgi-debug", "local", "8001"], "local", ["8001"]),
        (["--cgi-debug", "8001"], "local", ["8001"]),
        (["--cgi-debug=all", "8001"], "all", ["8001"]),
        (["--cgi-deb", "8001"], "local", ["8001"]),
        (["--cgi-debu", "all", "8001"], "all", ["8001"]),
        (["--port", "8002", "--cgi-debug", "all", "8001"], "all", ["8002", "8001"]),
        (["--cgi-debug", "--no-listing", "8001"], "local", ["8001"]),
    ],
)
def test_cgiDebugWords(args: list[str], scope: str, ports: list[str]) -> None:
    """
    C{--cgi-debug} takes its scope as a separate word too (C{all} or
    C{local}), means C{local} alone, and an abbreviation of it never takes
    the port as its value.
    """
    options = _parse(*args)
    assert options.config.settings.cgiDebug == scope
    assert options["ports"] == ports


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["--cgi-set-env", "--cgi-debug"], "--cgi-debug"),
        (["--cgi-set", "--cgi-debug", "all"], "--cgi-debug"),
    ],
)
def test_cgiDebugAsAValue(
    args: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A word C{--cgi-debug} that is another option's value stays that value
    (here refused as not C{NAME=VALUE}), however that option is spelt.
    """
    with pytest.raises(SystemExit):
        _parse(*args)
    assert f"--cgi-set-env {value!r} is not NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "words",
    [
        ["-b", "--cgi-debug"],
        ["-b--cgi-debug"],
        ["8000", "--cgi-debug"],
        ["--", "--cgi-debug"],
    ],
)
def test_cgiDebugWordsReadAsGetoptReadsThem(words: list[str]) -> None:
    """
    Only words that C{getopt} reads as the option are given a value: not
    a short option's value, nor words after the first argument or C{--}.
    """
    longOpt = Options().longOpt
    assert tap._giveCGIDebugItsValue(words, longOpt, "b:d:p:H:") == words
    assert tap._giveCGIDebugItsValue(["-vb", "x", "--cgi-debug"], longOpt, "vb:") == [
        "-vb",
        "x",
        "--cgi-debug=local",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--directory", "/nonexistent/dir"], "does not exist"),
        (["--port", "70000"], "out of range"),
        (["--port", "bogus:1"], "Unknown endpoint type"),
        (["--cgi-dir", "cgi-bin"], "must start with '/'"),
        (["--cgi-dir", "//"], "normalised path"),
        (["--bind", "no-such-host.invalid"], "cannot resolve"),
        (["--frobnicate"], "not recognized"),
        (["--tls-key", "k.pem"], "--tls-key requires --tls-cert to be set"),
        (["--tls-password-file", "p"], "--tls-password-file requires --tls-cert"),
        (["--header", "X-Frame-Options"], "is not 'Name: value'"),
        (["--header", "Bad Name: 1"], "is not 'Name: value'"),
        (["-H", "Content-Length: 5"], "Content-Length is set by the server"),
        (["-H", "Transfer-Encoding: chunked"], "is set by the server"),
        (["-H", "X-A: caf\u00e9\u2603"], "must be Latin-1"),
        (["--port", "ssl:443:sslmethod=SSLv23_METHOD"], "sslmethod is not supported"),
        (["--cgi-pass-env", "NOTIFY_SOCKET"], "never passed to scripts"),
        (["--cgi-pass-env", "LISTEN_FDS"], "never passed to scripts"),
        (["--cgi-timeout", "soon"], "--cgi-timeout 'soon' is not a number"),
        (["--cgi-max-processes", "1.5"], "'1.5' is not a whole number"),
        (["--send-timeout", "-1"], "--send-timeout must not be negative"),
        (["--cgi-user", "no-such-user-here"], "no such user"),
        (["--cgi-set-env", "=x"], "is not NAME=VALUE"),
        (["-H", "X-A: a\rb"], "line breaks are not allowed"),
        (["--cgi-ext", "cgi"], "CGI extension 'cgi' must be a dot and a name"),
        (["--cgi-ext", ".a/b"], "must be a dot and a name"),
        (["--cgi-interpreter", ".pl"], "is not .EXT=/path/to/interpreter"),
        (["--cgi-interpreter", "pl=/usr/bin/env"], "must be a dot and a name"),
        (["--cgi-interpreter", ".pl=perl"], "must be an absolute path"),
        (["--cgi-interpreter", ".pl=/no/such/perl"], "is not an executable file"),
        (["--cgi-debug=some"], "must be 'local' or 'all'"),
        (["--mime-type", ".x"], "is not .EXT=type/subtype"),
        (["--mime-type", ".x=text"], "is not 'type/subtype'"),
        (["--auth-path", "/private"], "--auth-path requires --auth-file"),
        (["--auth-file", "f", "--auth-path", "x"], "must start with '/'"),
        (["--auth-file", "f", "--auth-realm", 'a"b'], "no quotes"),
        (["8000", "8001"], "Wrong number of arguments"),
        (["--trusted-proxy", "10.0.0.1/8"], "--trusted-proxy '10.0.0.1/8' is not"),
        (["--trusted-proxy", "proxy.example"], "is not an address or network"),
        (["--forwarded-header", "X-Real-IP"], "must be X-Forwarded-For or Forwarded"),
        (["--proxy-protocol", "--port", "tcp:80"], "no --port uses it"),
        (["--metrics", "metrics"], "--metrics 'metrics' must be a URL path"),
        (["--metrics", "/metrics/"], "say /metrics"),
        (["--metrics", "/"], "not the root"),
        (["--metrics", "/m?x"], "no query"),
        (["--metrics-allow", "10.0.0.0/8"], "--metrics-allow requires --metrics"),
        (["--metrics", "/m", "--metrics-allow", "10.0.0.1/8"], "has host bits set"),
        (["--metrics", "/m", "--metrics-allow", "localhost"], "is not an address"),
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


def test_cgiSpawnerService(tmp_path: Path) -> None:
    """
    With CGI on, the CGI spawner's service is the last child (started before
    twistd drops privileges, let go after everything else) and the tree's
    scripts are started through it; --no-cgi-spawner and --no-cgi leave it
    out, and scripts are started by the server itself.
    """
    options = _parse("--directory", str(tmp_path), "--port", "tcp:8080")
    service = makeService(options, reactor=MemoryReactor())
    spawner = list(service)[-1]
    assert isinstance(spawner, SpawnerService)
    for words in (["--no-cgi-spawner"], ["--no-cgi"]):
        options = _parse("--directory", str(tmp_path), "--port", "tcp:8080", *words)
        service = makeService(options, reactor=MemoryReactor())
        assert not any(isinstance(child, SpawnerService) for child in service)


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
    assert options.config.headers == (
        (b"Strict-Transport-Security", b"max-age=63072000"),
        (b"Access-Control-Allow-Origin", b"*"),
        (b"X-Empty", b""),
    )


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


def test_config(tmp_path: Path) -> None:
    """
    The options become one frozen configuration holding every value the
    service is built from.
    """
    options = _parse(
        "--directory", str(tmp_path), "--access-log", "-",
        "--idle-timeout", "5", "--header-timeout", "6", "--send-timeout", "7",
        "--max-body-size", "8", "--shutdown-grace", "9",
        "--cgi-timeout", "10", "--cgi-max-processes", "11",
    )  # fmt: skip
    config = options.config
    assert isinstance(config, ServerConfig)
    assert (
        config.directory,
        config.accessLog,
        config.idleTimeout,
        config.headerTimeout,
        config.sendTimeout,
        config.maxBodySize,
        config.shutdownGrace,
    ) == (str(tmp_path), "-", 5.0, 6.0, 7.0, 8, 9.0)
    assert (config.settings.cgiTimeout, config.settings.cgiMaxProcesses) == (10, 11)


NO_REACTOR = """
import sys
from twisted_cgiserve.tap import Options

options = Options()
options.parseOptions(sys.argv[1:])
print("twisted.internet.reactor" in sys.modules)
"""


@pytest.mark.parametrize(
    "port", ["8000", "tcp:8000:interface=127.0.0.1", "unix:/tmp/x.sock"]
)
def test_parsingInstallsNoReactor(tmp_path: Path, port: str) -> None:
    """
    Parsing the options, endpoint descriptions included, installs no
    reactor: twistd installs the one it is asked for (--reactor) after
    the options are parsed.
    """
    result = subprocess.run(
        [sys.executable, "-c", NO_REACTOR, "--directory", str(tmp_path), "-p", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_badDescriptionNeedsNoReactor(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A malformed description is a usage error while parsing, naming the
    value, though no reactor exists yet.
    """
    with pytest.raises(SystemExit) as exit:
        _parse("--port", "tcp:notaport")
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("twistd cgiserve: error: bad --port tcp:notaport: ")
    assert "notaport" in err.removeprefix("twistd cgiserve: error: bad --port")


def test_badTLSFilesInMakeService(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    The TLS files are read in makeService (before twistd drops privileges):
    a bad one ends it with the one line and exit status 2 of every
    configuration error, and no service.
    """
    options = _parse("--directory", str(tmp_path), "--tls-cert", "/nonexistent.pem")
    with pytest.raises(SystemExit) as exit:
        makeService(options, reactor=MemoryReactor())
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "twistd cgiserve: error: cannot read --tls-cert '/nonexistent.pem': No "
        "such file or directory (see 'twistd cgiserve --help')"
    ]


def test_tlsLoadedInMakeService(tmp_path: Path) -> None:
    """
    Parsing the options reads no TLS file (it may not exist yet);
    makeService reads it, and the ports that use it speak TLS.
    """
    c = makeCertificate(tmp_path)
    combined = tmp_path / "later.pem"
    options = _parse(
        "--directory", str(tmp_path), "--tls-cert", str(combined),
        "--bind", "127.0.0.1", "--port", "8443", "--port", "tcp:8080",
    )  # fmt: skip
    combined.write_bytes(c.combined.read_bytes())
    reactor = MemoryReactor()
    service = makeService(options, reactor=reactor)
    listening = [s for s in service if isinstance(s, ListeningService)]
    assert [s.spec.secure for s in listening] == [True, False]
    service.privilegedStartService()
    factories = [type(f).__name__ for _p, f, _b, _i in reactor.tcpServers]
    assert factories == ["TLSMemoryBIOFactory", "CGIServeSite"]


def test_badEndpointInMakeService(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    An endpoint that cannot be built with the real reactor (here: a systemd
    socket that was not passed) is the same one-line usage error.
    """
    options = _parse("--directory", str(tmp_path))
    options.config = replace(
        options.config, listen=(parsePort("systemd:domain=INET:index=7", None),)
    )
    with pytest.raises(SystemExit) as exit:
        makeService(options, reactor=MemoryReactor())
    assert exit.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("twistd cgiserve: error: bad --port systemd:")
    assert "systemd passed no such socket" in line


def test_accessLogCannotOpen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    An access log that cannot be opened ends makeService with one line and
    exit status 1.
    """
    log = tmp_path / "no-such-dir" / "access.log"
    options = _parse("--directory", str(tmp_path), "--access-log", str(log))
    with pytest.raises(SystemExit) as exit:
        makeService(options, reactor=MemoryReactor())
    assert exit.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"twistd cgiserve: cannot open --access-log {str(log)!r}: "
        "No such file or directory"
    ]


def test_proxyProtocol(tmp_path: Path) -> None:
    """
    --proxy-protocol makes bare-number (with or without --bind) and
    systemd: ports expect a PROXY header, timed by --header-timeout; a
    description says for itself.
    """
    options = _parse(
        "--directory", str(tmp_path), "--proxy-protocol", "--header-timeout", "7",
        "--port", "8000", "--port", "tcp:8001",
    )  # fmt: skip
    assert [spec.proxy for spec in options.config.listen] == [True, False]
    assert parsePort("systemd:domain=INET:index=0", None, proxy=True).proxy
    assert not parsePort("unix:/run/s", None, proxy=True).proxy
    reactor = MemoryReactor()
    makeService(options, reactor=reactor).privilegedStartService()
    first, second = (factory for _p, factory, _b, _i in reactor.tcpServers)
    assert isinstance(first, ProxyHeaderFactory)
    assert (first.wrappedFactory, first.timeout) == (second, 7)
    options = _parse("--directory", str(tmp_path), "--bind", "127.0.0.1", "8000")
    assert [spec.proxy for spec in options.config.listen] == [False]
    options = _parse("-d", str(tmp_path), "--proxy-protocol", "-b", "127.0.0.1", "80")
    assert [spec.proxy for spec in options.config.listen] == [True]


def test_trustedProxies(tmp_path: Path) -> None:
    """
    --trusted-proxy (repeatable) gives the site requests that believe
    those proxies' --forwarded-header; without it, the plain ones.
    """

    def site(*args: str) -> object:
        options = _parse("--directory", str(tmp_path), "--port", "tcp:8000", *args)
        reactor = MemoryReactor()
        makeService(options, reactor=reactor).privilegedStartService()
        [(_p, factory, _b, _i)] = reactor.tcpServers
        return factory

    assert site().requestFactory is CGIServeRequest  # type: ignore[attr-defined]
    factory = site(
        "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1",
        "--forwarded-header", "Forwarded",
    )  # fmt: skip
    proxies = factory.requestFactory.trustedProxies  # type: ignore[attr-defined]
    assert [str(n) for n in proxies.networks] == ["10.0.0.0/8", "::1/128"]
    assert proxies.header == "forwarded"


def test_metrics(tmp_path: Path) -> None:
    """
    --metrics gives the site, the TLS reloads and the tree one set of
    metrics, its page at the path, for loopback or the --metrics-allow
    networks; without it, nothing counts.
    """
    from twisted_cgiserve._http.metrics import ServerMetrics  # noqa: PLC0415
    from twisted_cgiserve._http.metricspage import LOOPBACK  # noqa: PLC0415

    cert = makeCertificate(tmp_path / "tls")
    tls = ["--tls-cert", str(cert.cert), "--tls-key", str(cert.key)]

    def site(*args: str) -> object:
        options = _parse("--directory", str(tmp_path), "--port", "8000", *tls, *args)
        reactor = MemoryReactor()
        makeService(options, reactor=reactor).privilegedStartService()
        [(_p, factory, _b, _i)] = reactor.tcpServers
        return factory.wrappedFactory  # type: ignore[attr-defined]

    assert site().metrics is None  # type: ignore[attr-defined]
    plain = site("--metrics", "/metrics")
    metrics = plain.metrics  # type: ignore[attr-defined]
    assert isinstance(metrics, ServerMetrics)
    page = plain.resource._metricsPage  # type: ignore[attr-defined]
    assert (page.segments, page.allowed) == (("metrics",), LOOPBACK)
    assert plain.resource._cgi._metrics is metrics  # type: ignore[attr-defined]
    allowed = site(
        "--metrics", "/status/metrics",
        "--metrics-allow", "10.0.0.0/8", "--metrics-allow", "::1",
    )  # fmt: skip
    page = allowed.resource._metricsPage  # type: ignore[attr-defined]
    assert page.segments == ("status", "metrics")
    assert [str(n) for n in page.allowed] == ["10.0.0.0/8", "::1/128"]


def test_metricsWithWorkers(tmp_path: Path) -> None:
    """
    With --workers, the parent makes the workers' shared metrics directory
    (before the supervisor starts them, removed after they have all
    stopped), names it in their environment and tells it when one ends.
    """
    from twisted_cgiserve._service.metricsdir import MetricsDirectory  # noqa: PLC0415
    from twisted_cgiserve._service.supervisor import Supervisor  # noqa: PLC0415

    options = _parse(
        "--directory", str(tmp_path), "--port", "tcp:8000", "--no-cgi",
        "--workers", "2", "--metrics", "/metrics",
    )  # fmt: skip
    service = makeService(options, reactor=MemoryReactor())
    children = list(service)
    [directory] = [c for c in children if isinstance(c, MetricsDirectory)]
    [supervisor] = list(directory)
    assert isinstance(supervisor, Supervisor)
    assert supervisor._environment == directory.environment
    assert supervisor._workerEnded == directory.workerEnded
    options = _parse(
        "--directory", str(tmp_path), "--port", "tcp:8000", "--no-cgi",
        "--workers", "2",
    )  # fmt: skip
    children = list(makeService(options, reactor=MemoryReactor()))
    assert not any(isinstance(c, MetricsDirectory) for c in children)
