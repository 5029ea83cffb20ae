# -*- test-case-name: tests.test_tap -*-
"""
C{twistd cgiserve}: the command line and the service it builds.

Options follow C{python -m http.server} where it has a word for the thing
(C{--bind}, C{--directory}) and C{twistd web} otherwise (C{--path}), so
users of either feel at home. Every configuration error ends the process
with one line on standard error and exit status 2, never a traceback or
twistd's whole usage text.

Parsing the options checks them into a L{ServerConfig} without a reactor
(twistd installs the one it was asked for afterwards); L{makeService} then
reads the TLS files, builds the endpoints and assembles the services, all
before twistd drops privileges.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, cast

from twisted.application.service import IService, MultiService
from twisted.internet.protocol import Factory
from twisted.python import usage

from twisted import __version__ as twistedVersion
from twisted_cgiserve._cgi.privileges import scriptUser
from twisted_cgiserve._cgi.protocol import KILL_GRACE
from twisted_cgiserve._cgi.spawnerclient import spawnerService
from twisted_cgiserve._http.accesslog import AccessLog
from twisted_cgiserve._http.basicauth import BasicAuthResource
from twisted_cgiserve._http.forwarded import HEADERS as FORWARDED_HEADERS
from twisted_cgiserve._http.forwarded import X_FORWARDED_FOR, TrustedProxies
from twisted_cgiserve._http.grammar import HOP_BY_HOP, TOKEN
from twisted_cgiserve._http.htpasswd import HtpasswdError
from twisted_cgiserve._http.metricspage import (
    LOOPBACK,
    MetricsPage,
    Network,
    parseMetricsPath,
    parseNetwork,
)
from twisted_cgiserve._http.paths import DEFAULT_CGI_DIRECTORIES, normaliseCGIDirectory
from twisted_cgiserve._http.request import trustingRequests
from twisted_cgiserve._http.site import CGIServeSite
from twisted_cgiserve._root import buildRoot
from twisted_cgiserve._service.authentication import protect
from twisted_cgiserve._service.config import ServerConfig
from twisted_cgiserve._service.endpoints import checkDescription, endpointFor
from twisted_cgiserve._service.listen import ListeningService
from twisted_cgiserve._service.metricsdir import ENVIRONMENT_VARIABLE, MetricsDirectory
from twisted_cgiserve._service.ports import ListenSpec, parsePort
from twisted_cgiserve._service.reload import ReloadService
from twisted_cgiserve._service.shutdown import ShutdownService
from twisted_cgiserve._service.supervisor import Supervisor
from twisted_cgiserve._service.systemd import ReadinessService
from twisted_cgiserve._service.tls import (
    ReloadingServerCreator,
    TLSConfigurationError,
    TLSFiles,
)
from twisted_cgiserve._service.twistdoptions import chooseLogger
from twisted_cgiserve._service.workers import (
    WORKER_VARIABLES,
    WorkerSetup,
    parseWorkerCount,
    watchParent,
    workerArguments,
)
from twisted_cgiserve._settings import Settings
from twisted_cgiserve._version import __version__

__all__ = ["Options", "makeService"]

_DEFAULT_PORT = "8000"

_EXIT_USAGE = 2

# Headers --header must not set: they frame the message or belong to one
# connection, and a wrong value breaks every response.
_RESERVED = HOP_BY_HOP | {b"content-length"}


def parseHeader(text: str) -> tuple[bytes, bytes]:
    """
    One C{--header "Name: value"}.

    @raise usage.UsageError: It is not a header line, or names a header
        that frames messages.
    """
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not TOKEN.fullmatch(name.encode("latin-1", "replace")):
        raise usage.UsageError(f"--header {text!r} is not 'Name: value'")
    if any(c in value for c in "\r\n\0"):
        raise usage.UsageError(f"--header {text!r}: line breaks are not allowed")
    if name.lower().encode("latin-1", "replace") in _RESERVED:
        raise usage.UsageError(f"--header {text!r}: {name} is set by the server")
    try:
        return name.encode("ascii"), value.encode("latin-1")
    except UnicodeEncodeError:
        raise usage.UsageError(
            f"--header {text!r}: the value must be Latin-1 text"
        ) from None


# The scopes of --cgi-debug; given without one, it means the first.
_CGI_DEBUG_SCOPES = ("local", "all")


def _longOption(name: str, longOpt: Sequence[str]) -> str | None:
    """
    The long option (as in C{longOpt}, C{=} for one that takes a value)
    that C{getopt} takes C{--name} for: the exact name, else its one
    unambiguous expansion; L{None} if none (C{getopt} then reports it).
    """
    if name in longOpt or name + "=" in longOpt:
        return name if name in longOpt else name + "="
    expansions = [o for o in longOpt if o.startswith(name)]
    return expansions[0] if len(expansions) == 1 else None


def _giveCGIDebugItsValue(
    words: Sequence[str], longOpt: Sequence[str], shortOpt: str
) -> list[str]:
    """
    C{words} with C{--cgi-debug} given its value: C{usage.Options} has no
    optional values, yet C{--cgi-debug} alone means loopback clients only,
    and C{--cgi-debug all} (a separate word) must not leave C{all} to be
    read as the port, nor an abbreviation (C{--cgi-deb 8000}) take the
    port as its value.

    Words are read as C{getopt} reads them, so that an option's value is
    never mistaken for C{--cgi-debug}: options up to the first word that
    is not one (or C{--}), each long option under the name C{getopt}
    expands it to, and the value of an option that takes one skipped.
    """
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--" or not word.startswith("-") or word == "-":
            out.append(word)
            break
        if word.startswith("--"):
            name, equals, _ = word[2:].partition("=")
            option = _longOption(name, longOpt)
            if option == "cgi-debug=" and not equals:
                scope = _CGI_DEBUG_SCOPES[0]
                if i < len(words) and words[i] in _CGI_DEBUG_SCOPES:
                    scope = words[i]
                    i += 1
                out.append(f"--cgi-debug={scope}")
                continue
            out.append(word)
            if option is not None and option.endswith("=") and not equals:
                out.extend(words[i : i + 1])
                i += 1
            continue
        out.append(word)
        # Short options: the first that takes a value takes the rest of
        # the word, or the next word.
        for j, letter in enumerate(word[1:], 2):
            if shortOpt.find(letter + ":") != -1 and letter != ":":
                if j == len(word):
                    out.extend(words[i : i + 1])
                    i += 1
                break
    out.extend(words[i:])
    return out


def _number(kind: type[float] | type[int], option: str) -> Any:
    """
    A coercer for a numeric option whose error names the option.
    """

    def coerce(value: str) -> float | int:
        try:
            return kind(value)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise ValueError(f"--{option} {value!r} is not {noun}") from None

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


class Options(usage.Options):
    """
    The options of C{twistd cgiserve}.

    @ivar config: What the options describe, once parsed and checked.
    @ivar parent: twistd's own options, when parsed as its subcommand (set
        by L{usage.Options} before these are parsed).
    """

    config: ServerConfig
    parent: usage.Options | None = None
    # The command as error lines name it (python -m twisted_cgiserve
    # extends these options under its own name).
    commandName = "twistd cgiserve"

    synopsis = "[options] [port]"
    longdesc = (
        "Serve a directory over HTTP as 'python -m http.server' does, and run "
        "CGI scripts under /cgi-bin and /htbin as 'python -m http.server "
        "--cgi' did. Example: twistd -n cgiserve --port 8000"
    )

    optFlags = [
        ["no-cgi", None, "Serve CGI directories as ordinary files: run no scripts."],
        [
            "no-cgi-spawner",
            None,
            "Start each CGI script from the server process itself (with setpriv "
            "for --cgi-user as root) instead of through the CGI spawner.",
        ],
        [
            "cgi-pass-auth",
            None,
            "Give scripts the Authorization header as HTTP_AUTHORIZATION (off by "
            "default: it carries passwords).",
        ],
        [
            "cgi-inherit-env",
            None,
            "Give scripts the server's whole environment, as http.server did "
            "(less systemd's variables and names a request sets). A "
            "compatibility switch: every script sees the server's secrets.",
        ],
        [
            "no-listing",
            None,
            "Answer 404 for a directory without an index file instead of listing it.",
        ],
        [
            "proxy-protocol",
            None,
            "Every connection to a bare-number or systemd: port starts with a "
            "PROXY protocol header (v1 or v2, as haproxy's send-proxy sends), "
            "before TLS; one without it is closed.",
        ],
    ]

    optParameters = [
        [
            "bind",
            "b",
            None,
            "Address for bare-number ports (default: all interfaces, IPv6 and IPv4).",
        ],
        [
            "directory",
            "d",
            None,
            "Directory to serve (default: the current directory).",
        ],
        [
            "access-log",
            None,
            None,
            "Append one combined-log-format line per request to this file "
            "('-' for standard output; default: twistd's log).",
        ],
        [
            "tls-cert",
            None,
            None,
            "PEM certificate (with any intermediate certificates after it, and "
            "the key too if --tls-key is not given): bare-number and systemd: "
            "ports then speak HTTPS.",
        ],
        [
            "tls-key",
            None,
            None,
            "PEM private key for --tls-cert.",
        ],
        [
            "tls-password-file",
            None,
            None,
            "File holding the password of an encrypted --tls-key.",
        ],
        [
            "cgi-debug",
            None,
            None,
            "When a script fails, show what it did (standard error, exit "
            "status, environment) on the error page: to loopback clients "
            "(--cgi-debug) or to all (--cgi-debug=all). For development only.",
        ],
        [
            "auth-file",
            None,
            None,
            "Require HTTP Basic authentication against this htpasswd file "
            "(bcrypt or SHA-crypt hashes); reloaded on SIGHUP.",
        ],
        [
            "auth-realm",
            None,
            "twisted-cgiserve",
            "The realm of --auth-file, shown by browsers when they ask for a password.",
        ],
        [
            "cgi-user",
            None,
            "nobody",
            "The user (name or number) scripts run as when the server runs as "
            "root, as http.server ran them as nobody. Ignored when not root.",
        ],
        [
            "cgi-timeout",
            None,
            60.0,
            "Seconds a CGI script may go without writing output before it is "
            "ended (504 if it sent nothing yet); 0: no limit.",
            _number(float, "cgi-timeout"),
        ],
        [
            "cgi-max-processes",
            None,
            50,
            "The most CGI scripts running at once; further requests get 503 "
            "with Retry-After; 0: no limit.",
            _number(int, "cgi-max-processes"),
        ],
        [
            "max-body-size",
            None,
            1024 * 1024 * 1024,
            "The largest request body accepted, in bytes (413 beyond); 0: no limit.",
            _number(int, "max-body-size"),
        ],
        [
            "idle-timeout",
            None,
            60.0,
            "Seconds an idle connection is kept open; 0: no limit.",
            _number(float, "idle-timeout"),
        ],
        [
            "header-timeout",
            None,
            20.0,
            "Seconds a client has to send a request's headers once it has "
            "started it (408 beyond); 0: no limit.",
            _number(float, "header-timeout"),
        ],
        [
            "send-timeout",
            None,
            60.0,
            "Seconds a response may make no progress because the client does "
            "not read it before it is cut and its script ended; 0: no limit.",
            _number(float, "send-timeout"),
        ],
        [
            "shutdown-grace",
            None,
            30.0,
            "On SIGTERM, seconds to let requests in progress finish before "
            "their scripts are ended.",
            _number(float, "shutdown-grace"),
        ],
        [
            "workers",
            None,
            "1",
            "Worker processes serving the same ports, under a parent that "
            "serves nothing ('auto': one per CPU); 1: one process, no parent.",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at this URL path (as /metrics), to "
            "127.0.0.1 and ::1 only unless --metrics-allow is given; others "
            "get 404. Default: off.",
        ],
        [
            "forwarded-header",
            None,
            X_FORWARDED_FOR,
            "The header a --trusted-proxy names the client in: "
            "X-Forwarded-For (with X-Forwarded-Proto) or Forwarded (RFC 7239).",
        ],
    ]

    compData = usage.Completions(
        optActions={
            "directory": usage.CompleteDirs(),
            "access-log": usage.CompleteFiles(),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["cgi-dirs"] = []
        self["cgi-pass-env"] = []
        self["cgi-set-env"] = []
        self["headers"] = []
        self["cgi-exts"] = []
        self["cgi-interpreters"] = []
        self["auth-paths"] = []
        self["indexes"] = []
        self["mime-types"] = []
        self["trusted-proxies"] = []
        self.trustedProxies: TrustedProxies | None = None
        # --metrics: the page's path (its segments) and who may read it.
        self.metricsPath: tuple[str, ...] | None = None
        self.metricsAllowed: list[Network] = []

    def opt_port(self, value: str) -> None:
        """
        Where to listen; repeatable. A bare number is a TCP port on every
        interface (or on --bind); anything else is a Twisted endpoint
        description such as tcp:8000:interface=127.0.0.1, tcp6:8000,
        unix:/run/cgiserve.sock, ssl:8443:privateKey=key.pem or
        systemd:domain=INET:index=0. Default: 8000.
        """
        self["ports"].append(value)

    opt_p = opt_port

    def opt_path(self, value: str) -> None:
        """
        Alias of --directory, as in 'twistd web'.
        """
        self["directory"] = value

    def opt_cgi_dir(self, value: str) -> None:
        """
        URL path below which files are CGI scripts; repeatable (default:
        /cgi-bin and /htbin).
        """
        self["cgi-dirs"].append(value)

    def opt_cgi_ext(self, extension: str) -> None:
        """
        Files with this extension (as .cgi) are CGI scripts wherever they
        are; repeatable.
        """
        self["cgi-exts"].append(extension)

    def opt_cgi_interpreter(self, assignment: str) -> None:
        """
        .EXT=/path/to/interpreter: run scripts with that extension with that
        program (they need neither the execute bit nor #!), as lighttpd's
        cgi.assign; repeatable. The extension alone does not make a file a
        script: it must be in a CGI directory or have a --cgi-ext.
        """
        extension, equals, interpreter = assignment.partition("=")
        if not equals or not extension or not interpreter:
            raise usage.UsageError(
                f"--cgi-interpreter {assignment!r} is not .EXT=/path/to/interpreter"
            )
        self["cgi-interpreters"].append((extension, interpreter))

    def opt_auth_path(self, prefix: str) -> None:
        """
        Require --auth-file only below this URL path; repeatable (default:
        everywhere).
        """
        self["auth-paths"].append(prefix)

    def opt_index(self, name: str) -> None:
        """
        A file name served for a directory, tried in order; repeatable
        (default: index.html, index.htm).
        """
        self["indexes"].append(name)

    def opt_mime_type(self, assignment: str) -> None:
        """
        .EXT=type/subtype: the content type of files with that extension;
        repeatable.
        """
        extension, equals, contentType = assignment.partition("=")
        if not equals or not extension or not contentType:
            raise usage.UsageError(
                f"--mime-type {assignment!r} is not .EXT=type/subtype"
            )
        self["mime-types"].append((extension, contentType))

    def opt_cgi_pass_env(self, name: str) -> None:
        """
        Pass this variable of the server's environment on to scripts (when
        it is set); repeatable. Scripts otherwise get only PATH and the CGI
        variables.
        """
        self["cgi-pass-env"].append(name)

    def opt_cgi_set_env(self, assignment: str) -> None:
        """
        Set NAME=VALUE in every script's environment; repeatable.
        """
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise usage.UsageError(f"--cgi-set-env {assignment!r} is not NAME=VALUE")
        self["cgi-set-env"].append((name, value))

    def opt_header(self, line: str) -> None:
        """
        Add "Name: value" to every successful response (2xx and 304) that
        does not already have that header, e.g. Strict-Transport-Security;
        repeatable.
        """
        self["headers"].append(parseHeader(line))

    opt_H = opt_header

    def opt_trusted_proxy(self, network: str) -> None:
        """
        A proxy (address or CIDR) whose X-Forwarded-For (or --forwarded-header
        Forwarded) and X-Forwarded-Proto name the client and its scheme;
        repeatable. Default: none.
        """
        try:
            TrustedProxies.parse([network])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        self["trusted-proxies"].append(network)

    def opt_metrics_allow(self, network: str) -> None:
        """
        A client address or CIDR that may read --metrics; repeatable, and
        replaces the default (127.0.0.1 and ::1).
        """
        try:
            self.metricsAllowed.append(parseNetwork(network))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def opt_version(self) -> None:
        """
        Print the versions of twisted-cgiserve and Twisted, and exit.
        """
        print(f"twisted-cgiserve {__version__} (Twisted {twistedVersion})")
        sys.exit(0)

    # usage.Options shows docstrings with their indentation; make each one
    # line of help text.
    for _method in (
        opt_port,
        opt_path,
        opt_cgi_dir,
        opt_cgi_ext,
        opt_cgi_interpreter,
        opt_auth_path,
        opt_index,
        opt_mime_type,
        opt_cgi_pass_env,
        opt_cgi_set_env,
        opt_header,
        opt_trusted_proxy,
        opt_metrics_allow,
        opt_version,
    ):
        _method.__doc__ = " ".join((_method.__doc__ or "").split())
    del _method

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse, and turn any usage error into one line on standard error.
        """
        if options is None:
            options = sys.argv[1:]
        options = _giveCGIDebugItsValue(options, self.longOpt, self.shortOpt)
        # What --workers starts each worker with.
        self.words = list(options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            _configurationError(
                str(e).removeprefix("Parameter type enforcement failed: "),
                self.commandName,
            )

    def parseArgs(self, port: str | None = None) -> None:
        """
        A port after the options, as C{python -m http.server 8000} takes
        it: the same as C{--port}.
        """
        if port is not None:
            self["ports"].append(port)

    def postOptions(self) -> None:
        """
        Check the options and set L{config}. Nothing here needs a reactor
        (twistd has not chosen one yet) or reads the TLS files (that is
        C{makeService}'s work).
        """
        directory = self["directory"] or os.getcwd()
        if not os.path.isdir(directory):
            reason = (
                "does not exist"
                if not os.path.exists(directory)
                else ("is not a directory")
            )
            raise usage.UsageError(f"--directory {directory!r} {reason}")
        self["directory"] = os.path.abspath(directory)

        try:
            self["cgi-dirs"] = [
                normaliseCGIDirectory(d)
                for d in (self["cgi-dirs"] or DEFAULT_CGI_DIRECTORIES)
            ]
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

        for name in (
            "cgi-timeout",
            "cgi-max-processes",
            "max-body-size",
            "idle-timeout",
            "header-timeout",
            "send-timeout",
            "shutdown-grace",
        ):
            if self[name] < 0:
                raise usage.UsageError(f"--{name} must not be negative")
        try:
            settings = self.settings()
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if not self["no-cgi"]:
            try:
                scriptUser(self["cgi-user"])
            except KeyError:
                raise usage.UsageError(
                    f"--cgi-user {self['cgi-user']!r}: no such user"
                ) from None

        tls = self._tlsFiles()
        specs: list[ListenSpec] = []
        for value in self["ports"] or [_DEFAULT_PORT]:
            try:
                spec = parsePort(
                    value, self["bind"], tls, proxy=bool(self["proxy-protocol"])
                )
                # Now, so that a malformed description is a usage error, not
                # a traceback at start-up.
                checkDescription(spec)
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            specs.append(spec)
        if tls is not None and not any(spec.tls == tls for spec in specs):
            raise usage.UsageError(
                "--tls-cert is given but no --port uses it (bare numbers and "
                "systemd: ports do; tcp: and unix: ones stay plain HTTP)"
            )
        if self["proxy-protocol"] and not any(spec.proxy for spec in specs):
            raise usage.UsageError(
                "--proxy-protocol is given but no --port uses it (bare numbers and "
                "systemd: ports do; a description says haproxy:tcp:PORT)"
            )
        if self["auth-paths"] and self["auth-file"] is None:
            raise usage.UsageError("--auth-path requires --auth-file")
        for prefix in self["auth-paths"]:
            if not prefix.startswith("/"):
                raise usage.UsageError(f"--auth-path {prefix!r} must start with '/'")
        if any(c in self["auth-realm"] for c in '"\\\r\n\0'):
            raise usage.UsageError(
                f"--auth-realm {self['auth-realm']!r}: no quotes, backslashes "
                "or line breaks"
            )
        # twistd resolves the logger it is given in its own postOptions,
        # after this one.
        try:
            chooseLogger(self.parent)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        try:
            workers = parseWorkerCount(str(self["workers"]))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        header = self["forwarded-header"].lower()
        if header not in FORWARDED_HEADERS:
            raise usage.UsageError(
                f"--forwarded-header {self['forwarded-header']!r} must be "
                "X-Forwarded-For or Forwarded"
            )
        if self["trusted-proxies"]:
            self.trustedProxies = TrustedProxies.parse(self["trusted-proxies"], header)
        if self["metrics"] is not None:
            try:
                self.metricsPath = parseMetricsPath(self["metrics"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
        elif self.metricsAllowed:
            raise usage.UsageError("--metrics-allow requires --metrics")
        self.config = ServerConfig(
            directory=self["directory"],
            settings=settings,
            listen=tuple(specs),
            accessLog=self["access-log"],
            idleTimeout=self["idle-timeout"],
            headerTimeout=self["header-timeout"],
            sendTimeout=self["send-timeout"],
            maxBodySize=self["max-body-size"],
            shutdownGrace=self["shutdown-grace"],
            headers=tuple(self["headers"]),
            authFile=self["auth-file"],
            authRealm=self["auth-realm"],
            authPaths=tuple(self["auth-paths"]),
            workers=workers,
        )

    def _tlsFiles(self) -> TLSFiles | None:
        if self["tls-cert"] is None:
            for name in ("tls-key", "tls-password-file"):
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} requires --tls-cert to be set")
            return None
        return TLSFiles(self["tls-cert"], self["tls-key"], self["tls-password-file"])

    def settings(self) -> Settings:
        """
        The served tree's settings these options describe.
        """
        return Settings(
            cgiDirectories=tuple(self["cgi-dirs"]),
            cgiEnabled=not self["no-cgi"],
            cgiPassAuthorization=bool(self["cgi-pass-auth"]),
            cgiPassEnvironment=tuple(self["cgi-pass-env"]),
            cgiSetEnvironment=tuple(self["cgi-set-env"]),
            cgiUser=self["cgi-user"],
            cgiTimeout=self["cgi-timeout"],
            cgiMaxProcesses=self["cgi-max-processes"],
            cgiInheritEnvironment=bool(self["cgi-inherit-env"]),
            cgiExtensions=tuple(self["cgi-exts"]),
            cgiInterpreters=tuple(self["cgi-interpreters"]),
            cgiDebug=self["cgi-debug"],
            mimeTypes=tuple(self["mime-types"]),
            indexNames=tuple(self["indexes"]) or Settings().indexNames,
            listDirectories=not self["no-listing"],
        )


def _configurationError(message: str, command: str = "twistd cgiserve") -> NoReturn:
    """
    End the process as every configuration error does: one line on standard
    error, exit status 2.
    """
    sys.stderr.write(f"{command}: error: {message} (see '{command} --help')\n")
    sys.stderr.flush()
    raise SystemExit(_EXIT_USAGE) from None


def _globalReactor() -> Any:
    """
    The global reactor, imported only when the service is made (twistd has
    installed the one it was asked for by then), never while the options are
    parsed.
    """
    from twisted.internet import reactor  # noqa: PLC0415

    return reactor


def _loadCertificates(
    specs: Sequence[ListenSpec], command: str
) -> dict[TLSFiles, ReloadingServerCreator]:
    """
    Read and check every certificate and key the ports use, once each:
    before twistd drops privileges (private keys are usually readable by
    root alone), and so that a bad file is a one-line error rather than
    failed handshakes.

    @param command: The command's name, for the error line.
    """
    creators: dict[TLSFiles, ReloadingServerCreator] = {}
    for spec in specs:
        if spec.tls is not None and spec.tls not in creators:
            try:
                creators[spec.tls] = ReloadingServerCreator(spec.tls)
            except TLSConfigurationError as e:
                _configurationError(str(e), command)
    return creators


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the server from the checked options: the TLS settings and the
    endpoints first (twistd calls this before it drops privileges, and
    before it sends its log anywhere but standard error, so a bad file or
    port is still one line on the terminal), then the site, and the tree of
    services that runs it:

      - the shutdown service, first: it stops last, draining the site once
        the ports are closed;
      - one listening service per port, all serving the same site;
      - the reload service (SIGHUP, SIGUSR1);
      - the readiness service, last: it starts once every port is bound and
        stops first.
    """
    config: ServerConfig = options.config
    if reactor is None:
        reactor = _globalReactor()
    # Errors name the command being run (python -m twisted_cgiserve too).
    command = options.commandName
    creators = _loadCertificates(config.listen, command)
    # A worker of --workers listens on its parent's sockets.
    try:
        worker = WorkerSetup.fromEnviron()
    except ValueError as e:
        _configurationError(str(e), command)
    endpoints = []
    for i, spec in enumerate(config.listen):
        tls = creators[spec.tls] if spec.tls is not None else None
        try:
            adopt = None if worker is None else worker.listenFD(i, len(config.listen))
            endpoints.append(
                endpointFor(reactor, spec, tls, adopt, config.headerTimeout)
            )
        except ValueError as e:
            _configurationError(str(e), command)
    try:
        accessLog = AccessLog(config.accessLog, reactor)
    except OSError as e:
        sys.stderr.write(
            f"{command}: cannot open --access-log {config.accessLog!r}: {e.strerror}\n"
        )
        raise SystemExit(1) from None
    if worker is None and config.workers > 1:
        # Checked above, as a single server would, and written by the
        # workers.
        accessLog.close()
        return _supervise(options, endpoints, reactor)
    spawner = None
    if config.settings.cgiEnabled and not options["no-cgi-spawner"]:
        spawner = spawnerService(
            reactor,
            user=scriptUser(config.settings.cgiUser),
            maxProcesses=config.settings.cgiMaxProcesses,
            grace=KILL_GRACE,
            allowUids=_twistdUid(options),
        )
    # The directory and the user were checked with the options.
    metrics, metricsPage = _metrics(options, reactor, inWorker=worker is not None)
    for creator in creators.values():
        creator.metrics = metrics
    root = buildRoot(
        config.directory,
        config.settings,
        scriptUser(config.settings.cgiUser) if config.settings.cgiEnabled else None,
        reactor,
        spawn=None if spawner is None else spawner.client.spawn,
        metrics=metrics,
        metricsPage=metricsPage,
    )
    try:
        resource, checker = protect(root, config, reactor)
    except HtpasswdError as e:
        _configurationError(str(e), command)
    site = CGIServeSite(
        resource,
        accessLog=accessLog,
        reactor=reactor,
        timeout=config.idleTimeout or None,
        maxBodySize=config.maxBodySize,
        headerTimeout=config.headerTimeout,
        sendTimeout=config.sendTimeout,
        extraHeaders=config.headers,
        authGate=resource if isinstance(resource, BasicAuthResource) else None,
        metrics=metrics,
    )
    if options.trustedProxies is not None:
        site.requestFactory = trustingRequests(options.trustedProxies)
    parent = MultiService()
    ShutdownService(
        site, cast(Any, root), config.shutdownGrace, reactor
    ).setServiceParent(parent)
    listening = []
    for spec, endpoint in zip(config.listen, endpoints, strict=True):
        service = ListeningService(
            spec, endpoint, site, reactor, commandName=options.commandName
        )
        service.setServiceParent(parent)
        listening.append(service)
    readiness = ReadinessService(listening, reactor)
    ReloadService(
        reactor, list(creators.values()), accessLog, readiness, checker=checker
    ).setServiceParent(parent)
    readiness.setServiceParent(parent)
    if spawner is not None:
        # Started before twistd drops privileges, as every child is; let go
        # only after the reactor's shutdown, once the scripts are ended.
        spawner.setServiceParent(parent)
    if worker is not None:
        for name in WORKER_VARIABLES:
            os.environ.pop(name, None)
        reactor.callWhenRunning(watchParent, reactor)
    return parent


def _metrics(
    options: Options, reactor: Any, inWorker: bool
) -> tuple[Any, MetricsPage | None]:
    """
    C{--metrics}: what counts (a L{ServerMetrics}) and the page that shows
    it, or L{None} twice. prometheus_client is imported only here: in a
    worker of C{--workers}, its environment already names the directory
    the figures go to. A single server ignores a directory its own
    environment names (a unit's C{Environment=}, a shell's export): it
    would count into files of earlier runs, whose gauges never come down.
    """
    if options.metricsPath is None:
        return None, None
    if not inWorker:
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
    from twisted_cgiserve._http.metrics import ServerMetrics  # noqa: PLC0415

    metrics = ServerMetrics()
    page = MetricsPage(
        options.metricsPath,
        metrics.registry,
        reactor,
        tuple(options.metricsAllowed) or LOOPBACK,
    )
    return metrics, page


def _twistdUid(options: Options) -> tuple[int, ...]:
    """
    The user twistd drops to (C{--uid}), who may then reach the CGI spawner.
    """
    uid = options.parent.get("uid") if options.parent is not None else None
    return (uid,) if isinstance(uid, int) else ()


def _supervise(options: Options, endpoints: Sequence[Any], reactor: Any) -> IService:
    """
    The parent of C{--workers N}: the ports, listened on now (before twistd
    drops privileges) and never accepted on, and the supervisor that hands
    them to the workers. Server-wide services (the CGI spawner) belong in
    C{parent} before the supervisor, and what workers need to reach them
    in the supervisor's C{environment}.
    """
    config: ServerConfig = options.config
    parent = MultiService()
    if config.settings.cgiEnabled and not options["no-cgi-spawner"]:
        # One spawner for the whole server, so that --cgi-max-processes is
        # the server's limit: started first (before twistd drops
        # privileges, and before the workers, which inherit its address in
        # CGISERVE_SPAWNER), stopped last.
        spawnerService(
            reactor,
            user=scriptUser(config.settings.cgiUser),
            maxProcesses=config.settings.cgiMaxProcesses,
            grace=KILL_GRACE,
            allowUids=_twistdUid(options),
        ).setServiceParent(parent)
    listening = []
    for spec, endpoint in zip(config.listen, endpoints, strict=True):
        service = ListeningService(
            spec, endpoint, Factory(), reactor, commandName=options.commandName
        )
        service.setServiceParent(parent)
        listening.append(service)
    front = None if options.commandName == Options.commandName else options.commandName
    metricsDirectory = None
    if options.metricsPath is not None:
        # Made before the workers start, removed once they have all ended
        # (the supervisor is its child).
        metricsDirectory = MetricsDirectory()
        metricsDirectory.setServiceParent(parent)
    supervisor = Supervisor(
        listening,
        config.workers,
        workerArguments(options.words, front),
        reactor,
        grace=config.shutdownGrace,
        environment=None if metricsDirectory is None else metricsDirectory.environment,
        workerEnded=None if metricsDirectory is None else metricsDirectory.workerEnded,
    )
    supervisor.setServiceParent(
        parent if metricsDirectory is None else metricsDirectory
    )
    return parent
