"""
Tests for L{twisted_cgiserve.makeRootResource}: how the tree is built, and
how its root hands a request to the CGI half or the static half, rendered
against in-memory requests.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.web.resource import IResource

from tests.support.requests import body, makeRequest, render
from twisted_cgiserve import Settings, StaticResource, makeRootResource
from twisted_cgiserve import _root as _resource

MISSING_USER = "cgiserve-no-such-user"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n")
    return root


def test_noSuchUser(root: Path) -> None:
    """
    A CGI user that does not exist is a L{ValueError} naming it, by name or
    by number.
    """
    with pytest.raises(KeyError):
        pwd.getpwnam(MISSING_USER)
    with pytest.raises(ValueError, match=f"no such user: '{MISSING_USER}'"):
        makeRootResource(str(root), Settings(cgiUser=MISSING_USER))
    unused = max(entry.pw_uid for entry in pwd.getpwall()) + 1
    with pytest.raises(ValueError, match=f"no such user: '{unused}'"):
        makeRootResource(str(root), Settings(cgiUser=str(unused)))


def test_userNotLookedUpWithoutCGI(root: Path) -> None:
    """
    With CGI off no script runs, so the CGI user is not looked up.
    """
    resource = makeRootResource(
        str(root), Settings(cgiEnabled=False, cgiUser=MISSING_USER)
    )
    assert body(render(resource, makeRequest(b"/a.txt"))) == b"hello\n"


def test_otherKeyErrorPropagates(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Only the user lookup turns a L{KeyError} into "no such user": one from
    anywhere else in building the tree is a bug, and propagates as it is.
    """

    def broken(*args: object, **kwargs: object) -> StaticResource:
        raise KeyError("not a user")

    monkeypatch.setattr(_resource, "StaticResource", broken)
    with pytest.raises(KeyError, match="not a user"):
        makeRootResource(str(root), Settings(cgiUser="root"))
    with pytest.raises(KeyError, match="not a user"):
        makeRootResource(str(root), Settings(cgiEnabled=False))


# The entry points a request can reach the static files through.
ENTRY_POINTS: dict[str, Callable[[Path], IResource]] = {
    "root": lambda root: makeRootResource(str(root), Settings(cgiUser=None)),
    "root-no-cgi": lambda root: makeRootResource(str(root), Settings(cgiEnabled=False)),
    "static": lambda root: StaticResource(str(root)),
}

UNSUPPORTED = [
    (b"PUT", b"Unsupported method ('PUT')"),
    (b"DELETE", b"Unsupported method ('DELETE')"),
    (b"get", b"Unsupported method ('get')"),
    (b"POST", b"Can only POST to CGI scripts"),
]


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(("method", "message"), UNSUPPORTED)
@pytest.mark.parametrize("uri", [b"/%00", b"/a%00.txt", b"/a.txt", b"/missing"])
def test_unsupportedMethodBeforePath(
    root: Path, entry: str, method: bytes, message: bytes, uri: bytes
) -> None:
    """
    Outside the CGI directories, every entry point checks the method first:
    a method static files do not support is http.server's 501 whatever the
    path, a malformed one (a decoded NUL) included.
    """
    request = render(ENTRY_POINTS[entry](root), makeRequest(uri, method=method))
    assert (request.responseCode, request.responseMessage) == (501, message)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("uri", [b"/%00", b"/a%00.txt", b"/cgi-bin/%00"])
def test_malformedPathForGetAndHead(
    root: Path, entry: str, method: bytes, uri: bytes
) -> None:
    """
    A GET or HEAD, which static files support, goes on to the path: a
    malformed one is a 400 from every entry point.
    """
    request = render(ENTRY_POINTS[entry](root), makeRequest(uri, method=method))
    assert request.responseCode == 400


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE"])
def test_malformedPathBelowNoCGIDirectory(root: Path, method: bytes) -> None:
    """
    A malformed path names no script, so it is below no CGI directory
    however it starts: another method is a 501 there as everywhere.
    """
    resource = makeRootResource(str(root), Settings(cgiUser=None))
    request = render(resource, makeRequest(b"/cgi-bin/%00", method=method))
    assert request.responseCode == 501


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"GET"])
def test_cgiDirectoryTakesEveryMethod(root: Path, method: bytes) -> None:
    """
    Below a CGI directory the root hands every method to CGI dispatch
    (here: no such script, 404) instead of refusing it; with CGI off the
    same path is the static half's, which refuses the method.
    """
    uri = b"/cgi-bin/missing.sh"
    resource = makeRootResource(str(root), Settings(cgiUser=None))
    request = render(resource, makeRequest(uri, method=method))
    assert request.responseCode == 404
    assert request.responseMessage == b"No such CGI script ('/cgi-bin/missing.sh')"
    plain = makeRootResource(str(root), Settings(cgiEnabled=False))
    request = render(plain, makeRequest(uri, method=method))
    assert request.responseCode == (404 if method == b"GET" else 501)
