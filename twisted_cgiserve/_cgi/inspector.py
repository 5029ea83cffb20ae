# -*- test-case-name: tests.cgi.test_inspector -*-
"""
C{--cgi-debug}: the page a developer sees instead of a bare C{502} or
C{504} when a script fails, showing what the script did.

A failing script otherwise leaves its client with "502 Bad Gateway" and its
developer with the server's log to dig through. As PHP's C{display_errors}
and caddy-cgi's C{inspect}, this puts the cause on the page: the script's
path and arguments, how it ended, the end of its standard error, what it
printed of its head, and the environment it was given.

That page shows a stranger more than the server should, so:

 - it is off unless asked for, and then shown to loopback clients only
   (C{--cgi-debug}), or to everyone with C{--cgi-debug=all};
 - the values of variables that carry credentials (C{HTTP_AUTHORIZATION},
   C{HTTP_COOKIE}) or the administrator's own settings (C{--cgi-set-env})
   are hidden;
 - it is only ever a whole response of its own: once a script's response
   has started, a failure can only cut it, as without C{--cgi-debug};
 - everything on it came from the script or the client, so every value is
   escaped for HTML, bytes that are not UTF-8 are shown as C{\\xNN},
   control and invisible formatting characters (a bidirectional override
   could make the page lie) as escapes; and the page forbids scripts and
   every other resource by its C{Content-Security-Policy}, should escaping
   ever miss something.

This module holds the page and who may see it; when a failure shows it is
the output strategy's (L{twisted_cgiserve._cgi.output}) and the run's
(L{twisted_cgiserve._cgi.protocol}).
"""

from __future__ import annotations

import ipaddress
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from twisted_cgiserve._cgi.stderr import MAX_TAIL
from twisted_cgiserve._http.errors import statusPhrase

__all__ = [
    "ALWAYS_HIDDEN",
    "DEBUG_ALL",
    "DEBUG_LOCAL",
    "HIDDEN",
    "MAX_PRINTED",
    "OutputFailure",
    "ScriptContext",
    "debugApplies",
    "describeExit",
    "isLoopback",
    "renderPage",
    "sendDebugPage",
]

_log = Logger(namespace="cgiserve.cgi")

#: C{--cgi-debug}: loopback clients only.
DEBUG_LOCAL = "local"
#: C{--cgi-debug=all}: every client.
DEBUG_ALL = "all"

#: Variables whose values carry a client's credentials; never shown. (The
#: proxy's is never passed to scripts; it is listed in case it ever is.)
ALWAYS_HIDDEN = frozenset(
    {"HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_PROXY_AUTHORIZATION"}
)

#: What a hidden value is shown as.
HIDDEN = "(hidden)"

#: The most of a script's standard output shown (what it printed before
#: its head failed): the head parser refuses a head past 64 KiB anyway.
MAX_PRINTED = 64 * 1024

# Characters shown as escapes rather than as themselves: C0 and C1
# controls (but tab and newline), lone surrogates, and the invisible
# formatting characters that reorder or hide text (bidirectional marks,
# overrides and isolates, zero-width characters, line and paragraph
# separators, the byte order mark, interlinear annotations).
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff]"
)

# The page's only style is inline, and nothing else may load or run.
_POLICY = b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def isLoopback(address: object) -> bool:
    """
    Whether a client address is this machine's loopback: C{127.0.0.0/8},
    C{::1}, or either as an IPv4-mapped IPv6 address (what a dual-stack
    socket reports for an IPv4 client).

    Anything else is not, including a UNIX socket: a reverse proxy in front
    of one serves remote clients.
    """
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return False
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def debugApplies(mode: str | None, request: IRequest) -> bool:
    """
    Whether C{request}'s client may see the page under C{--cgi-debug}
    C{mode}: never without it, only from loopback with C{"local"}, always
    with C{"all"}.
    """
    if mode == DEBUG_ALL:
        return True
    if mode == DEBUG_LOCAL:
        return isLoopback(request.getClientAddress())
    return False


@dataclass(frozen=True, kw_only=True)
class ScriptContext:
    """
    What a script was started with, kept for the page should it fail.

    @ivar mode: The C{--cgi-debug} mode it is kept under (the page says how
        to turn it off).
    @ivar scriptName: The script's URL path.
    @ivar filename: The script's file, an absolute path.
    @ivar argv: Its whole command line, the program first.
    @ivar environment: The environment it was given.
    @ivar hidden: Names whose values are not shown, besides
        L{ALWAYS_HIDDEN} (the names C{--cgi-set-env} sets).
    """

    mode: str
    scriptName: str
    filename: str
    argv: tuple[str, ...]
    environment: Mapping[str, str]
    hidden: frozenset[str] = field(default_factory=frozenset)

    def isHidden(self, name: str) -> bool:
        """
        Whether the value of C{name} is not shown.
        """
        return name in ALWAYS_HIDDEN or name in self.hidden


@dataclass(frozen=True, kw_only=True)
class OutputFailure:
    """
    How a script's response failed, as its output strategy saw it.

    @ivar code: The status the client gets (502 or 504).
    @ivar message: Its reason phrase.
    @ivar why: What went wrong, in a sentence.
    @ivar printed: The start of what the script wrote to its standard
        output (its head, or what was meant as one).
    @ivar printedDropped: How many more bytes it wrote there.
    """

    code: int
    message: str
    why: str
    printed: bytes = b""
    printedDropped: int = 0


def describeExit(reason: Failure | None) -> str:
    """
    How a script ended, in words: its exit status or the signal that ended
    it; or that it is still running.
    """
    if reason is None:
        return "still running: the server is ending it (SIGTERM, then SIGKILL)"
    value = reason.value
    number = getattr(value, "signal", None)
    if number is not None:
        try:
            name = signal.Signals(number).name
        except ValueError:
            return f"killed by signal {number}"
        return f"killed by signal {number} ({name})"
    status = getattr(value, "exitCode", 0)
    if status is None:
        return "ended; its exit status is unknown"
    return f"exited with status {status}"


def _bytesOf(text: str) -> bytes:
    """
    A string that may have come from bytes (C{os.fsdecode}) as those bytes.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _escapeInvisible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _show(data: bytes | str) -> str:
    """
    Anything a script or a client wrote, as HTML text that shows it: UTF-8
    decoded, other bytes as C{\\xNN}, invisible characters as escapes,
    markup escaped. CRLF line ends are shown as line ends.
    """
    raw = _bytesOf(data) if isinstance(data, str) else data
    text = raw.replace(b"\r\n", b"\n").decode("utf-8", "backslashreplace")
    return escape(_INVISIBLE.sub(_escapeInvisible, text), quote=True)


def _block(data: bytes, dropped: int, what: str) -> str:
    """
    A C{<pre>} of C{data}, saying how much came before it or that there was
    nothing.
    """
    if not data and not dropped:
        return f'<p class="none">(nothing: it wrote nothing {what})</p>'
    note = ""
    if dropped:
        note = f'<p class="none">({dropped} earlier bytes not shown)</p>\n'
    return f"{note}<pre>{_show(data)}</pre>"


_STYLE = """\
:root { color-scheme: light dark; }
body { font-family: sans-serif; margin: 1em 2em; }
pre, td { font-family: monospace; white-space: pre-wrap; word-break: break-all; }
pre { border: 1px solid #888; padding: 0.5em; }
table { border-collapse: collapse; }
td { border-bottom: 1px solid #8884; padding: 0.1em 0.5em; vertical-align: top; }
.warning { border: 2px solid #c60; padding: 0.5em 1em; }
.none { font-style: italic; }
"""


def _how(mode: str) -> str:
    """
    Why this page was shown, and how to turn it off.
    """
    who = (
        "to every client (<code>--cgi-debug=all</code>)"
        if mode == DEBUG_ALL
        else "to clients on this machine's loopback address (<code>--cgi-debug</code>)"
    )
    return (
        '<div class="warning"><p>This is <strong>--cgi-debug</strong> output '
        f"from twisted-cgiserve, shown {who} instead of the bare error page "
        "because the server was started with it. It shows what the script "
        "was given and what it wrote, and is meant for development only.</p>"
        "<p>To turn it off, restart the server without <code>--cgi-debug</code> "
        "(embedders: <code>Settings(cgiDebug=None)</code>, the default).</p></div>"
    )


def renderPage(
    context: ScriptContext,
    failure: OutputFailure,
    *,
    ended: str,
    stderr: bytes,
    stderrDropped: int = 0,
) -> bytes:
    """
    The page, as UTF-8 HTML.

    @param ended: How the script ended (see L{describeExit}), and whether it
        timed out.
    @param stderr: The end of its standard error.
    @param stderrDropped: How many bytes of it came before C{stderr}.
    """
    title = _show(f"{failure.code} {failure.message}: CGI script failed")
    argv = "\n".join(f"<li><code>{_show(word)}</code></li>" for word in context.argv)
    rows = "\n".join(
        f"<tr><td>{_show(name)}</td><td>"
        + (
            f'<span class="none">{HIDDEN}</span>'
            if context.isHidden(name)
            else _show(value)
        )
        + "</td></tr>"
        for name, value in sorted(context.environment.items())
    )
    printed = _block(failure.printed, 0, "to its standard output")
    if failure.printedDropped:
        printed += (
            f'\n<p class="none">({failure.printedDropped} more bytes not shown)</p>'
        )
    page = f"""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
{_STYLE}</style>
</head>
<body>
<h1>{title}</h1>
{_how(context.mode)}
<h2>What went wrong</h2>
<p>{_show(failure.why)}</p>
<table>
<tr><td>Script</td><td>{_show(context.scriptName)}</td></tr>
<tr><td>File</td><td>{_show(context.filename)}</td></tr>
<tr><td>Ended</td><td>{_show(ended)}</td></tr>
</table>
<h2>Command line</h2>
<ol>
{argv}
</ol>
<h2>Standard error (at most its last {MAX_TAIL // 1024} KiB)</h2>
{_block(stderr, stderrDropped, "to its standard error")}
<h2>Standard output (what it printed of its head)</h2>
{printed}
<h2>Environment</h2>
<table>
{rows}
</table>
</body>
</html>
"""
    return page.encode("utf-8")


def sendDebugPage(
    request: IRequest,
    context: ScriptContext,
    failure: OutputFailure,
    *,
    ended: str,
    stderr: bytes,
    stderrDropped: int = 0,
) -> int:
    """
    Finish C{request} with the page (see L{renderPage}), with the status of
    the error page it stands for, never cached, its content type never
    guessed.

    @return: L{NOT_DONE_YET}, as L{twisted_cgiserve._http.errors.sendError}.
    """
    body = renderPage(
        context, failure, ended=ended, stderr=stderr, stderrDropped=stderrDropped
    )
    anyRequest: Any = request
    request.setResponseCode(failure.code, statusPhrase(failure.message))
    # A page of the server's: nothing Twisted defaults to, nothing a script
    # may have set before it failed.
    anyRequest.defaultContentType = None
    headers = request.responseHeaders
    for name in (b"content-length", b"last-modified", b"etag", b"content-range"):
        headers.removeHeader(name)
    headers.setRawHeaders(b"content-type", [b"text/html; charset=utf-8"])
    headers.setRawHeaders(b"content-length", [b"%d" % len(body)])
    headers.setRawHeaders(b"cache-control", [b"no-store"])
    headers.setRawHeaders(b"x-content-type-options", [b"nosniff"])
    headers.setRawHeaders(b"content-security-policy", [_POLICY])
    headers.setRawHeaders(b"referrer-policy", [b"no-referrer"])
    _log.info(
        "{script}: --cgi-debug page ({code}) shown to {client}",
        script=context.scriptName,
        code=failure.code,
        client=getattr(request.getClientAddress(), "host", "?"),
    )
    if request.method != b"HEAD":
        request.write(body)
    request.finish()
    return NOT_DONE_YET
