# -*- test-case-name: tests.cgi.test_environ -*-
"""
The environment a CGI script runs with (RFC 3875 section 4.1).

It starts empty, not from the server's environment: http.server and
twisted.web copied all of C{os.environ} into every script, so credentials,
C{NOTIFY_SOCKET} and C{LISTEN_FDS} reached code that answers the network.
Scripts get a sane C{PATH}, the variables the RFC and real applications
need, request headers as C{HTTP_*} (minus the ones that would let a client
forge trusted values), and exactly what the administrator passes on.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from twisted.web.iweb import IRequest

from twisted_cgiserve._http.basicauth import authenticationOf
from twisted_cgiserve._http.grammar import HOP_BY_HOP
from twisted_cgiserve._http.paths import BadRequestPath, resolvePath, splitTarget

__all__ = [
    "BASE_PATH",
    "CGIEnvironmentSettings",
    "ScriptRequest",
    "buildEnvironment",
    "inheritedEnvironment",
    "mountPrefix",
    "requestBodyLength",
]

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"

# Header names that may become HTTP_* variables: letters, digits and '-'
# only, so "X_Forwarded_For" cannot pose as a proxy's "X-Forwarded-For"
# (Apache's rule).
_EXPORTABLE = re.compile(rb"[A-Za-z0-9-]+")

_NOT_EXPORTED = HOP_BY_HOP | {
    # httpoxy: HTTP_PROXY would be read as the script's outbound proxy.
    b"proxy",
    # Already CONTENT_LENGTH and CONTENT_TYPE (RFC 3875 section 4.1.18).
    b"content-length",
    b"content-type",
}
_CREDENTIALS = frozenset({b"authorization", b"proxy-authorization"})

# http.server always set these, empty when the header was absent; scripts
# written for it index os.environ with them.
_ALWAYS = ("HTTP_ACCEPT", "HTTP_USER_AGENT", "HTTP_COOKIE", "HTTP_REFERER")

# What --cgi-inherit-env never hands on. The service manager's messages to
# the server alone: a script with NOTIFY_SOCKET could report the service
# ready or stopping, one with LISTEN_* take its sockets, one with
# CREDENTIALS_DIRECTORY read its keys; CGISERVE_* is what --workers tells
# its workers (their sockets, the CGI spawner's address).
_SERVER_ONLY = frozenset(
    {
        "NOTIFY_SOCKET",
        "JOURNAL_STREAM",
        "INVOCATION_ID",
        "CREDENTIALS_DIRECTORY",
        "MAINPID",
        "MANAGERPID",
        "SYSTEMD_EXEC_PID",
        "MEMORY_PRESSURE_WATCH",
        "MEMORY_PRESSURE_WRITE",
        # --metrics with --workers: the workers' shared metrics directory.
        "PROMETHEUS_MULTIPROC_DIR",
    }
)
_SERVER_ONLY_PREFIXES = ("LISTEN_", "WATCHDOG_", "CGISERVE_")
# Names a request sets, or whose absence means something (RFC 3875
# section 4.1, and what this server and others add): inherited, a value
# would pose as the request's whenever the request has none (no
# AUTH_TYPE: "authenticated"; no HTTPS: the server's "on"), as
# http.server's setdefault let it.
_META_VARIABLES = frozenset(
    {
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "GATEWAY_INTERFACE",
        "PATH_INFO",
        "PATH_TRANSLATED",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_IDENT",
        "REMOTE_PORT",
        "REMOTE_USER",
        "REQUEST_METHOD",
        "REQUEST_SCHEME",
        "REQUEST_URI",
        "SCRIPT_FILENAME",
        "SCRIPT_NAME",
        "SCRIPT_URI",
        "SCRIPT_URL",
        "SERVER_ADDR",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "DOCUMENT_ROOT",
        "DOCUMENT_URI",
        "HTTPS",
        "CONTEXT_DOCUMENT_ROOT",
        "CONTEXT_PREFIX",
    }
)
_META_PREFIXES = ("HTTP_", "CONTENT_", "REDIRECT_")

_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?::([0-9]{1,5}))?")


@dataclass(frozen=True)
class CGIEnvironmentSettings:
    """
    What the administrator adds to every script's environment.

    @ivar passAuthorization: Export the C{Authorization} header as
        C{HTTP_AUTHORIZATION} (C{--cgi-pass-auth}); off by default because
        it carries passwords (RFC 3875 section 9.2).
    @ivar passEnvironment: Names of server environment variables passed on
        when set (C{--cgi-pass-env}).
    @ivar setEnvironment: Fixed variables (C{--cgi-set-env}), applied last.
    @ivar inherited: The server's environment as C{--cgi-inherit-env}
        hands it on (see L{inheritedEnvironment}), read once at start; the
        request's variables replace any of the same name.
    """

    passAuthorization: bool = False
    passEnvironment: tuple[str, ...] = ()
    setEnvironment: tuple[tuple[str, str], ...] = ()
    inherited: tuple[tuple[str, str], ...] = ()


def inheritedEnvironment(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """
    What C{--cgi-inherit-env} gives every script of C{environ}: all of it,
    as http.server gave it, less the service manager's messages to the
    server (C{NOTIFY_SOCKET}, C{LISTEN_*}, C{WATCHDOG_*},
    C{CREDENTIALS_DIRECTORY} and the like) and every name that could pose
    as one of the request's meta-variables (C{HTTP_*}, C{CONTENT_*},
    C{REDIRECT_*}, RFC 3875's names and the ones servers add).

    Lower-case names are kept: environment names are case-sensitive, so
    C{http_proxy} is the administrator's proxy, never a request header.
    """
    return tuple(
        (name, value)
        for name, value in environ.items()
        if name not in _SERVER_ONLY
        and name not in _META_VARIABLES
        and not name.startswith(_SERVER_ONLY_PREFIXES + _META_PREFIXES)
    )


@dataclass(frozen=True)
class ScriptRequest:
    """
    Where a request's script is and how the request path splits around it.

    @ivar scriptName: The script's URL path, decoded (C{SCRIPT_NAME}).
    @ivar pathInfo: The decoded path after the script (C{PATH_INFO}), empty
        or starting with C{/}.
    @ivar scriptFilename: The script's absolute filesystem path.
    @ivar documentRoot: The served directory.
    @ivar bodyLength: The length of the request body after de-chunking, or
        L{None} when the request has no body.
    """

    scriptName: str
    pathInfo: str
    scriptFilename: str
    documentRoot: str
    bodyLength: int | None


def requestBodyLength(request: IRequest) -> int | None:
    """
    The request body's length after de-chunking (C{CONTENT_LENGTH}), or
    L{None} when the request has no body (no C{Content-Length} and no
    C{Transfer-Encoding}).
    """
    headers = request.requestHeaders
    if not (
        headers.hasHeader(b"content-length") or headers.hasHeader(b"transfer-encoding")
    ):
        return None
    content = getattr(request, "content", None)
    if content is None:
        return 0
    content.seek(0, os.SEEK_END)
    length: int = content.tell()
    content.seek(0)
    return length


def mountPrefix(request: IRequest) -> str:
    """
    The decoded URL path the served tree is mounted at (C{""} at a site's
    root), which starts C{SCRIPT_NAME}.
    """
    prepath = getattr(request, "prepath", None) or []
    if not prepath:
        return ""
    return "/" + "/".join(os.fsdecode(segment) for segment in prepath)


def _text(value: bytes) -> str:
    """
    Bytes as an environment value that is encoded back to the same bytes.
    """
    return os.fsdecode(value)


def _address(host: str) -> str:
    """
    A peer or local address as scripts expect it: IPv4-mapped IPv6
    addresses (what a dual-stack socket reports) as plain IPv4.
    """
    if ":" not in host:
        # IPv4 (never mapped) or a name: parsing it would only cost time.
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return host


def _serverName(hostHeader: bytes | None, localHost: str) -> str:
    """
    C{SERVER_NAME}: the host the client asked for (without port), or the
    local address when it named none or something that is not a host.
    """
    if hostHeader is not None:
        match = _HOST.fullmatch(hostHeader.strip())
        if match:
            return match.group(1).decode("ascii")
    if ":" in localHost:
        return f"[{localHost}]"
    return localHost


def _headerVariables(
    rawHeaders: Iterable[tuple[bytes, list[bytes]]], passAuthorization: bool
) -> dict[str, str]:
    """
    C{HTTP_*} variables: repeated headers merged (C{; } for cookies, C{, }
    otherwise, RFC 3875 section 4.1.18), names with characters other than
    letters, digits and C{-} dropped.
    """
    variables: dict[str, list[bytes]] = {}
    for name, values in rawHeaders:
        lowered = name.lower()
        if not _EXPORTABLE.fullmatch(name) or lowered in _NOT_EXPORTED:
            continue
        if lowered in _CREDENTIALS and not (
            passAuthorization and lowered == b"authorization"
        ):
            continue
        key = "HTTP_" + lowered.decode("ascii").upper().replace("-", "_")
        variables.setdefault(key, []).extend(values)
    return {
        key: _text((b"; " if key == "HTTP_COOKIE" else b", ").join(values))
        for key, values in variables.items()
    }


def _authType(authorization: bytes | None) -> str | None:
    """
    C{AUTH_TYPE} as http.server sets it, when the server does no
    authentication (no C{--auth-file}): the scheme of an C{Authorization}
    header of exactly two words. (No C{REMOTE_USER} then: a user name a
    client merely claims must not look authenticated.)
    """
    if authorization is None:
        return None
    words = authorization.split()
    if len(words) != 2:
        return None
    return _text(words[0])


def _argv(method: bytes, query: bytes | None) -> list[str]:
    """
    Command-line words for an "indexed" query (RFC 3875 section 4.4): only
    for GET and HEAD, only when the query has no C{=}; the query split on
    C{+}, each word decoded. If any word cannot be passed safely (it starts
    with C{-}, which a program would take as an option, or holds a NUL), no
    word is passed at all, as the RFC requires.
    """
    if method not in (b"GET", b"HEAD") or not query or b"=" in query:
        return []
    words = []
    for raw in query.split(b"+"):
        word = os.fsdecode(unquote_to_bytes(raw))
        if word.startswith("-") or "\x00" in word:
            return []
        words.append(word)
    return words


def _pathTranslated(documentRoot: str, pathInfo: str) -> str:
    """
    C{PATH_TRANSLATED}: C{PATH_INFO} mapped below the document root with the
    resolver files are served with, so it can never point outside it.
    """
    try:
        resolved = resolvePath(os.fsencode(pathInfo).replace(b"%", b"%25"))
    except BadRequestPath:
        return documentRoot
    translated = os.path.join(documentRoot, *resolved.segments)
    if resolved.trailingSlash and resolved.segments:
        translated += "/"
    return translated


def buildEnvironment(
    request: IRequest,
    script: ScriptRequest,
    settings: CGIEnvironmentSettings,
    serverSoftware: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """
    The environment and extra command-line words for running C{script} for
    C{request}.

    @param environ: The server's environment, for C{passEnvironment}
        (default C{os.environ}).
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {"PATH": BASE_PATH, **dict(settings.inherited)}
    for name in settings.passEnvironment:
        if name in environ:
            env[name] = environ[name]

    headers = request.requestHeaders
    rawHeaders = list(headers.getAllRawHeaders())
    env.update(_headerVariables(rawHeaders, settings.passAuthorization))
    for name in _ALWAYS:
        env.setdefault(name, "")

    local = request.getHost()
    localHost = _address(getattr(local, "host", "") or "")
    localPort = getattr(local, "port", None)
    peer = request.getClientAddress()
    peerHost = _address(getattr(peer, "host", "") or "")
    peerPort = getattr(peer, "port", None)
    hostHeader = (headers.getRawHeaders(b"host") or [None])[-1]
    if request.uri[:8].lower().startswith((b"http://", b"https://")):
        # An absolute-form target names the host itself; Host is ignored
        # (RFC 9112 section 3.2.2).
        authority = request.uri.split(b"//", 1)[1]
        authority = re.split(rb"[/?#]", authority, maxsplit=1)[0]
        hostHeader = authority.rpartition(b"@")[2]
    secure = request.isSecure()

    _path, query = splitTarget(request.uri)
    env.update(
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": serverSoftware,
            "SERVER_PROTOCOL": _text(getattr(request, "clientproto", b"HTTP/1.0")),
            "SERVER_NAME": _serverName(hostHeader, localHost or "localhost"),
            "SERVER_ADDR": localHost,
            "SERVER_PORT": str(
                localPort if localPort is not None else 443 if secure else 80
            ),
            "REQUEST_METHOD": _text(request.method),
            "REQUEST_URI": _text(request.uri),
            "REQUEST_SCHEME": "https" if secure else "http",
            "SCRIPT_NAME": script.scriptName,
            "SCRIPT_FILENAME": script.scriptFilename,
            "PATH_INFO": script.pathInfo,
            "QUERY_STRING": _text(query or b""),
            "DOCUMENT_ROOT": script.documentRoot,
            "REMOTE_ADDR": peerHost,
            "REMOTE_HOST": peerHost,
            # php-cgi refuses to run without it (cgi.force_redirect).
            "REDIRECT_STATUS": "200",
        }
    )
    # Port 0: a trusted proxy named the client but not its port (its own
    # port would be wrong for the client), as nginx's empty $remote_port.
    if peerPort:
        env["REMOTE_PORT"] = str(peerPort)
    if secure:
        env["HTTPS"] = "on"
    if script.pathInfo:
        env["PATH_TRANSLATED"] = _pathTranslated(script.documentRoot, script.pathInfo)
    contentType = (headers.getRawHeaders(b"content-type") or [None])[-1]
    # http.server's value when there is none; scripts written for it rely on it.
    env["CONTENT_TYPE"] = (
        _text(contentType) if contentType is not None else "text/plain"
    )
    if script.bodyLength is not None:
        env["CONTENT_LENGTH"] = str(script.bodyLength)
    # Behind Basic authentication, AUTH_TYPE and REMOTE_USER (RFC 3875
    # sections 4.1.1 and 4.1.11) say what the server verified, and are
    # absent where the path needs none: a header it did not check must not
    # look authenticated.
    authentication = authenticationOf(request)
    if authentication is None:
        authType = _authType((headers.getRawHeaders(b"authorization") or [None])[-1])
        if authType is not None:
            env["AUTH_TYPE"] = authType
    elif authentication.user is not None:
        env["AUTH_TYPE"] = "Basic"
        env["REMOTE_USER"] = _text(authentication.user)
    for name, value in settings.setEnvironment:
        env[name] = value
    return env, _argv(request.method, query)
