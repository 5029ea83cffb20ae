# -*- test-case-name: tests.http.test_grammar -*-
"""
The few facts of HTTP's grammar that several layers check against: what a
header name may be, and which headers belong to one connection rather than
to the message.

One copy, so that the header C{--header} refuses, the headers a script may
not set, and the headers that never become C{HTTP_*} variables cannot drift
apart.
"""

from __future__ import annotations

import re

__all__ = ["HOP_BY_HOP", "TOKEN"]

# RFC 9110 section 5.6.2's token: what a header name (and a method) is made of.
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Headers that describe one connection or the message's framing, never the
# resource (RFC 9110 section 7.6.1; Proxy-Connection and Keep-Alive are the
# pre-standard spellings clients still send). A server owns them.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
