"""
Tests for L{twisted_cgiserve.makeRootResource}: how the tree is built, and
how its root hands a request to the CGI half or the static half, rendered
against in-memory requests.
"""

from __future__ import annotations

import errno
import functools
import os
import pwd
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.web.resource import IResource
from twisted.web.test.requesthelper import DummyRequest

from tests.support.requests import body, header, makeRequest, render
from twisted_cgiserve import Settings, StaticResource, makeRootResource
from twisted_cgiserve import _root as _resource
from twisted_cgiserve._cgi.gateway import ScriptGateway

MISSING_USER = "cgiserve-no-such-user"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n")
    return root


def test_noSuchUser(root: Path) -> None:
    """
    A CGI user that does not exist is a L{ValueError} naming it, by name or
    by number.
    """
    with pytest.raises(KeyError):
        pwd.getpwnam(MISSING_USER)
    with pytest.raises(ValueError, match=f"no such user: '{MISSING_USER}'"):
        makeRootResource(str(root), Settings(cgiUser=MISSING_USER))
    unused = max(entry.pw_uid for entry in pwd.getpwall()) + 1
    with pytest.raises(ValueError, match=f"no such user: '{unused}'"):
        makeRootResource(str(root), Settings(cgiUser=str(unused)))


def test_userNotLookedUpWithoutCGI(root: Path) -> None:
    """
    With CGI off no script runs, so the CGI user is not looked up.
    """
    resource = makeRootResource(
        str(root), Settings(cgiEnabled=False, cgiUser=MISSING_USER)
    )
    assert body(render(resource, makeRequest(b"/a.txt"))) == b"hello\n"


def test_otherKeyErrorPropagates(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Only the user lookup turns a L{KeyError} into "no such user": one from
    anywhere else in building the tree is a bug, and propagates as it is.
    """

    def broken(*args: object, **kwargs: object) -> StaticResource:
        raise KeyError("not a user")

    monkeypatch.setattr(_resource, "StaticResource", broken)
    with pytest.raises(KeyError, match="not a user"):
        makeRootResource(str(root), Settings(cgiUser="root"))
    with pytest.raises(KeyError, match="not a user"):
        makeRootResource(str(root), Settings(cgiEnabled=False))


# The entry points a request can reach the static files through.
ENTRY_POINTS: dict[str, Callable[[Path], IResource]] = {
    "root": lambda root: makeRootResource(str(root), Settings(cgiUser=None)),
    "root-no-cgi": lambda root: makeRootResource(str(root), Settings(cgiEnabled=False)),
    "static": lambda root: StaticResource(str(root)),
}

UNSUPPORTED = [
    (b"PUT", b"Unsupported method ('PUT')"),
    (b"DELETE", b"Unsupported method ('DELETE')"),
    (b"get", b"Unsupported method ('get')"),
    (b"POST", b"Can only POST to CGI scripts"),
]


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(("method", "message"), UNSUPPORTED)
@pytest.mark.parametrize("uri", [b"/%00", b"/a%00.txt", b"/a.txt", b"/missing"])
def test_unsupportedMethodBeforePath(
    root: Path, entry: str, method: bytes, message: bytes, uri: bytes
) -> None:
    """
    Outside the CGI directories, every entry point checks the method first:
    a method static files do not support is http.server's 501 whatever the
    path, a malformed one (a decoded NUL) included.
    """
    request = render(ENTRY_POINTS[entry](root), makeRequest(uri, method=method))
    assert (request.responseCode, request.responseMessage) == (501, message)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("uri", [b"/%00", b"/a%00.txt", b"/cgi-bin/%00"])
def test_malformedPathForGetAndHead(
    root: Path, entry: str, method: bytes, uri: bytes
) -> None:
    """
    A GET or HEAD, which static files support, goes on to the path: a
    malformed one is a 400 from every entry point.
    """
    request = render(ENTRY_POINTS[entry](root), makeRequest(uri, method=method))
    assert request.responseCode == 400


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE"])
def test_malformedPathBelowNoCGIDirectory(root: Path, method: bytes) -> None:
    """
    A malformed path names no script, so it is below no CGI directory
    however it starts: another method is a 501 there as everywhere.
    """
    resource = makeRootResource(str(root), Settings(cgiUser=None))
    request = render(resource, makeRequest(b"/cgi-bin/%00", method=method))
    assert request.responseCode == 501


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"GET"])
def test_cgiDirectoryTakesEveryMethod(root: Path, method: bytes) -> None:
    """
    Below a CGI directory the root hands every method to CGI dispatch
    (here: no such script, 404) instead of refusing it; with CGI off the
    same path is the static half's, which refuses the method.
    """
    uri = b"/cgi-bin/missing.sh"
    resource = makeRootResource(str(root), Settings(cgiUser=None))
    request = render(resource, makeRequest(uri, method=method))
    assert request.responseCode == 404
    assert request.responseMessage == b"No such CGI script ('/cgi-bin/missing.sh')"
    plain = makeRootResource(str(root), Settings(cgiEnabled=False))
    request = render(plain, makeRequest(uri, method=method))
    assert request.responseCode == (404 if method == b"GET" else 501)


# What counts as a script, as configured, and the inherited environment.
# Scripts are "started" by a spawn that records the command and fails, so
# no process runs: the request then gets a 502.

SH = "/bin/sh"


class _RecordingSpawn:
    """
    Records each script start and refuses it (C{ENOEXEC}).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []

    def __call__(
        self,
        reactor: object,
        protocol: object,
        executable: str,
        args: Sequence[str],
        *,
        environment: Mapping[str, str],
        directory: str,
        user: tuple[int, int] | None,
    ) -> object:
        self.calls.append((executable, list(args), dict(environment)))
        raise OSError(errno.ENOEXEC, "Exec format error")

    def started(self) -> list[str]:
        """
        The scripts started, whether executed or interpreted.
        """
        return [
            args[1] if executable == SH else args[0]
            for executable, args, _ in self.calls
        ]


@pytest.fixture
def spawn(monkeypatch: pytest.MonkeyPatch) -> _RecordingSpawn:
    """
    Every root built in the test starts its scripts through this spawn.
    """
    recording = _RecordingSpawn()
    monkeypatch.setattr(
        _resource, "ScriptGateway", functools.partial(ScriptGateway, spawn=recording)
    )
    return recording


# Every file of the tree, each with its own marker in its bytes.
TREE = {
    "top.sh": 0o755,
    "index.html": 0o644,
    "cgi-bin/x.sh": 0o755,
    "sub/run.cgi": 0o755,
    "sub/t.pl": 0o644,
    "sub/index.html": 0o644,
    "dir.cgi/page.txt": 0o644,
}


def _request(uri: bytes, method: bytes = b"GET") -> DummyRequest:
    """
    A request over plain HTTP, as a script's environment needs it.
    """
    request = makeRequest(uri, method=method)
    request.isSecure = lambda: False  # type: ignore[method-assign]
    return request


def _marker(name: str) -> bytes:
    return f"SOURCE-OF:{name}".encode()


@pytest.fixture
def scripts(root: Path) -> Path:
    """
    The root with scripts by directory, by extension and for an
    interpreter, a subdirectory with an index file, and a directory named
    like a script.
    """
    for name, mode in TREE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"#!/bin/sh\n# " + _marker(name) + b"\n")
        (root / name).chmod(mode)
    return root


def _leaked(request: DummyRequest) -> list[str]:
    sent = body(request)
    return [name for name in TREE if _marker(name) in sent]


@pytest.mark.parametrize(
    ("uri", "code", "started", "sent"),
    [
        (b"/top.sh", 502, "top.sh", None),
        (b"/TOP.SH", 404, None, None),
        (b"/", 403, None, None),
        (b"/index.html", 403, None, None),
        (b"/sub", 403, None, None),
        (b"/sub/", 200, None, "sub/index.html"),
        (b"/sub/t.pl", 200, None, "sub/t.pl"),
        (b"/top.sh/", 404, None, None),
        (b"/top.sh/more", 404, None, None),
        (b"/cgi-bin/x.sh", 200, None, "cgi-bin/x.sh"),
    ],
)
def test_rootAsCGIDirectory(  # noqa: PLR0917
    scripts: Path,
    spawn: _RecordingSpawn,
    uri: bytes,
    code: int,
    started: str | None,
    sent: str | None,
) -> None:
    """
    With C{--cgi-dir /} top-level files are scripts (an index file too, so
    the root is never served), as with http.server's C{cgi_directories =
    ['/']}; subdirectories are static, other CGI directories or not.
    """
    resource = makeRootResource(
        str(scripts), Settings(cgiDirectories=("/",), cgiUser=None)
    )
    request = render(resource, _request(uri))
    assert (request.responseCode or 200) == code
    assert spawn.started() == ([str(scripts / started)] if started else [])
    assert _leaked(request) == ([sent] if sent else [])


@pytest.mark.parametrize(
    ("uri", "method", "code", "pathInfo"),
    [
        (b"/sub/run.cgi", b"GET", 502, ""),
        (b"/sub/run.cgi/a/b", b"POST", 502, "/a/b"),
        (b"/sub/RUN.CGI", b"GET", 404, None),
        (b"/sub/run.cgi.", b"GET", 404, None),
        (b"/sub/run%2ecgi/x", b"GET", 502, "/x"),
        (b"/sub/missing.cgi", b"PUT", 404, None),
        (b"/dir.cgi/", b"GET", 200, None),
        (b"/dir.cgi/page.txt", b"POST", 501, None),
        (b"/cgi-bin/x.sh", b"GET", 502, ""),
    ],
)
def test_extensionAnywhere(  # noqa: PLR0917
    scripts: Path,
    spawn: _RecordingSpawn,
    uri: bytes,
    method: bytes,
    code: int,
    pathInfo: str | None,
) -> None:
    """
    With C{--cgi-ext .cgi} a file so named runs wherever it is, with the
    rest of the path as C{PATH_INFO}, for every method; a spelling naming
    no such file runs nothing and sends nothing; a directory named so is a
    directory.
    """
    resource = makeRootResource(
        str(scripts), Settings(cgiExtensions=(".cgi",), cgiUser=None)
    )
    request = render(resource, _request(uri, method=method))
    assert (request.responseCode or 200) == code
    if pathInfo is None:
        assert spawn.calls == []
    else:
        [(_, _, env)] = spawn.calls
        assert env["PATH_INFO"] == pathInfo
    assert _leaked(request) == []
    dir_ = body(render(resource, _request(b"/dir.cgi/page.txt")))
    assert _marker("dir.cgi/page.txt") in dir_


def test_extensionWithCGIOff(scripts: Path, spawn: _RecordingSpawn) -> None:
    """
    With CGI off nothing runs, and a file named as a script is still never
    sent: its extension says it holds code.
    """
    resource = makeRootResource(
        str(scripts), Settings(cgiExtensions=(".cgi",), cgiEnabled=False)
    )
    request = render(resource, _request(b"/sub/run.cgi"))
    assert request.responseCode == 404
    assert _leaked(request) == []
    assert spawn.calls == []


def test_interpreter(scripts: Path, spawn: _RecordingSpawn) -> None:
    """
    A script with an interpreter's extension runs through the interpreter,
    without an execute bit: the interpreter, the script, then the query's
    words. The interpreter's extension alone makes no file a script.
    """
    settings = Settings(
        cgiExtensions=(".pl",), cgiInterpreters=((".pl", SH),), cgiUser=None
    )
    resource = makeRootResource(str(scripts), settings)
    render(resource, _request(b"/sub/t.pl/info?a+b"))
    [(executable, args, env)] = spawn.calls
    script = str(scripts / "sub" / "t.pl")
    assert (executable, args) == (SH, [SH, script, "a", "b"])
    assert (env["SCRIPT_FILENAME"], env["PATH_INFO"]) == (script, "/info")
    alone = Settings(cgiInterpreters=((".pl", SH),), cgiUser=None)
    request = render(makeRootResource(str(scripts), alone), _request(b"/sub/t.pl"))
    assert _leaked(request) == ["sub/t.pl"]
    assert len(spawn.calls) == 1


POISON = {
    "DISTGIT_CONFIG": "/etc/dist-git.conf",
    "http_proxy": "http://proxy.example:3128",
    "PATH": "/opt/custom/bin:/usr/bin",
    "HTTP_X": "poisoned",
    "HTTP_PROXY": "http://evil.example:1234",
    "CONTENT_TYPE": "poisoned",
    "CONTENT_LENGTH": "999",
    "AUTH_TYPE": "Basic",
    "REMOTE_USER": "admin",
    "HTTPS": "on",
    "PATH_TRANSLATED": "/etc/passwd",
    "REDIRECT_STATUS": "poisoned",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "LISTEN_FDS": "3",
    "LISTEN_PID": "1",
    "WATCHDOG_USEC": "1000",
    "CREDENTIALS_DIRECTORY": "/run/credentials/x",
    "INVOCATION_ID": "abc",
    "JOURNAL_STREAM": "8:123",
}


@pytest.mark.parametrize("inherit", [True, False])
def test_inheritEnvironment(
    scripts: Path,
    spawn: _RecordingSpawn,
    monkeypatch: pytest.MonkeyPatch,
    inherit: bool,
) -> None:
    """
    With C{--cgi-inherit-env} scripts get the environment the server
    started with, less systemd's variables and every name that could pose
    as the request's, whose own values win; without it, none of it.
    """
    for name, value in POISON.items():
        monkeypatch.setenv(name, value)
    settings = Settings(cgiInheritEnvironment=inherit, cgiUser=None)
    resource = makeRootResource(str(scripts), settings)
    # Read once, at start.
    monkeypatch.setenv("LATE_VARIABLE", "1")
    monkeypatch.setenv("DISTGIT_CONFIG", "/changed")
    render(resource, _request(b"/cgi-bin/x.sh"))
    [(_, _, env)] = spawn.calls
    assert "LATE_VARIABLE" not in env
    for name in ("DISTGIT_CONFIG", "http_proxy", "PATH"):
        assert (env.get(name) == POISON[name]) is inherit
    for name in ("HTTP_X", "HTTP_PROXY", "AUTH_TYPE", "REMOTE_USER", "HTTPS",
                 "PATH_TRANSLATED", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
                 "WATCHDOG_USEC", "CREDENTIALS_DIRECTORY", "INVOCATION_ID",
                 "JOURNAL_STREAM", "CONTENT_LENGTH"):  # fmt: skip
        assert name not in env
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["REDIRECT_STATUS"] == "200"


def _isScript(
    relative: str, directories: tuple[str, ...], extensions: tuple[str, ...]
) -> bool:
    """
    Whether the file at C{relative} is a script by the configuration: in a
    CGI directory (directly, for C{/}), or named with an extension.
    """
    inDirectory = any(
        "/" not in relative if d == "/" else relative.startswith(d[1:] + "/")
        for d in directories
    )
    name = relative.rsplit("/", 1)[-1].lower()
    return inDirectory or any(name.endswith(e.lower()) for e in extensions)


_rootConfiguration = st.tuples(
    st.lists(st.sampled_from(["/", "/cgi-bin", "/sub"]), unique=True, max_size=2),
    st.lists(st.sampled_from([".cgi", ".PL", ".html"]), unique=True, max_size=2),
    st.booleans(),
    st.booleans(),
)
_rootPaths = st.lists(
    st.sampled_from(
        ["..", ".", "", "%2e%2e", "%2f", "cgi-bin", "CGI-BIN", "sub", "SUB",
         "dir.cgi", "top.sh", "TOP.SH", "index.html", "run.cgi", "RUN.CGI",
         "run.cgi.", "run.cgi%20", "run%2ecgi", "t.pl", "T.PL", "t.pl.",
         "x.sh", "page.txt", "%252e%252e", "\\"]
    ),
    max_size=5,
).map(lambda words: ("/" + "/".join(words)).encode())  # fmt: skip


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_rootConfiguration, _rootPaths, st.sampled_from([b"GET", b"HEAD", b"POST"]))
def test_scriptsNeverServedNorRunUnlessConfigured(
    scripts: Path,
    spawn: _RecordingSpawn,
    configuration: tuple[list[str], list[str], bool, bool],
    uri: bytes,
    method: bytes,
) -> None:
    """
    For any configuration of CGI directories, extensions and interpreter,
    with CGI on or off, and any spelling of any path: the bytes of a file
    the configuration makes a script are never sent, and only such files
    are started.
    """
    directories, extensions, interpreted, enabled = configuration
    settings = Settings(
        cgiDirectories=tuple(directories) or ("/cgi-bin",),
        cgiExtensions=tuple(extensions),
        cgiInterpreters=((".pl", SH),) if interpreted else (),
        cgiEnabled=enabled,
        cgiUser=None,
    )
    del spawn.calls[:]
    resource = makeRootResource(str(scripts), settings)
    request = render(resource, _request(uri, method=method))
    scriptDirectories = settings.cgiDirectories if enabled else ()
    for name in _leaked(request):
        assert not _isScript(name, scriptDirectories, settings.cgiExtensions)
    for script in spawn.started():
        relative = os.path.relpath(script, scripts)
        assert _isScript(relative, scriptDirectories, settings.cgiExtensions)


def test_rootMimeTypes(tmp_path: Path) -> None:
    """
    L{Settings.mimeTypes} reaches the static half of L{makeRootResource}.
    """
    (tmp_path / "a.md").write_bytes(b"# a\n")
    root = makeRootResource(
        str(tmp_path), Settings(mimeTypes=((".md", "text/x-markdown"),))
    )
    request = render(root, makeRequest(b"/a.md"))
    assert header(request, b"content-type") == b"text/x-markdown"


def test_streamsBodiesOfScriptsOnly(root: Path) -> None:
    """
    Asked at the end of a request's head, the root streams the bodies of
    requests its CGI half takes, and of no other (static paths, malformed
    ones, everything with CGI off).
    """
    (root / "cgi-bin" / "s.sh").write_bytes(b"#!/bin/sh\n")
    resource = makeRootResource(str(root))
    streams = resource.streamsBody  # type: ignore[attr-defined]
    assert streams(makeRequest(b"/cgi-bin/s.sh", method=b"POST"))
    assert not streams(makeRequest(b"/a.txt", method=b"POST"))
    assert not streams(makeRequest(b"/cgi-bin/%00", method=b"POST"))
    off = makeRootResource(str(root), Settings(cgiEnabled=False))
    assert not off.streamsBody(  # type: ignore[attr-defined]
        makeRequest(b"/cgi-bin/s.sh", method=b"POST")
    )
