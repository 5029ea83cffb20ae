"""
Tests for L{twisted_cgiserve._cgi.locate}: which script a request runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted_cgiserve._cgi.locate import (
    CGIRefusal,
    cgiDirectoryFor,
    locateScript,
)
from twisted_cgiserve._http.paths import BadRequestPath, resolvePath

CGI = ("/cgi-bin", "/htbin", "/sub/dir/cgi-bin")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for directory in ("cgi-bin/child", "htbin", "sub/dir/cgi-bin", "nocgi"):
        (root / directory).mkdir(parents=True)
    for script in ("cgi-bin/x.sh", "cgi-bin/child/y.sh", "htbin/z", "nocgi/n.sh",
                   "sub/dir/cgi-bin/w"):  # fmt: skip
        (root / script).write_text("#!/bin/sh\n")
        (root / script).chmod(0o755)
    (root / "cgi-bin" / "plain.txt").write_text("not a script")
    return root


@pytest.mark.parametrize(
    ("uri", "directory"),
    [
        (b"/cgi-bin/x.sh", "/cgi-bin"),
        (b"/cgi-bin%2fx.sh", "/cgi-bin"),
        (b"//cgi-bin/x.sh", "/cgi-bin"),
        (b"cgi-bin/x.sh", "/cgi-bin"),
        (b"/nocgi/../cgi-bin/x.sh", "/cgi-bin"),
        (b"/cgi-bin/", "/cgi-bin"),
        (b"/htbin/z", "/htbin"),
        (b"/sub/dir/cgi-bin/w", "/sub/dir/cgi-bin"),
        (b"/cgi-bin", None),
        (b"/cgi-bin/../nocgi/n.sh", None),
        (b"/CGI-BIN/x.sh", None),
        (b"/a/cgi-bin/x.sh", None),
        (b"/cgi-binx/y", None),
    ],
)
def test_directoryMatch(uri: bytes, directory: str | None) -> None:
    """
    CGI directories match the normalised, once-decoded path as prefixes,
    case-sensitively, as in http.server; the directory itself without its
    slash is left to the static half (which redirects it).
    """
    assert cgiDirectoryFor(resolvePath(uri), CGI) == directory


@pytest.mark.parametrize(
    ("uri", "scriptName", "pathInfo"),
    [
        (b"/cgi-bin/x.sh", "/cgi-bin/x.sh", ""),
        (b"/cgi-bin/x.sh/", "/cgi-bin/x.sh", "/"),
        (b"/cgi-bin/x.sh/a/b", "/cgi-bin/x.sh", "/a/b"),
        (b"/cgi-bin/x.sh/a/b/", "/cgi-bin/x.sh", "/a/b/"),
        (b"/cgi-bin/x.sh/pa%20th", "/cgi-bin/x.sh", "/pa th"),
        (b"/cgi-bin/x.sh/a%3fb", "/cgi-bin/x.sh", "/a?b"),
        (b"/cgi-bin/child/y.sh/z", "/cgi-bin/child/y.sh", "/z"),
        (b"/cgi-bin/x.sh/../x.sh", "/cgi-bin/x.sh", ""),
    ],
)
def test_split(root: Path, uri: bytes, scriptName: str, pathInfo: str) -> None:
    """
    Directories below the CGI directory nest; the first non-directory is the
    script and the rest, decoded once, is PATH_INFO. An encoded C{?} is part
    of the path, never a query separator.
    """
    location = locateScript(str(root), resolvePath(uri), "/cgi-bin")
    assert (location.scriptName, location.pathInfo) == (scriptName, pathInfo)
    assert location.filename == str(root) + scriptName


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        (b"/cgi-bin/missing", 404, "No such CGI script ('/cgi-bin/missing')"),
        (b"/cgi-bin/", 403, "CGI script is not a plain file ('/cgi-bin/')"),
        (b"/cgi-bin/child/", 403,
         "CGI script is not a plain file ('/cgi-bin/child/')"),
        (b"/cgi-bin/plain.txt", 403,
         "CGI script is not executable ('/cgi-bin/plain.txt')"),
        (b"/cgi-bin/%252e%252e/nocgi/n.sh", 404,
         "No such CGI script ('/cgi-bin/%2e%2e')"),
    ],
)  # fmt: skip
def test_refusals(root: Path, uri: bytes, code: int, message: str) -> None:
    """
    Requests that name no runnable script get http.server's statuses and
    texts; the doubly encoded dot segment that let http.server run files
    outside its CGI directories names a missing script here.
    """
    with pytest.raises(CGIRefusal) as refusal:
        locateScript(str(root), resolvePath(uri), "/cgi-bin")
    assert (refusal.value.code, refusal.value.message) == (code, message)


def test_nph(root: Path) -> None:
    """
    Scripts named C{nph-*} are non-parsed-header scripts.
    """
    (root / "cgi-bin" / "nph-raw").write_text("#!/bin/sh\n")
    (root / "cgi-bin" / "nph-raw").chmod(0o755)
    assert locateScript(str(root), resolvePath(b"/cgi-bin/nph-raw"), "/cgi-bin").nph
    assert not locateScript(str(root), resolvePath(b"/cgi-bin/x.sh"), "/cgi-bin").nph


_hostile = st.lists(
    st.one_of(
        st.sampled_from(
            ["..", ".", "", "%2e%2e", "..%2f", "%2f", "cgi-bin", "htbin", "nocgi",
             "n.sh", "x.sh", "child", "%252e%252e", "%5c..", "CGI-BIN", "sub", "dir"]
        ),
        st.text(alphabet="abc./%25", max_size=5),
    ),
    max_size=8,
).map(lambda words: "/" + "/".join(words))  # fmt: skip


@settings(
    max_examples=400,
    # The tree is only read, never changed, so sharing it is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_hostile)
def test_neverOutsideCGIDirectory(root: Path, uri: str) -> None:
    """
    Whatever the request, a located script is a file lexically inside the
    CGI directory it was matched against, and a path that does not match a
    CGI directory is never a script.
    """
    try:
        resolved = resolvePath(uri.encode())
    except BadRequestPath:
        return
    directory = cgiDirectoryFor(resolved, CGI)
    if directory is None:
        return
    try:
        location = locateScript(str(root), resolved, directory)
    except CGIRefusal:
        return
    cgiRoot = os.path.join(str(root), directory.lstrip("/"))
    assert os.path.commonpath([cgiRoot, location.filename]) == cgiRoot
    assert location.filename != cgiRoot
    assert not location.filename.startswith(str(root / "nocgi"))


def test_notAPlainFile(root: Path) -> None:
    """
    A script name that is no regular file (a FIFO: opening it would block)
    is refused, never run.
    """
    os.mkfifo(root / "cgi-bin" / "fifo")
    with pytest.raises(CGIRefusal) as refusal:
        locateScript(str(root), resolvePath(b"/cgi-bin/fifo"), "/cgi-bin")
    assert (refusal.value.code, refusal.value.message) == (
        403,
        "CGI script is not a plain file ('/cgi-bin/fifo')",
    )
