"""
Tests for L{twisted_cgiserve._http.grammar}: the token grammar and the
hop-by-hop header set that several layers check against.
"""

from __future__ import annotations

import pytest

from twisted_cgiserve._http.grammar import HOP_BY_HOP, TOKEN


@pytest.mark.parametrize(
    "name",
    [b"Content-Type", b"X-Custom_1", b"a", b"!#$%&'*+-.^_`|~", b"GET", b"0"],
)
def test_tokens(name: bytes) -> None:
    """
    RFC 9110 section 5.6.2's tchar: letters, digits and fifteen symbols.
    """
    assert TOKEN.fullmatch(name)


@pytest.mark.parametrize(
    "name",
    [
        b"",
        b"Content Type",
        b"Name:",
        b"a\r\nb",
        b"(x)",
        b"a/b",
        b"\xe9",
        b'"q"',
        b"a@b",
    ],
)
def test_notTokens(name: bytes) -> None:
    """
    Separators, spaces, controls, non-ASCII bytes and the empty string are
    not tokens.
    """
    assert not TOKEN.fullmatch(name)


def test_hopByHop() -> None:
    """
    The headers that belong to one connection (RFC 9110 section 7.6.1),
    with the pre-standard spellings clients still send; lowercase, as
    Twisted hands header names over.
    """
    assert {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    } == HOP_BY_HOP
    assert all(name == name.lower() for name in HOP_BY_HOP)
