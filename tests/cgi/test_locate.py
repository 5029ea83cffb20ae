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
    ScriptClaim,
    ScriptLocation,
    ScriptRules,
    cgiDirectoryFor,
    checkRunnableAs,
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


# What counts as a script, as configured: --cgi-dir /, --cgi-ext and
# --cgi-interpreter.


PERL = "/usr/bin/perl"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """
    A tree with scripts by directory, by extension, and a directory whose
    name has the extension.
    """
    root = tmp_path / "tree"
    for directory in ("cgi-bin", "sub/deeper", "dir.cgi", "nocgi"):
        (root / directory).mkdir(parents=True)
    for name in ("cgi-bin/x.sh", "top.py", "sub/a.cgi", "sub/deeper/B.CGI",
                 "dir.cgi/inner.cgi", "nocgi/n.sh"):  # fmt: skip
        (root / name).write_text("#!/bin/sh\n")
        (root / name).chmod(0o755)
    (root / "dir.cgi" / "inner.txt").write_text("text")
    (root / "sub" / "t.pl").write_text("print 1;\n")
    (root / "sub" / "t.pl").chmod(0o644)
    return root


@pytest.mark.parametrize(
    ("uri", "directory"),
    [
        (b"/", "/"),
        (b"/?q", "/"),
        (b"/top.py", "/"),
        (b"//top.py", "/"),
        (b"/sub/../top.py", "/"),
        (b"/sub", "/"),
        (b"/top.py/", None),
        (b"/top.py/more", None),
        (b"/sub/", None),
        (b"/sub/x.py", None),
    ],
)
def test_rootDirectoryMatch(uri: bytes, directory: str | None) -> None:
    """
    With C{/} as a CGI directory, the root itself and top-level names are
    CGI, as http.server's C{is_cgi} took them with C{cgi_directories =
    ['/']}; names below a subdirectory, and anything with a slash after the
    first name, are not.
    """
    path = uri.split(b"?")[0]
    assert cgiDirectoryFor(resolvePath(path), ("/",)) == directory


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        (b"/", 403, "CGI script is not a plain file ('/')"),
        (b"/sub", 403, "CGI script is not a plain file ('/sub')"),
        (b"/missing", 404, "No such CGI script ('/missing')"),
    ],
)
def test_rootDirectoryRefusals(tree: Path, uri: bytes, code: int, message: str) -> None:
    """
    Below C{/}, the root is never listed, a top-level directory is no
    script, and a missing name is not found: http.server's answers.
    """
    with pytest.raises(CGIRefusal) as refusal:
        locateScript(str(tree), resolvePath(uri), "/")
    assert (refusal.value.code, refusal.value.message) == (code, message)


def test_rootDirectoryScript(tree: Path) -> None:
    """
    A top-level file below C{/} is the script; directories do not nest.
    """
    location = locateScript(str(tree), resolvePath(b"/top.py"), "/")
    assert (location.scriptName, location.pathInfo) == ("/top.py", "")
    assert location.filename == str(tree / "top.py")
    assert location.interpreter is None


def test_rulesConfigured() -> None:
    """
    Configured values are checked and normalised: directories canonical,
    extensions folded and without repeats, the last interpreter for an
    extension winning.
    """
    rules = ScriptRules.configured(
        ["/cgi-bin/", "/"], [".CGI", ".cgi", ".Pl"], [(".pl", "/a"), (".PL", PERL)]
    )
    assert rules == ScriptRules(("/cgi-bin", "/"), (".cgi", ".pl"), ((".pl", PERL),))
    for bad in (["cgi"], ["/a/../b"]):
        with pytest.raises(ValueError):
            ScriptRules.configured(bad)
    with pytest.raises(ValueError):
        ScriptRules.configured((), ["cgi"])
    with pytest.raises(ValueError):
        ScriptRules.configured((), (), [("pl", PERL)])


EXTENSION_RULES = ScriptRules.configured(["/cgi-bin"], [".cgi"], [(".pl", PERL)])


@pytest.mark.parametrize(
    ("uri", "claim"),
    [
        (b"/cgi-bin/x.sh", ScriptClaim(1, True, ((".pl", PERL),))),
        (b"/sub/a.cgi", ScriptClaim(1, False, ((".pl", PERL),))),
        (b"/sub/a.cgi/p/q", ScriptClaim(1, False, ((".pl", PERL),))),
        (b"/sub/A.CGI/", ScriptClaim(1, False, ((".pl", PERL),))),
        (b"/sub/a%2ecgi", ScriptClaim(1, False, ((".pl", PERL),))),
        (b"/sub/deeper/B.CGI/x", ScriptClaim(2, False, ((".pl", PERL),))),
        (b"/sub/missing.cgi/x", ScriptClaim(1, False, ((".pl", PERL),))),
        (b"/dir.cgi/inner.cgi", ScriptClaim(1, False, ((".pl", PERL),))),
        (b"/dir.cgi", None),
        (b"/dir.cgi/", None),
        (b"/dir.cgi/inner.txt", None),
        (b"/nope/x.cgi", None),
        (b"/sub/a.cgi.txt", None),
        (b"/sub/t.pl", None),
        (b"/sub/", None),
    ],
)
def test_claimByExtension(tree: Path, uri: bytes, claim: ScriptClaim | None) -> None:
    """
    A path is claimed by an extension when, walking from the root while
    segments name directories, the first that does not has the extension,
    in any case: the rest is C{PATH_INFO}. A directory named with the
    extension is a directory; a file named after a non-directory that is
    not a script is the static half's (not found); an interpreter's
    extension alone makes nothing a script.
    """
    assert EXTENSION_RULES.claim(str(tree), resolvePath(uri)) == claim


def test_claimWithoutExtensionTouchesNoFile(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A path none of whose segments has a script extension is left to the
    static half without a look at the file system.
    """

    def isdir(path: str) -> bool:
        raise AssertionError(f"looked at {path!r}")

    monkeypatch.setattr(os.path, "isdir", isdir)
    for uri in (b"/sub/deeper/x.txt", b"/", b"/dir/"):
        assert EXTENSION_RULES.claim(str(tree), resolvePath(uri)) is None
    assert ScriptRules().claim(str(tree), resolvePath(b"/a.cgi")) is None


@pytest.mark.parametrize(
    ("uri", "scriptName", "pathInfo"),
    [
        (b"/sub/a.cgi", "/sub/a.cgi", ""),
        (b"/sub/a.cgi/p/q/", "/sub/a.cgi", "/p/q/"),
        (b"/sub/deeper/B.CGI/x", "/sub/deeper/B.CGI", "/x"),
        (b"/dir.cgi/inner.cgi/y", "/dir.cgi/inner.cgi", "/y"),
    ],
)
def test_locateByExtension(
    tree: Path, uri: bytes, scriptName: str, pathInfo: str
) -> None:
    """
    A script claimed by its extension is the claimed segment; the rest of
    the path is C{PATH_INFO}.
    """
    resolved = resolvePath(uri)
    claim = EXTENSION_RULES.claim(str(tree), resolved)
    assert claim is not None
    location = locateScript(str(tree), resolved, claim)
    assert (location.scriptName, location.pathInfo) == (scriptName, pathInfo)
    assert location.filename == str(tree) + scriptName


def test_interpretedScript(tree: Path) -> None:
    """
    A script with an interpreter's extension needs no execute bit; its
    command is the interpreter, then the script, then the query's words,
    as a C{#!} line would have made it. Other scripts are executed
    themselves.
    """
    rules = ScriptRules.configured(["/sub"], (), [(".PL", PERL)])
    resolved = resolvePath(b"/sub/t.pl/info")
    claim = rules.claim(str(tree), resolved)
    assert claim is not None
    location = locateScript(str(tree), resolved, claim)
    script = str(tree / "sub" / "t.pl")
    assert (location.interpreter, location.pathInfo) == (PERL, "/info")
    assert location.command(["a", "b"]) == (PERL, [PERL, script, "a", "b"])
    plain = locateScript(str(tree), resolvePath(b"/sub/a.cgi"), claim)
    assert plain.interpreter is None
    assert plain.command(["a"]) == (plain.filename, [plain.filename, "a"])


def test_uninterpretedScriptNeedsExecuteBit(tree: Path) -> None:
    """
    Without its interpreter, a file with no execute bit is refused.
    """
    with pytest.raises(CGIRefusal) as refusal:
        locateScript(str(tree), resolvePath(b"/sub/t.pl"), "/sub")
    assert refusal.value.message == "CGI script is not executable ('/sub/t.pl')"


def test_interpretedScriptMustBeReadable(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    An interpreted script the server cannot read is refused (root reads
    everything, so the server's answer is faked).
    """
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.R_OK)
    rules = ScriptRules.configured(["/sub"], (), [(".pl", PERL)])
    claim = rules.claim(str(tree), resolvePath(b"/sub/t.pl"))
    assert claim is not None
    with pytest.raises(CGIRefusal) as refusal:
        locateScript(str(tree), resolvePath(b"/sub/t.pl"), claim)
    assert (refusal.value.code, refusal.value.message) == (
        403,
        "CGI script is not readable ('/sub/t.pl')",
    )


@pytest.mark.parametrize(
    ("mode", "interpreter", "message"),
    [
        (0o755, None, None),
        (0o754, None, "CGI script is not executable ('/s')"),
        (0o644, "/bin/sh", None),
        (0o640, "/bin/sh", "CGI script is not readable ('/s')"),
        (0o644, "/nonexistent/perl", "CGI script is not executable ('/s')"),
    ],
)
def test_checkRunnableAs(
    tmp_path: Path, mode: int, interpreter: str | None, message: str | None
) -> None:
    """
    The user scripts run as must be able to execute a script run itself,
    and to execute the interpreter of and read an interpreted one.
    """
    script = tmp_path / "s"
    script.write_text("x")
    script.chmod(mode)
    st = script.stat()
    other = (st.st_uid + 1, st.st_gid + 1)
    location = ScriptLocation("/s", "", str(script), interpreter)
    if message is None:
        checkRunnableAs(location, other)
        return
    with pytest.raises(CGIRefusal) as refusal:
        checkRunnableAs(location, other)
    assert (refusal.value.code, refusal.value.message) == (403, message)


_DIRECTORY_CHOICES = ["/", "/cgi-bin", "/sub", "/dir.cgi"]
_EXTENSION_CHOICES = [".cgi", ".sh", ".PY", ".pl"]
_configuration = st.tuples(
    st.lists(st.sampled_from(_DIRECTORY_CHOICES), unique=True, max_size=2),
    st.lists(st.sampled_from(_EXTENSION_CHOICES), unique=True, max_size=2),
    st.booleans(),
)
_treePaths = st.lists(
    st.one_of(
        st.sampled_from(
            ["..", ".", "", "%2e%2e", "%2f", "cgi-bin", "sub", "deeper", "dir.cgi",
             "nocgi", "x.sh", "top.py", "TOP.PY", "a.cgi", "A.Cgi", "B.CGI",
             "a.cgi.", "inner.cgi", "inner.txt", "t.pl", "n.sh", "%252e%252e",
             "a%2ecgi"]
        ),
        st.text(alphabet="abc./%25", max_size=5),
    ),
    max_size=6,
).map(lambda words: "/" + "/".join(words))  # fmt: skip


@settings(
    max_examples=500,
    # The tree is only read, never changed, so sharing it is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_configuration, _treePaths)
def test_runsOnlyWhatIsConfigured(
    tree: Path,
    configuration: tuple[list[str], list[str], bool],
    uri: str,
) -> None:
    """
    For any configuration and any request path, a located script is a file
    of the tree that the configuration makes a script: inside a configured
    CGI directory (directly inside the root for C{/}), or named with a
    configured extension; and it is interpreted only when it has an
    interpreter's extension.
    """
    directories, extensions, interpreted = configuration
    interpreters = [(".pl", PERL)] if interpreted else []
    rules = ScriptRules.configured(directories, extensions, interpreters)
    try:
        resolved = resolvePath(uri.encode())
    except BadRequestPath:
        return
    claim = rules.claim(str(tree), resolved)
    if claim is None:
        return
    try:
        location = locateScript(str(tree), resolved, claim)
    except CGIRefusal:
        return
    relative = os.path.relpath(location.filename, tree)
    assert not relative.startswith("..")
    inDirectory = any(
        os.path.dirname(relative) == "" if d == "/" else
        relative.startswith(d.lstrip("/") + "/")
        for d in directories
    )  # fmt: skip
    named = any(relative.lower().endswith(e.lower()) for e in extensions)
    assert inDirectory or named, (directories, extensions, uri, relative)
    assert (location.interpreter is not None) == (
        interpreted and relative.endswith(".pl")
    )
