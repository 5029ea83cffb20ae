"""
Tests for L{twisted_cgiserve._service.ports}: what a C{--port} value means,
worked out without a reactor.
"""

from __future__ import annotations

import pytest

from twisted_cgiserve._service.ports import ListenSpec, parsePort
from twisted_cgiserve._service.tls import TLSFiles


@pytest.mark.parametrize(
    ("bind", "description"),
    [
        ("127.0.0.1", "tcp:8000:interface=127.0.0.1"),
        ("::1", "tcp6:8000:interface=\\:\\:1"),
        ("[::1]", "tcp6:8000:interface=\\:\\:1"),
        ("0.0.0.0", "tcp:8000:interface=0.0.0.0"),
    ],
)
def test_bind(bind: str, description: str) -> None:
    """
    --bind turns a bare port into a TCP endpoint on that address, IPv6
    literals escaped for the endpoint syntax.
    """
    assert parsePort("8000", bind).description == description


def test_bindHostName() -> None:
    """
    A host name binds to its first address, as http.server does.
    """
    description = parsePort("8000", "localhost").description
    assert description in (
        "tcp:8000:interface=127.0.0.1",
        "tcp6:8000:interface=\\:\\:1",
    )


def test_bindOnlyQualifiesBareNumbers() -> None:
    """
    An endpoint description says where it listens; --bind leaves it alone.
    """
    assert parsePort("tcp:9:interface=::", "127.0.0.1").description == (
        "tcp:9:interface=::"
    )


def test_bareNumberWithTLS() -> None:
    files = TLSFiles("cert.pem")
    assert parsePort("8443", None, files) == ListenSpec(None, 8443, tls=files)
    spec = parsePort("8443", "127.0.0.1", files)
    assert spec.tls == files
    assert spec.secure


def test_systemdWithTLS() -> None:
    """
    A socket unit says where to listen, not how: with --tls-cert, systemd:
    ports speak TLS too.
    """
    files = TLSFiles("cert.pem")
    spec = parsePort("systemd:domain=INET6:name=https", None, files)
    assert spec.tls == files
    assert not parsePort("systemd:domain=INET:index=0", None).secure


def test_explicitTCPStaysPlain() -> None:
    files = TLSFiles("cert.pem")
    spec = parsePort("tcp:8080:interface=127.0.0.1", None, files)
    assert spec.tls is None
    assert not spec.secure


def test_sslDescription() -> None:
    """
    Twisted's ssl: syntax, served with this server's TLS settings over the
    same TCP port.
    """
    spec = parsePort(
        r"ssl:8443:privateKey=/k\:ey.pem:certKey=c.pem:interface=\:\:1", None
    )
    assert spec == ListenSpec(
        r"tcp:8443:interface=\:\:1",
        tls=TLSFiles(certificate="c.pem", key="/k:ey.pem", fromDescription=True),
        given=r"ssl:8443:privateKey=/k\:ey.pem:certKey=c.pem:interface=\:\:1",
    )
    assert spec.secure
    assert str(spec).startswith("ssl:8443")


def test_sslDefaultsAndChain() -> None:
    spec = parsePort("ssl:443:extraCertChain=chain.pem", None)
    assert spec.tls == TLSFiles(
        "server.pem", "server.pem", chain="chain.pem", fromDescription=True
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ssl:privateKey=k.pem", "ssl: needs a port number"),
        ("ssl:443:sslmethod=TLSv1_METHOD", "sslmethod is not supported"),
        ("ssl:443:dhParameters=dh.pem", "dhParameters is not supported"),
        ("ssl:443:colour=blue", "unknown argument colour"),
    ],
)
def test_sslDescriptionErrors(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parsePort(value, None)


def test_bareNumber() -> None:
    """
    A bare number without --bind is the dual-stack wildcard, described for
    messages as both addresses; no endpoint description.
    """
    spec = parsePort("8000", None)
    assert spec == ListenSpec(None, 8000)
    assert str(spec) == "[::]:8000 (and 0.0.0.0:8000)"
    assert not spec.secure


@pytest.mark.parametrize("value", ["70000", "99999999999"])
def test_outOfRange(value: str) -> None:
    with pytest.raises(ValueError, match=f"port {value} is out of range"):
        parsePort(value, None)


def test_descriptionAsGiven() -> None:
    """
    Any other value is an endpoint description, named in messages as
    written, and left for the endpoint parser to check.
    """
    spec = parsePort("unix:/run/x.sock", None)
    assert spec == ListenSpec("unix:/run/x.sock")
    assert str(spec) == "unix:/run/x.sock"
    assert parsePort("bogus:1", None).description == "bogus:1"


def test_tlsDescriptionIsSecure() -> None:
    """
    A description that sets up TLS itself is secure without --tls-cert.
    """
    assert parsePort("tls:8443:privateKey=k.pem", None).secure
    assert not parsePort("tcp:8443", None).secure


def test_sslEscapedKeywordsAndBacklog() -> None:
    """
    ssl:'s interface and backlog are kept (quoted again) on the tcp:
    description; an escaped "=" stays in the value.
    """
    spec = parsePort(r"ssl:443:privateKey=a\=b.pem:backlog=7", None)
    assert spec.description == "tcp:443:backlog=7"
    assert spec.tls is not None and spec.tls.key == "a=b.pem"
