# -*- test-case-name: tests.service.test_cli -*-
"""
C{python -m twisted_cgiserve} and the C{cgiserve} script: http.server's
command line in front of C{twistd -n cgiserve}.

Someone whose README says C{python3 -m http.server --cgi -b HOST 8000}
changes the module name and nothing else. The command takes http.server's
options as Python 3.15 documents them, and every option of C{twistd
cgiserve} besides, and behaves at the terminal as http.server did: the
"Serving HTTP on ..." line on standard output, one line per request on
standard error, Ctrl-C ends it with exit status 0.

What differs from C{twistd cgiserve}, and why:

  - C{--cgi} runs scripts; without it the CGI directories are ordinary
    directories (C{--no-cgi}), as in http.server.
  - C{-p} is http.server's C{--protocol}, not C{--port} (C{--port} is
    still there). The server speaks HTTP/1.1 whatever is given: it answers
    each client in the version the client speaks, which is what an
    HTTP/1.1 server does (RFC 9110 section 2.5), so an HTTP/1.0 client
    gets what http.server's default gave it. The option is checked and
    otherwise changes nothing.
  - C{-H NAME VALUE}, as Python 3.15 spells it, as well as C{-H "Name:
    value"}, as curl and C{twistd cgiserve} spell it.
  - C{-h} is C{--help}.

The server itself is twistd's, run in this process as C{twistd --nodaemon
--pidfile= cgiserve}: the same services, the same graceful shutdown. The
C{cgiserve} plugin's options are found through twistd's plugin system (as
twistd finds them), never imported: they are extended here with the
options above.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from zope.interface import implementer

from twisted.application.service import IServiceMaker
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from twisted.logger import formatEventAsClassicLogText as _classicText
from twisted.python import usage

from twisted_cgiserve._service.twistdoptions import twistdOptions

__all__ = [
    "PROTOCOLS",
    "TerminalObserver",
    "frontOptions",
    "joinHeaders",
    "main",
    "programName",
]

# What -p/--protocol accepts: http.server's two real values. Anything else
# is an error rather than silently a promise the server does not keep.
PROTOCOLS = ("HTTP/1.0", "HTTP/1.1")

_TAPNAME = "cgiserve"

# The events shown as http.server printed them: the start-up line and the
# access log, bare.
_LISTEN = "cgiserve.listen"
_ACCESS = "cgiserve.access"
_SHUTDOWN = "cgiserve.shutdown"


def programName(argv0: str) -> str:
    """
    How the user ran the command, for its usage and error lines: the
    C{cgiserve} script, or C{python -m twisted_cgiserve}.
    """
    name = os.path.basename(argv0)
    if name in ("__main__.py", "-m", "-c", "") or name.endswith(".py"):
        return "python -m twisted_cgiserve"
    return name


def joinHeaders(argv: Sequence[str]) -> list[str]:
    """
    Turn Python 3.15's C{-H NAME VALUE} (two words) into the C{--header
    "NAME: VALUE"} that the server's options take. A header name cannot
    hold a colon, so a word with one is already C{"Name: value"} and is
    left alone.
    """
    out: list[str] = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            out.extend(words[i:])
            break
        if (
            word in ("-H", "--header")
            and i + 2 < len(words)
            and ":" not in words[i + 1]
        ):
            out.extend(["--header", f"{words[i + 1]}: {words[i + 2]}"])
            i += 3
            continue
        out.append(word)
        i += 1
    return out


def frontOptions(base: type[usage.Options], program: str) -> type[usage.Options]:
    """
    The options of C{twistd cgiserve} (C{base}, the class the plugin
    provides) with http.server's own added.

    @param program: The command's name in usage and error lines.
    """

    class FrontOptions(base):  # type: ignore[valid-type, misc]
        synopsis = "[options] [port]"
        longdesc = (
            "Serve a directory as 'python -m http.server' does, and run CGI "
            "scripts under /cgi-bin and /htbin with --cgi as 'python -m "
            "http.server --cgi' did. Takes http.server's options (port, -b, "
            "-d, -p, --cgi, --tls-cert, --tls-key, --tls-password-file, -H) "
            "and every option of 'twistd cgiserve'. The port defaults to 8000. "
            "Example: " + program + " --cgi -b 127.0.0.1 8000"
        )
        commandName = program

        optFlags = [
            [
                "cgi",
                None,
                "Run CGI scripts below the CGI directories, as http.server "
                "--cgi did (without it they are ordinary directories).",
            ]
        ]

        def __init__(self) -> None:
            super().__init__()
            self["protocol"] = PROTOCOLS[0]

        def opt_protocol(self, version: str) -> None:
            """
            The HTTP version of http.server's --protocol: HTTP/1.0 (its
            default) or HTTP/1.1. Accepted and checked; the server speaks
            HTTP/1.1 and answers each client in the client's version either
            way.
            """
            if version.upper() not in PROTOCOLS:
                raise usage.UsageError(
                    f"--protocol {version!r} is not HTTP/1.0 or HTTP/1.1"
                )
            self["protocol"] = version.upper()

        opt_p = opt_protocol
        opt_h = usage.Options.opt_help

        def opt_header(self, line: str) -> None:
            """
            NAME VALUE (two words, as Python 3.15's http.server -H) or "Name:
            value": add that header to every successful response (2xx and
            304) that does not already have it; repeatable.
            """
            super().opt_header(line)

        opt_H = opt_header

        for _method in (opt_protocol, opt_header):
            _method.__doc__ = " ".join((_method.__doc__ or "").split())
        del _method

        def getSynopsis(self) -> str:
            return f"Usage: {program} {self.synopsis}"

        def parseOptions(self, options: Sequence[str] | None = None) -> None:
            if options is None:
                options = sys.argv[1:]
            super().parseOptions(joinHeaders(options))

        def postOptions(self) -> None:
            if self["cgi"] and self["no-cgi"]:
                raise usage.UsageError("--cgi and --no-cgi contradict each other")
            if not self["cgi"]:
                scripts = [
                    option
                    for option, key in _SCRIPT_OPTIONS
                    if self[key] and not self["no-cgi"]
                ]
                if scripts:
                    # http.server ran nothing without --cgi; options that say
                    # what a script is would silently do nothing.
                    raise usage.UsageError(
                        f"{scripts[0]} says what runs as a script; scripts run "
                        "only with --cgi"
                    )
                self["no-cgi"] = 1
            super().postOptions()

    FrontOptions.__name__ = FrontOptions.__qualname__ = "FrontOptions"
    return FrontOptions


# The options that say what is a script, and the keys they are kept under.
_SCRIPT_OPTIONS = (
    ("--cgi-dir", "cgi-dirs"),
    ("--cgi-ext", "cgi-exts"),
    ("--cgi-interpreter", "cgi-interpreters"),
)


def _findMaker() -> Any:
    """
    The C{cgiserve} twistd plugin, found as twistd finds it.
    """
    from twisted.plugin import getPlugins  # noqa: PLC0415

    for maker in getPlugins(IServiceMaker):
        if maker.tapname == _TAPNAME:
            return maker
    raise SystemExit(
        "twisted-cgiserve: twistd's cgiserve plugin is not installed "
        "(twisted/plugins/twisted_cgiserve_plugin.py is missing)"
    )


@implementer(ILogObserver)
class TerminalObserver:
    """
    The log as http.server wrote it at a terminal: "Serving HTTP on ..." on
    standard output, each request's line on standard error, and the
    server's own warnings and messages on standard error with a timestamp.
    Twisted's own informational chatter (factories starting, the reactor's
    class) is left out: http.server said none of it.

    Written to the streams as they were when this was made: twistd then
    sends C{sys.stdout} and C{sys.stderr} into the log.
    """

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None):
        self._out = out if out is not None else sys.stdout
        self._err = err if err is not None else sys.stderr

    def __call__(self, event: LogEvent) -> None:
        namespace = event.get("log_namespace", "")
        level = event.get("log_level", LogLevel.info)
        if namespace == _LISTEN and level == LogLevel.info:
            self._write(self._out, f"{formatEvent(event)}\n")
        elif namespace == _ACCESS:
            self._write(self._err, f"{formatEvent(event)}\n")
        elif namespace == _SHUTDOWN and event.get("signal") == "SIGINT":
            # http.server's words on Ctrl-C, after the ^C the terminal shows.
            self._write(self._out, "\nKeyboard interrupt received, exiting.\n")
        elif (
            namespace.startswith("cgiserve.") and level > LogLevel.debug
        ) or level >= LogLevel.warn:
            text = _classicText(event)
            if text:
                self._write(self._err, text)

    @staticmethod
    def _write(stream: IO[str], text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            # The terminal is gone (a closed pipe): the server keeps serving.
            pass


def main(argv: Sequence[str] | None = None, program: str | None = None) -> int:
    """
    Run the server from http.server's command line until it is stopped.

    @param argv: The arguments (default: C{sys.argv[1:]}).
    @param program: The command's name (default: from C{sys.argv[0]}).

    @return: The exit status: 0 once stopped by a signal. A configuration
        error ends the process with status 2 (one line on standard error)
        and a port that cannot be bound with status 1.
    """
    if argv is None:
        argv = sys.argv[1:]
    if program is None:
        program = programName(sys.argv[0])
    from twisted.scripts.twistd import runApp  # noqa: PLC0415

    maker = _findMaker()
    config = twistdOptions(maker, frontOptions(maker.options, program))
    try:
        config.parseOptions(["--nodaemon", "--pidfile=", _TAPNAME, *argv])
        config["logger"] = TerminalObserver
        runApp(config)
    except KeyboardInterrupt:
        # Before the reactor runs, Ctrl-C is Python's: end as http.server
        # did, not with a traceback.
        print("\nKeyboard interrupt received, exiting.")
    return 0
