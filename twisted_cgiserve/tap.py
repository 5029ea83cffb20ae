# -*- test-case-name: tests.test_tap -*-
"""
C{twistd cgiserve}: the command line and the service it builds.

Options follow C{python -m http.server} where it has a word for the thing
(C{--bind}, C{--directory}) and C{twistd web} otherwise (C{--path}), so
users of either feel at home. Every configuration error ends the process
with one line on standard error and exit status 2, never a traceback or
twistd's whole usage text.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, cast

from twisted.application.service import IService, MultiService
from twisted.python import usage

from twisted import __version__ as twistedVersion
from twisted_cgiserve._cgi.privileges import scriptUser
from twisted_cgiserve._http.accesslog import AccessLog
from twisted_cgiserve._http.grammar import HOP_BY_HOP, TOKEN
from twisted_cgiserve._http.paths import DEFAULT_CGI_DIRECTORIES, normaliseCGIDirectory
from twisted_cgiserve._http.site import CGIServeSite
from twisted_cgiserve._root import makeRootResource
from twisted_cgiserve._service.journald import JOURNALD_LOGGER, logsToJournal
from twisted_cgiserve._service.listen import (
    ListeningService,
    ListenSpec,
    endpointFor,
    parsePort,
)
from twisted_cgiserve._service.logfile import NODE_LOGGER, openNodeLog
from twisted_cgiserve._service.reload import ReloadService
from twisted_cgiserve._service.shutdown import ShutdownService
from twisted_cgiserve._service.systemd import ReadinessService
from twisted_cgiserve._service.tls import (
    ReloadingServerCreator,
    TLSConfigurationError,
    TLSFiles,
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
    """

    synopsis = "[options]"
    longdesc = (
        "Serve a directory over HTTP as 'python -m http.server' does, and run "
        "CGI scripts under /cgi-bin and /htbin as 'python -m http.server "
        "--cgi' did. Example: twistd -n cgiserve --port 8000"
    )

    optFlags = [
        ["no-cgi", None, "Serve CGI directories as ordinary files: run no scripts."],
        [
            "cgi-pass-auth",
            None,
            "Give scripts the Authorization header as HTTP_AUTHORIZATION (off by "
            "default: it carries passwords).",
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
        opt_cgi_pass_env,
        opt_cgi_set_env,
        opt_header,
        opt_version,
    ):
        _method.__doc__ = " ".join((_method.__doc__ or "").split())
    del _method

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse, and turn any usage error into one line on standard error.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            message = str(e).removeprefix("Parameter type enforcement failed: ")
            sys.stderr.write(
                f"twistd cgiserve: error: {message} (see 'twistd cgiserve --help')\n"
            )
            sys.stderr.flush()
            raise SystemExit(_EXIT_USAGE) from None

    def postOptions(self) -> None:
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
            self.settings()
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
        ports = self["ports"] or [_DEFAULT_PORT]
        specs: list[ListenSpec] = []
        for value in ports:
            try:
                spec = parsePort(value, self["bind"], tls)
                if spec.description is not None:
                    # Parse now so a malformed description is a usage error,
                    # not a traceback at start-up.
                    endpointFor(_reactor(), spec)
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            specs.append(spec)
        if tls is not None and not any(spec.tls == tls for spec in specs):
            raise usage.UsageError(
                "--tls-cert is given but no --port uses it (bare numbers and "
                "systemd: ports do; tcp: and unix: ones stay plain HTTP)"
            )
        self["listen"] = specs
        # Read the certificates now, before twistd drops privileges, and so
        # that a bad file is a one-line error rather than failed handshakes.
        self["tls-creators"] = {}
        for spec in specs:
            if spec.tls is not None and spec.tls not in self["tls-creators"]:
                try:
                    self["tls-creators"][spec.tls] = ReloadingServerCreator(spec.tls)
                except TLSConfigurationError as e:
                    raise usage.UsageError(str(e)) from None
        self._chooseLogger()

    def _tlsFiles(self) -> TLSFiles | None:
        if self["tls-cert"] is None:
            for name in ("tls-key", "tls-password-file"):
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} requires --tls-cert to be set")
            return None
        return TLSFiles(self["tls-cert"], self["tls-key"], self["tls-password-file"])

    def _chooseLogger(self) -> None:
        """
        Replace twistd's log observer where it would do harm, unless another
        logger (or syslog) was asked for:

          - Under systemd, write the journal's format (no timestamps,
            priority prefixes) when twistd would log to a standard output
            that is the journal.
          - A C{--logfile} that is a character device (C{/dev/null}) or a
            FIFO is written to as it is: twistd's would rotate it by
            renaming it, replacing C{/dev/null} with a regular file for the
            whole machine.
        """
        parent = getattr(self, "parent", None)
        if parent is None or parent.get("logger") is not None or parent.get("syslog"):
            return
        # twistd resolves these names in its own postOptions, after ours.
        logfile = parent.get("logfile")
        if logfile in (None, "", "-"):
            if parent.get("nodaemon") and logsToJournal():
                parent["logger"] = JOURNALD_LOGGER
            return
        try:
            if openNodeLog(logfile):
                parent["logger"] = NODE_LOGGER
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

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
        )


def _reactor() -> Any:
    """
    The global reactor, imported only when needed so that parsing options
    (and C{twistd --help}) never installs one.
    """
    from twisted.internet import reactor  # noqa: PLC0415

    return reactor


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the server: one listening service per port, all serving the same
    site.
    """
    if reactor is None:
        reactor = _reactor()
    try:
        accessLog = AccessLog(options["access-log"], reactor)
    except OSError as e:
        sys.stderr.write(
            f"twistd cgiserve: cannot open --access-log {options['access-log']!r}: "
            f"{e.strerror}\n"
        )
        raise SystemExit(1) from None
    resource = makeRootResource(options["directory"], options.settings(), reactor)
    site = CGIServeSite(
        resource,
        accessLog=accessLog,
        reactor=reactor,
        timeout=options["idle-timeout"] or None,
        maxBodySize=options["max-body-size"],
        headerTimeout=options["header-timeout"],
        sendTimeout=options["send-timeout"],
        extraHeaders=options["headers"],
    )
    creators: dict[TLSFiles, ReloadingServerCreator] = options["tls-creators"]
    parent = MultiService()
    ShutdownService(
        site, cast(Any, resource), options["shutdown-grace"], reactor
    ).setServiceParent(parent)
    listening = []
    for spec in options["listen"]:
        tls = creators[spec.tls] if spec.tls is not None else None
        service = ListeningService(spec, endpointFor(reactor, spec, tls), site)
        service.setServiceParent(parent)
        listening.append(service)
    # Last, so that it starts once every port is bound and stops first.
    readiness = ReadinessService(listening, reactor)
    ReloadService(
        reactor, list(creators.values()), accessLog, readiness
    ).setServiceParent(parent)
    readiness.setServiceParent(parent)
    return parent
