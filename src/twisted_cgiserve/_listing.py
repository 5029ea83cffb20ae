# -*- test-case-name: tests.test_static -*-
"""
Directory listings, byte for byte the page CPython 3.14's http.server
renders: scripts and tests that scrape those pages keep working.

Names are sorted case-insensitively with no directories-first grouping,
directories get a C{/} (in the text and the link), symbolic links an C{@}
(in the text only), links are percent-quoted and text is HTML-escaped.
Undecodable file names travel as surrogate escapes and come back out as the
same bytes, so every listed file can be fetched.
"""

from __future__ import annotations

import os
from html import escape
from urllib.parse import quote

from twisted_cgiserve._paths import decodePath

__all__ = ["renderListing"]

_HEAD = (
    "<!DOCTYPE HTML>\n"
    '<html lang="en">\n'
    "<head>\n"
    '<meta charset="utf-8">\n'
    '<style type="text/css">\n:root {\ncolor-scheme: light dark;\n}\n</style>\n'
    "<title>Directory listing for {title}</title>\n</head>\n"
    "<body>\n<h1>Directory listing for {title}</h1>\n"
    "<hr>\n<ul>"
)
_TAIL = "</ul>\n<hr>\n</body>\n</html>\n"


def _encode(text: str) -> bytes:
    """
    Encode page text, passing undecodable file-name bytes through as they
    were on disk; a lone surrogate that cannot have come from the disk (it
    can only come from a request path) is replaced rather than failing.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _entries(directory: str) -> list[str]:
    """
    One C{<li>} per directory entry, in http.server's order.

    @raise OSError: The directory cannot be listed.
    """
    lines = []
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda entry: entry.name.lower())
    for entry in entries:
        name = entry.name
        display = link = name
        try:
            isDir = entry.is_dir()
        except OSError:
            isDir = False
        if isDir:
            display = link = name + "/"
        if entry.is_symlink():
            display = name + "@"
        lines.append(
            '<li><a href="{}">{}</a></li>'.format(
                quote(link, errors="surrogatepass"), escape(display, quote=False)
            )
        )
    return lines


def renderListing(directory: str, requestPath: bytes) -> bytes:
    """
    The listing page for C{directory}.

    @param requestPath: The raw request path (no query), shown decoded in
        the title as 3.14 does.
    @raise OSError: The directory cannot be listed.
    """
    try:
        title = decodePath(requestPath)
    except ValueError:
        title = requestPath.decode("latin-1")
    parts = [_HEAD.replace("{title}", escape(title, quote=False))]
    parts.extend(_entries(directory))
    parts.append(_TAIL)
    return _encode("\n".join(parts))
