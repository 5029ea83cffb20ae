# -*- test-case-name: tests.http.test_logfield -*-
"""
What a client sent, made safe to write in a log line.

A request line or header may hold quotes, backslashes and control
characters (a newline above all): written as they are, they would end the
quoted field, or the line, and let a client forge log entries. The access
log and the warnings about a request both write them through here.
"""

from __future__ import annotations

__all__ = ["escapeField"]

_ESCAPES = {
    **{i: f"\\x{i:02x}" for i in range(0x20)},
    **{i: f"\\x{i:02x}" for i in range(0x7F, 0xA0)},
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}


def escapeField(value: bytes | None) -> str:
    """
    C{value}, a client-controlled field, as text safe for one quoted log
    field: C{"} and C{\\} are backslash-escaped, control characters written
    C{\\xNN}; an absent field is C{-}.
    """
    if value is None:
        return "-"
    return value.decode("latin-1").translate(_ESCAPES)
