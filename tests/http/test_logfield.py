"""
Tests for L{twisted_cgiserve._http.logfield}: what a client sent, made safe
for one quoted field of a log line.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._http.logfield import escapeField


def test_absentIsDash() -> None:
    """
    An absent field (no C{Referer}, say) is C{-}, as in Apache's logs.
    """
    assert escapeField(None) == "-"


def test_plainUnchanged() -> None:
    """
    Printable text, Latin-1 included, is written as it is.
    """
    assert escapeField(b"GET /a?b=c HTTP/1.1") == "GET /a?b=c HTTP/1.1"
    assert escapeField(b"caf\xe9") == "caf\xe9"


def test_quotesBackslashesAndControlsEscaped() -> None:
    """
    A quote or backslash is backslash-escaped, and control characters
    (C0, DEL and C1) are written C{\\xNN}.
    """
    assert escapeField(b'a"b\\c') == 'a\\"b\\\\c'
    assert escapeField(b"\r\n\x00\x1b\x7f\x85\x9f") == (
        "\\x0d\\x0a\\x00\\x1b\\x7f\\x85\\x9f"
    )


@given(st.binary())
def test_neverEndsTheFieldOrTheLine(value: bytes) -> None:
    """
    Whatever a client sends, the result has no line break, no control
    character and no quote that is not escaped.
    """
    text = escapeField(value)
    assert all(" " <= ch <= "~" or "\xa0" <= ch <= "\xff" for ch in text)
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    assert '"' not in unescaped
