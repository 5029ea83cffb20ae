# -*- test-case-name: tests.cgi.test_locate -*-
"""
Which requests run a script, and which script each one runs, decided on the
same resolved path the static half uses.

http.server walked the request path to find the script with one decoding
and located the file with another; C{/cgi-bin/%252e%252e/x} then executed
files outside the CGI directories. Here the path is decoded once and its dot
segments resolved before anything else looks at it, so the script is always
a file lexically inside the CGI directory it was matched against, or a file
whose own name carries a script extension.

A request is the CGI half's (L{ScriptRules.claim}) when:

 - it lies below a CGI directory (C{--cgi-dir}), matched case-sensitively
   as http.server matched it. Below C{/} only top-level files are scripts,
   as with http.server's C{cgi_directories = ['/']}: C{/x.py} runs, while
   C{/sub/x.py} and C{/x.py/more} are the static half's;
 - or, walking its segments from the root while they name directories, the
   first one that does not is a file name with a script extension
   (C{--cgi-ext}, compared case-insensitively as Apache's C{AddHandler}
   does): C{/a/b.cgi/c} runs C{a/b.cgi} with C{PATH_INFO} C{/c}, while a
   I{directory} named C{b.cgi} is only a directory.

A script whose name has an interpreter's extension (C{--cgi-interpreter})
is run by that interpreter and needs only to be readable.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from twisted_cgiserve._cgi.privileges import readableBy, runnableBy
from twisted_cgiserve._http.paths import (
    ResolvedPath,
    cgiDirectorySegments,
    normaliseCGIDirectory,
    normaliseCGIExtension,
    scriptExtension,
)

__all__ = [
    "CGIRefusal",
    "ScriptClaim",
    "ScriptLocation",
    "ScriptRules",
    "cgiDirectoryFor",
    "checkRunnableAs",
    "locateScript",
]


class CGIRefusal(Exception):
    """
    The request names no runnable script; the client gets C{code} with
    C{message} (http.server's texts).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ScriptLocation:
    """
    A located script.

    @ivar scriptName: Its URL path below the served root, decoded.
    @ivar pathInfo: The decoded path after it, empty or starting with C{/}.
    @ivar filename: Its filesystem path.
    @ivar interpreter: The program that runs it (C{--cgi-interpreter}), or
        L{None} when it is executed itself.
    """

    scriptName: str
    pathInfo: str
    filename: str
    interpreter: str | None = None

    @cached_property
    def nph(self) -> bool:
        """
        Whether the script is a non-parsed-header script (RFC 3875 section
        5), marked by the conventional C{nph-} name prefix.
        """
        return os.path.basename(self.filename).startswith("nph-")

    def command(self, words: Sequence[str]) -> tuple[str, list[str]]:
        """
        The program to execute and its whole argv, given the query's
        command-line words (RFC 3875 section 4.4).

        A script executed itself gets C{[script, *words]}. An interpreted
        one gets C{[interpreter, script, *words]}: exactly what the kernel
        gives a script whose C{#!} line names the interpreter, so scripts
        see the same C{sys.argv} or C{@ARGV} either way. The words come
        after the script, where interpreters stop reading options, and a
        word starting with C{-} already withholds them all.
        """
        if self.interpreter is None:
            return self.filename, [self.filename, *words]
        return self.interpreter, [self.interpreter, self.filename, *words]


@dataclass(frozen=True)
class ScriptClaim:
    """
    How CGI dispatch took a request path: where in its segments the script
    is looked for.

    @ivar start: The index of the first segment that may name the script.
    @ivar nested: Whether segments from C{start} on that name directories
        are walked through (below a CGI directory other than C{/},
        bpo-21323) rather than taken as the script.
    @ivar interpreters: Folded extensions and the programs that run
        scripts with them.
    """

    start: int
    nested: bool
    interpreters: tuple[tuple[str, str], ...] = ()


def cgiDirectoryFor(
    resolved: ResolvedPath, cgiDirectories: tuple[str, ...]
) -> str | None:
    """
    The CGI directory a resolved request path lies in, if any.

    The match is on the normalised, once-decoded path and is
    case-sensitive, as http.server's: C{/cgi-bin%2fx}, C{/a/../cgi-bin/x}
    and C{//cgi-bin/x} all match C{/cgi-bin}. The directory itself without
    its slash does not match; the static half redirects it, as http.server
    does.

    C{/} matches the root itself (a CGI directory is never listed, and its
    index file would be a script) and single top-level names without a
    trailing slash: what http.server's C{is_cgi} took with
    C{cgi_directories = ['/']}. C{/sub/} and everything below it, and
    C{/x.py/}, are left to the static half.
    """
    segments = resolved.segments
    for directory in cgiDirectories:
        parts = _segments(directory)
        depth = len(parts)
        if not depth:
            if not segments or (len(segments) == 1 and not resolved.trailingSlash):
                return directory
            continue
        if segments[:depth] == parts and (
            len(segments) > depth or resolved.trailingSlash
        ):
            return directory
    return None


@lru_cache(maxsize=64)
def _segments(directory: str) -> tuple[str, ...]:
    return cgiDirectorySegments(directory)


def _directoryClaim(
    directory: str, interpreters: tuple[tuple[str, str], ...] = ()
) -> ScriptClaim:
    parts = _segments(directory)
    return ScriptClaim(len(parts), bool(parts), interpreters)


@dataclass(frozen=True)
class ScriptRules:
    """
    What counts as a script in a served tree, as configured.

    @ivar directories: Canonical CGI directories (C{--cgi-dir}).
    @ivar extensions: Folded extensions that make a file a script wherever
        it is (C{--cgi-ext}).
    @ivar interpreters: Folded extensions and the absolute paths of the
        programs that run scripts with them (C{--cgi-interpreter}).
    """

    directories: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    interpreters: tuple[tuple[str, str], ...] = ()

    @classmethod
    def configured(
        cls,
        directories: Sequence[str] = (),
        extensions: Sequence[str] = (),
        interpreters: Sequence[tuple[str, str]] = (),
    ) -> ScriptRules:
        """
        The rules for configured values, in any spelling the command line
        accepts; a later interpreter for the same extension replaces an
        earlier one.

        @raise ValueError: A directory or an extension is malformed.
        """
        assigned: dict[str, str] = {}
        for extension, interpreter in interpreters:
            assigned[normaliseCGIExtension(extension)] = interpreter
        return cls(
            tuple(normaliseCGIDirectory(d) for d in directories),
            tuple(dict.fromkeys(normaliseCGIExtension(e) for e in extensions)),
            tuple(assigned.items()),
        )

    def claim(self, root: str, resolved: ResolvedPath) -> ScriptClaim | None:
        """
        Whether CGI dispatch takes C{resolved}, and how; L{None} leaves it
        to the static half.

        CGI directories are compared first, on the path alone. Extensions
        need the file system only when some segment has one: the segments
        are walked from C{root} while they name directories, and the first
        one that does not is the script if its name has a script
        extension, whether or not such a file exists (a missing script is
        then the CGI half's 404).
        """
        directory = cgiDirectoryFor(resolved, self.directories)
        if directory is not None:
            return _directoryClaim(directory, self.interpreters)
        extensions = self.extensions
        segments = resolved.segments
        if not extensions or not any(
            scriptExtension(word, extensions) for word in segments
        ):
            return None
        for index, word in enumerate(segments):
            if os.path.isdir(os.path.join(root, *segments[: index + 1])):
                continue
            if scriptExtension(word, extensions) is None:
                return None
            return ScriptClaim(index, False, self.interpreters)
        return None


def _isExecutable(st: os.stat_result, filename: str) -> bool:
    """
    Whether the script may be executed: by the server's user, and, when the
    server runs as root (which may execute anything with any execute bit),
    by someone.
    """
    return bool(st.st_mode & 0o111) and os.access(filename, os.X_OK)


def _interpreterFor(
    filename: str, interpreters: tuple[tuple[str, str], ...]
) -> str | None:
    if not interpreters:
        return None
    extension = scriptExtension(
        os.path.basename(filename), tuple(e for e, _ in interpreters)
    )
    if extension is None:
        return None
    return dict(interpreters)[extension]


def locateScript(
    root: str, resolved: ResolvedPath, claim: ScriptClaim | str
) -> ScriptLocation:
    """
    Find the script for C{resolved}, which CGI dispatch took as C{claim}
    (see L{ScriptRules.claim}; a CGI directory's name stands for the claim
    of a path below it, without interpreters).

    Below a CGI directory other than C{/}, directories nest
    (C{/cgi-bin/tools/x.py}, bpo-21323): the walk takes path segments while
    they name directories, the next one is the script, and the rest is
    C{PATH_INFO}.

    @raise CGIRefusal: No script there (404), not a regular file (403), or
        not executable (403; an interpreted script must be readable).
    """
    if isinstance(claim, str):
        claim = _directoryClaim(claim)
    segments = resolved.segments
    index = claim.start
    # One stat per segment walked, the last one kept for the script itself.
    found: os.stat_result | None = None
    while index < len(segments):
        try:
            found = os.stat(os.path.join(root, *segments[: index + 1]))
        except (OSError, ValueError):
            found = None
            break
        if not (claim.nested and stat.S_ISDIR(found.st_mode)):
            break
        index += 1
    scriptSegments = segments[: index + 1]
    scriptName = "/" + "/".join(scriptSegments)
    if index >= len(segments):
        # The request names a directory (/cgi-bin/, /cgi-bin/tools/, or the
        # root below --cgi-dir /): never listed.
        shown = scriptName if scriptName.endswith("/") else scriptName + "/"
        raise CGIRefusal(403, f"CGI script is not a plain file ({shown!r})")
    filename = os.path.join(root, *scriptSegments)
    rest = segments[index + 1 :]
    pathInfo = "/" + "/".join(rest) if rest else ""
    if rest and resolved.trailingSlash:
        pathInfo += "/"
    elif not rest and resolved.trailingSlash:
        pathInfo = "/"
    st = found
    if st is None:
        raise CGIRefusal(404, f"No such CGI script ({scriptName!r})")
    if not stat.S_ISREG(st.st_mode):
        raise CGIRefusal(403, f"CGI script is not a plain file ({scriptName!r})")
    interpreter = _interpreterFor(filename, claim.interpreters)
    if interpreter is None:
        if not _isExecutable(st, filename):
            raise CGIRefusal(403, f"CGI script is not executable ({scriptName!r})")
    elif not os.access(filename, os.R_OK):
        raise CGIRefusal(403, f"CGI script is not readable ({scriptName!r})")
    return ScriptLocation(scriptName, pathInfo, filename, interpreter)


def checkRunnableAs(location: ScriptLocation, user: tuple[int, int]) -> None:
    """
    Check that C{location} can run as C{user}, the C{--cgi-user} a server
    running as root switches to: a script executed itself needs that
    user's execute bit; an interpreted one needs the interpreter to be
    executable by that user, and the script readable. Either is refused
    when it cannot be examined (gone since it was located).

    @raise CGIRefusal: It cannot (403).
    """
    try:
        if location.interpreter is None:
            runnable = runnableBy(location.filename, user)
        else:
            runnable = runnableBy(location.interpreter, user)
            if runnable and not readableBy(location.filename, user):
                raise CGIRefusal(
                    403, f"CGI script is not readable ({location.scriptName!r})"
                )
    except OSError:
        runnable = False
    if not runnable:
        raise CGIRefusal(403, f"CGI script is not executable ({location.scriptName!r})")
