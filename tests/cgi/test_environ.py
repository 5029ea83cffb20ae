"""
Tests for L{twisted_cgiserve._cgi.environ}: the environment scripts run with.
"""

from __future__ import annotations

from io import BytesIO

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.python.components import Componentized
from twisted.web.test.requesthelper import DummyRequest

from tests.support.requests import makeRequest
from twisted_cgiserve._cgi.environ import (
    BASE_PATH,
    CGIEnvironmentSettings,
    ScriptRequest,
    _address,
    buildEnvironment,
    inheritedEnvironment,
    mountPrefix,
    requestBodyLength,
)
from twisted_cgiserve._http.basicauth import Authentication, IAuthentication

SCRIPT = ScriptRequest(
    scriptName="/cgi-bin/env.sh",
    pathInfo="",
    scriptFilename="/srv/www/cgi-bin/env.sh",
    documentRoot="/srv/www",
    bodyLength=None,
)


def _env(  # noqa: PLR0917
    uri: bytes = b"/cgi-bin/env.sh",
    headers: list[tuple[bytes, bytes]] | None = None,
    settings: CGIEnvironmentSettings | None = None,
    script: ScriptRequest = SCRIPT,
    method: bytes = b"GET",
    environ: dict[str, str] | None = None,
    ipv6: bool = False,
) -> tuple[dict[str, str], list[str]]:
    request = makeRequest(uri, method=method)
    for name, value in headers or []:
        request.requestHeaders.addRawHeader(name, value)
    request.clientproto = b"HTTP/1.1"
    request.isSecure = lambda: False
    if ipv6:
        request.client = IPv6Address("TCP", "::ffff:192.0.2.9", 50000)
        request.getHost = lambda: IPv6Address("TCP", "::1", 8000)
    else:
        request.client = IPv4Address("TCP", "192.0.2.9", 50000)
        request.getHost = lambda: IPv4Address("TCP", "127.0.0.1", 8000)
    return buildEnvironment(
        request,
        script,
        settings or CGIEnvironmentSettings(),
        "twisted-cgiserve/1",
        environ={"SECRET": "x", "NOTIFY_SOCKET": "/run/n", "HOME": "/root"}
        if environ is None
        else environ,
    )


def test_rfcVariables() -> None:
    """
    The RFC 3875 meta-variables, plus what real applications need.
    """
    env, argv = _env(b"/cgi-bin/env.sh?a=b", [(b"Host", b"example.com:8080")])
    assert {k: env[k] for k in (
        "GATEWAY_INTERFACE", "SERVER_SOFTWARE", "SERVER_PROTOCOL", "SERVER_NAME",
        "SERVER_PORT", "SERVER_ADDR", "REQUEST_METHOD", "REQUEST_URI", "SCRIPT_NAME",
        "SCRIPT_FILENAME", "PATH_INFO", "QUERY_STRING", "DOCUMENT_ROOT",
        "REMOTE_ADDR", "REMOTE_PORT", "REMOTE_HOST", "REDIRECT_STATUS",
        "CONTENT_TYPE", "REQUEST_SCHEME", "PATH",
    )} == {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "twisted-cgiserve/1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "8000",
        "SERVER_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/cgi-bin/env.sh?a=b",
        "SCRIPT_NAME": "/cgi-bin/env.sh",
        "SCRIPT_FILENAME": "/srv/www/cgi-bin/env.sh",
        "PATH_INFO": "",
        "QUERY_STRING": "a=b",
        "DOCUMENT_ROOT": "/srv/www",
        "REMOTE_ADDR": "192.0.2.9",
        "REMOTE_PORT": "50000",
        "REMOTE_HOST": "192.0.2.9",
        "REDIRECT_STATUS": "200",
        "CONTENT_TYPE": "text/plain",
        "REQUEST_SCHEME": "http",
        "PATH": BASE_PATH,
    }  # fmt: skip
    assert argv == []
    assert "CONTENT_LENGTH" not in env
    assert "PATH_TRANSLATED" not in env
    assert "HTTPS" not in env


def test_nothingFromServerEnvironment() -> None:
    """
    Scripts get none of the server's environment unless it is passed on:
    not credentials, not systemd's NOTIFY_SOCKET.
    """
    env, _ = _env()
    assert not {"SECRET", "NOTIFY_SOCKET", "HOME"} & set(env)
    env, _ = _env(
        settings=CGIEnvironmentSettings(
            passEnvironment=("SECRET", "MISSING"),
            setEnvironment=(("A", "b"), ("PATH", "/opt/bin")),
        )
    )
    assert env["SECRET"] == "x" and env["A"] == "b" and env["PATH"] == "/opt/bin"
    assert "MISSING" not in env


def test_headers() -> None:
    """
    Every request header becomes HTTP_*; repeated ones are merged (cookies
    with '; '); names that could pose as others and the httpoxy Proxy header
    are dropped; credentials only on request.
    """
    headers = [
        (b"X-Dup", b"one"),
        (b"X-Dup", b"two"),
        (b"Cookie", b"a=1"),
        (b"Cookie", b"b=2"),
        (b"X_Forwarded_For", b"evil"),
        (b"X-Forwarded-For", b"good"),
        (b"Proxy", b"evil:1"),
        (b"Authorization", b"Basic dXNlcjpwYXNz"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Accept", b"text/html"),
    ]
    env, _ = _env(headers=headers)
    assert env["HTTP_X_DUP"] == "one, two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_FORWARDED_FOR"] == "good"
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["AUTH_TYPE"] == "Basic"
    for absent in ("HTTP_PROXY", "PROXY", "HTTP_AUTHORIZATION", "REMOTE_USER",
                   "HTTP_TRANSFER_ENCODING"):  # fmt: skip
        assert absent not in env
    env, _ = _env(
        headers=headers, settings=CGIEnvironmentSettings(passAuthorization=True)
    )
    assert env["HTTP_AUTHORIZATION"] == "Basic dXNlcjpwYXNz"


def test_alwaysPresent() -> None:
    """
    As in http.server, HTTP_ACCEPT, HTTP_USER_AGENT, HTTP_COOKIE and
    HTTP_REFERER exist (empty) without their headers.
    """
    env, _ = _env()
    for name in ("HTTP_ACCEPT", "HTTP_USER_AGENT", "HTTP_COOKIE", "HTTP_REFERER"):
        assert env[name] == ""


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"[::1]:8080", "[::1]"),
        (b"example.com", "example.com"),
        (b"bad host/x", "127.0.0.1"),
    ],
)
def test_serverName(host: bytes, name: str) -> None:
    """
    SERVER_NAME is the Host without its port (IPv6 bracketed, RFC 3875
    4.1.14), or the local address when the Host is not a host name.
    """
    env, _ = _env(headers=[(b"Host", host)])
    assert env["SERVER_NAME"] == name


def test_ipv4MappedAddresses() -> None:
    """
    A dual-stack socket's IPv4-mapped peer address reaches scripts as plain
    IPv4; an IPv6 local address without Host is bracketed in SERVER_NAME.
    """
    env, _ = _env(ipv6=True)
    assert env["REMOTE_ADDR"] == "192.0.2.9"
    assert env["SERVER_NAME"] == "[::1]"


def test_pathInfo() -> None:
    """
    PATH_TRANSLATED maps PATH_INFO below the document root, never above it.
    """
    script = ScriptRequest("/cgi-bin/env.sh", "/a/../../etc/x y", "/s", "/srv/www", 5)
    env, _ = _env(script=script, method=b"POST")
    assert env["PATH_INFO"] == "/a/../../etc/x y"
    assert env["PATH_TRANSLATED"] == "/srv/www/etc/x y"
    assert env["CONTENT_LENGTH"] == "5"


@pytest.mark.parametrize(
    ("uri", "method", "argv"),
    [
        (b"/s?word1+word%202", b"GET", ["word1", "word 2"]),
        (b"/s?only", b"HEAD", ["only"]),
        (b"/s?a=b", b"GET", []),
        (b"/s?-x", b"GET", []),
        (b"/s?ok+-s", b"GET", []),
        (b"/s?%2dx", b"GET", []),
        (b"/s?a%00b", b"GET", []),
        (b"/s?word", b"POST", []),
        (b"/s", b"GET", []),
        (b"/s?", b"GET", []),
    ],
)
def test_argv(uri: bytes, method: bytes, argv: list[str]) -> None:
    """
    RFC 3875 section 4.4: an indexed query (GET or HEAD, no '=') becomes
    decoded argv words, but never a word a program would take as an option:
    then no word at all.
    """
    assert _env(uri, method=method)[1] == argv


@pytest.mark.parametrize(
    ("pathInfo", "translated"),
    [
        ("/a/b/", "/srv/www/a/b/"),
        ("/", "/srv/www"),
        ("/a\x00b", "/srv/www"),
    ],
)
def test_pathTranslatedEdges(pathInfo: str, translated: str) -> None:
    """
    PATH_TRANSLATED keeps a trailing slash below the root, and is the
    document root itself for a PATH_INFO the file resolver refuses (a NUL).
    """
    script = ScriptRequest("/cgi-bin/env.sh", pathInfo, "/s", "/srv/www", None)
    assert _env(script=script)[0]["PATH_TRANSLATED"] == translated


def test_absoluteFormTarget() -> None:
    """
    An absolute-form request target names the host (without user
    information or port); the Host header is then ignored (RFC 9112
    section 3.2.2).
    """
    env, _ = _env(
        b"http://user@example.org:8080/cgi-bin/env.sh?q=1",
        [(b"Host", b"other.example")],
    )
    assert env["SERVER_NAME"] == "example.org"
    assert env["QUERY_STRING"] == "q=1"


def test_secure() -> None:
    """
    Over TLS, HTTPS is on and the scheme https; without a local port (a
    UNIX socket) the default port of the scheme is given.
    """
    request = makeRequest(b"/cgi-bin/env.sh")
    request.isSecure = lambda: True
    request.getHost = lambda: UNIXAddress(b"/run/cgiserve.sock")
    env, _ = buildEnvironment(
        request, SCRIPT, CGIEnvironmentSettings(), "twisted-cgiserve/1", environ={}
    )
    assert (env["HTTPS"], env["REQUEST_SCHEME"], env["SERVER_PORT"]) == (
        "on",
        "https",
        "443",
    )


@pytest.mark.parametrize(
    ("authorization", "authType"),
    [(b"Basic dXNlcjpwdw==", "Basic"), (b"Bearer", None), (b"A b c", None)],
)
def test_authType(authorization: bytes, authType: str | None) -> None:
    """
    AUTH_TYPE is the scheme of an Authorization header of exactly two
    words, as http.server sets it.
    """
    env, _ = _env(headers=[(b"Authorization", authorization)])
    assert env.get("AUTH_TYPE") == authType


def test_requestBodyLength() -> None:
    """
    CONTENT_LENGTH is the length of the body as received (de-chunked),
    only for a request that has one; the body is left at its start.
    """
    assert requestBodyLength(makeRequest(b"/")) is None
    chunked = makeRequest(b"/", b"POST", {b"Transfer-Encoding": b"chunked"})
    chunked.content = BytesIO(b"12345")
    chunked.content.seek(3)
    assert requestBodyLength(chunked) == 5
    assert chunked.content.tell() == 0
    declared = makeRequest(b"/", b"POST", {b"Content-Length": b"0"})
    assert requestBodyLength(declared) == 0


@pytest.mark.parametrize(
    ("prepath", "prefix"),
    [([], ""), ([b"files"], "/files"), ([b"a", b"b c"], "/a/b c")],
)
def test_mountPrefix(prepath: list[bytes], prefix: str) -> None:
    """
    SCRIPT_NAME starts with the decoded path the tree is mounted at.
    """
    assert mountPrefix(makeRequest(b"/x", prepath=prepath)) == prefix


class _AuthenticatedRequest(DummyRequest, Componentized):
    """
    A request that passed Basic authentication (or an unprotected path),
    as L{twisted_cgiserve._http.basicauth} records it.
    """

    def __init__(self, authentication: Authentication) -> None:
        DummyRequest.__init__(self, [])
        Componentized.__init__(self)
        self.setComponent(IAuthentication, authentication)
        self.uri = b"/cgi-bin/env.sh"
        self.clientproto = b"HTTP/1.1"
        self.client = IPv4Address("TCP", "192.0.2.9", 50000)
        self.requestHeaders.addRawHeader(b"authorization", b"Basic dXNlcjpwdw==")

    def isSecure(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("user", "authType", "remoteUser"),
    [
        (b"alice", "Basic", "alice"),
        ("jörg".encode(), "Basic", "jörg"),
        (None, None, None),
    ],
)
def test_authenticatedUser(
    user: bytes | None, authType: str | None, remoteUser: str | None
) -> None:
    """
    Behind Basic authentication, AUTH_TYPE and REMOTE_USER are what the
    server verified; where the path needed none they are absent, whatever
    Authorization header the client sent; the header itself stays hidden.
    """
    request = _AuthenticatedRequest(Authentication(user))
    env, _ = buildEnvironment(
        request, SCRIPT, CGIEnvironmentSettings(), "twisted-cgiserve/1", environ={}
    )
    assert env.get("AUTH_TYPE") == authType
    assert env.get("REMOTE_USER") == remoteUser
    assert "HTTP_AUTHORIZATION" not in env


# --cgi-inherit-env


def test_inheritedEnvironment() -> None:
    """
    The inherited environment is the server's less systemd's variables and
    every name a request sets or could pose as: upper-case C{HTTP_*},
    C{CONTENT_*}, C{REDIRECT_*} and the meta-variables by name. Other
    names, lower-case C{http_proxy} included, pass.
    """
    server = {
        "DISTGIT_CONFIG": "/etc/dist-git.conf",
        "http_proxy": "http://proxy:3128",
        "PATH": "/opt/bin",
        "SSL_CERT_FILE": "/etc/ca.pem",
        "HTTP_X": "1",
        "CONTENT_MD5": "1",
        "REDIRECT_STATUS": "1",
        "AUTH_TYPE": "Basic",
        "REMOTE_USER": "admin",
        "HTTPS": "on",
        "DOCUMENT_ROOT": "/",
        "NOTIFY_SOCKET": "/run/n",
        "LISTEN_FDS": "3",
        "WATCHDOG_PID": "1",
        "CREDENTIALS_DIRECTORY": "/run/c",
        "INVOCATION_ID": "x",
        "JOURNAL_STREAM": "1:2",
        "CGISERVE_SPAWNER": "@spawner",
        "CGISERVE_WORKER": "1",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/cgiserve-metrics-x",
    }
    assert dict(inheritedEnvironment(server)) == {
        "DISTGIT_CONFIG": "/etc/dist-git.conf",
        "http_proxy": "http://proxy:3128",
        "PATH": "/opt/bin",
        "SSL_CERT_FILE": "/etc/ca.pem",
    }


def test_inheritedEnvironmentYieldsToRequest() -> None:
    """
    Inherited variables come first: the base C{PATH} and every variable of
    the request, passed or set by the administrator, replace them.
    """
    inherited = (("PATH", "/opt/bin"), ("KEEP", "1"), ("SET", "old"))
    env, _ = _env(
        settings=CGIEnvironmentSettings(
            inherited=inherited, setEnvironment=(("SET", "new"),)
        )
    )
    assert (env["PATH"], env["KEEP"], env["SET"]) == ("/opt/bin", "1", "new")
    assert "SECRET" not in env
    plain, _ = _env()
    assert plain["PATH"] == BASE_PATH
    assert "KEEP" not in plain


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("192.0.2.9", "192.0.2.9"),
        ("localhost", "localhost"),
        ("", ""),
        ("::1", "::1"),
        ("2001:db8::9", "2001:db8::9"),
        ("::ffff:192.0.2.9", "192.0.2.9"),
        ("::ffff:c000:209", "192.0.2.9"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("not:an:address", "not:an:address"),
    ],
)
def test_addressAsScriptsExpectIt(host: str, shown: str) -> None:
    """
    IPv4-mapped IPv6 addresses, however spelt, become plain IPv4; any other
    host, an address or not, is passed on as the socket reported it.
    """
    assert _address(host) == shown
