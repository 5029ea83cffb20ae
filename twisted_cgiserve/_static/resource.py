# -*- test-case-name: tests.static.test_resource -*-
"""
Static files with C{SimpleHTTPRequestHandler}'s behaviour, and what a real
server adds to it (keep-alive, validators, ranges).

The resource is a leaf: it resolves the raw request path itself through
L{twisted_cgiserve._http.paths}, because Twisted's traversal decodes each segment
separately (so C{%2f} and C{/} differ) and does not resolve dot segments,
while http.server decodes the whole path once and resolves them.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.paths import (
    DEFAULT_CGI_DIRECTORIES,
    BadRequestPath,
    ResolvedPath,
    cgiDirectorySegments,
    collapseLeadingSlashes,
    foldName,
    hidesScript,
    normaliseCGIDirectory,
    normaliseCGIExtension,
    resolvePath,
    splitTarget,
)
from twisted_cgiserve._static.body import Piece, closeSource, sendBody
from twisted_cgiserve._static.conditional import (
    Precondition,
    evaluatePreconditions,
    formatHTTPDate,
    ifRangeAllows,
    makeETag,
)
from twisted_cgiserve._static.filecache import FileCache
from twisted_cgiserve._static.listing import SMALL_ENTRIES, ListingBuilder, Listings
from twisted_cgiserve._static.mime import ContentTypes
from twisted_cgiserve._static.ranges import parseRange

__all__ = [
    "STATIC_METHODS",
    "StaticResource",
    "refuseMethod",
    "resourcePath",
]


# The methods static files answer; every other one is http.server's 501.
STATIC_METHODS = frozenset({b"GET", b"HEAD"})

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_INTERESTING = frozenset(
    {
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"range",
        b"if-range",
    }
)


def resourcePath(request: IRequest) -> bytes:
    """
    The raw, still percent-encoded path below the resource that is rendering
    C{request}: the whole path at the root of a site, or what follows the
    segments that traversal consumed when the resource is mounted deeper.

    Twisted splits the raw path on C{/} before decoding, so the segments in
    C{request.prepath} correspond one to one to the raw ones.
    """
    path, _query = splitTarget(request.uri)
    path = collapseLeadingSlashes(path)
    depth = len(getattr(request, "prepath", None) or ())
    if not depth:
        return path
    rest = path[1:].split(b"/")[depth:]
    return b"/" + b"/".join(rest) if rest else b""


def _redirectTarget(uri: bytes) -> bytes:
    """
    The C{Location} for a directory asked for without its trailing slash:
    the raw target with a slash added to the path, query and fragment kept,
    as http.server builds it (relative, and never C{//host}).
    """
    uri = collapseLeadingSlashes(uri)
    uri, hashMark, fragment = uri.partition(b"#")
    path, question, query = uri.partition(b"?")
    location = path + b"/"
    if question and query:
        location += b"?" + query
    if hashMark and fragment:
        location += b"#" + fragment
    return location


def _boundary() -> bytes:
    """
    A fresh multipart boundary for one response, of 128 unpredictable bits.
    One derived from the file (its ETag, say) could be written into the
    file by whoever controls its content, who could then forge parts and
    break the framing for every client; a random one cannot be planted, and
    a file holds it by chance with negligible odds (2**-128 per place).
    """
    return b"cgiserve-" + secrets.token_hex(16).encode("ascii")


# Symbolic links followed, at most, to learn a served file's real name (the
# kernel's own limit for one path).
_MAX_LINKS = 40


def _inDirectories(
    resolved: ResolvedPath, directories: tuple[tuple[str, ...], ...]
) -> bool:
    """
    Whether C{resolved} names something inside one of C{directories}
    (folded segments), or the directory itself with its slash: what CGI
    dispatch would take, plus every case variant of it (C{foldName}: on a
    case-insensitive file system C{/CGI-BIN/s.sh} is the script's file,
    although http.server and CGI dispatch match case-sensitively). The
    directory without its slash is only redirected, as for any directory.

    The root (C{()}, C{--cgi-dir /}) holds its top-level files: the root
    itself (its index file would be a script) and single names without a
    trailing slash, as http.server's C{cgi_directories = ['/']} took them.
    """
    segments = resolved.segments
    for parts in directories:
        depth = len(parts)
        if not depth:
            if not segments or (len(segments) == 1 and not resolved.trailingSlash):
                return True
            continue
        if len(segments) < depth or (
            len(segments) == depth and not resolved.trailingSlash
        ):
            continue
        if all(foldName(segments[i]) == part for i, part in enumerate(parts)):
            return True
    return False


def refuseMethod(request: IRequest) -> int:
    """
    Answer a method static files do not support with http.server's 501.
    """
    if request.method == b"POST":
        return sendError(request, 501, "Can only POST to CGI scripts")
    name = request.method.decode("latin-1")
    return sendError(request, 501, f"Unsupported method ({name!r})")


class StaticResource(Resource):
    """
    Serve the files below a directory as C{python -m http.server} does:
    index files, listings, C{301} to add a directory's slash, C{404 File not
    found} for anything missing or unreadable, and C{501} for methods other
    than GET and HEAD. Mount it anywhere in a resource tree.

    The CGI directories of the tree are never served: a script's source is
    what http.server's CGI mode exists to keep private, and a resource
    mounted over the same tree as L{makeRootResource
    <twisted_cgiserve.makeRootResource>} (or over a tree copied from an
    http.server site) would otherwise hand it out. Their files and listings
    are not found (C{404}), however the path is spelt, and so is anything
    whose real path lies in one when a symbolic link leads to it. So are
    files named as scripts (C{cgiExtensions}), wherever they are, in any
    case, with trailing dots or spaces, as an index file, or behind a
    symbolic link.

    @ivar path: The directory served, absolute.
    @ivar indexNames: The files tried, in order, for a directory.
    @ivar listDirectories: Whether a directory without an index file is
        listed (otherwise it is not found).
    @ivar cache: Contents of small files, validated by a C{stat} on every
        request (see L{twisted_cgiserve._static.filecache}).
    @ivar cgiDirectories: The URL paths, below where this resource is
        mounted, that it refuses to serve.
    @ivar cgiExtensions: Folded extensions of files it refuses to serve.
    @ivar smallListing: Directories with at most this many entries are
        listed at once; larger ones in a worker thread.
    @ivar contentTypes: The content type of each file, with the tree's own
        types (C{mimeTypes}) before http.server's.
    """

    isLeaf = True

    def __init__(
        self,
        path: str,
        *,
        indexNames: Sequence[str] = ("index.html", "index.htm"),
        listDirectories: bool = True,
        cache: FileCache | None = None,
        cgiDirectories: Sequence[str] = DEFAULT_CGI_DIRECTORIES,
        reactor: Any = None,
        mimeTypes: Iterable[tuple[str, str]] = (),
        cgiExtensions: Sequence[str] = (),
    ) -> None:
        """
        @param cgiDirectories: The CGI directories of the tree, as in
            L{Settings.cgiDirectories <twisted_cgiserve.Settings>} (default:
            its default, C{/cgi-bin} and C{/htbin}); C{()} if it has none.
            C{/} holds the top-level files (see L{Settings.cgiDirectories
            <twisted_cgiserve.Settings>}).
        @param cgiExtensions: The script extensions of the tree, as in
            L{Settings.cgiExtensions <twisted_cgiserve.Settings>}.
        @param mimeTypes: C{(extension, content type)} pairs, as
            C{(".md", "text/markdown")}, that override the types of files
            with that extension, regardless of case (see
            L{twisted_cgiserve._static.mime.ContentTypes}); the types may
            have parameters (C{text/plain; charset=utf-8}).
        @param reactor: Delivers listings built in a worker thread (default:
            the global reactor).
        @raise ValueError: A CGI directory is not a normalised absolute URL
            path, a script extension is not a dot and a name, or an
            extension or type in C{mimeTypes} is malformed.
        """
        super().__init__()
        self.path = os.path.abspath(path)
        self.indexNames = tuple(indexNames)
        self.listDirectories = listDirectories
        self.cache = cache if cache is not None else FileCache()
        self.cgiDirectories = tuple(normaliseCGIDirectory(d) for d in cgiDirectories)
        self._refused = tuple(
            tuple(foldName(word) for word in cgiDirectorySegments(d))
            for d in self.cgiDirectories
        )
        self.cgiExtensions = tuple(normaliseCGIExtension(e) for e in cgiExtensions)
        self.smallListing = SMALL_ENTRIES
        self._listings = Listings(reactor)
        self.contentTypes = ContentTypes(mimeTypes)

    def render(self, request: IRequest) -> int:
        """
        Serve a GET or HEAD; refuse every other method as http.server does.

        The method is checked before the path: a method static files do not
        support is C{501} whatever the path, malformed (a decoded NUL) or
        not, and only a GET or HEAD can get the malformed path's C{400}.
        L{makeRootResource <twisted_cgiserve.makeRootResource>} answers the
        same for every path that is not below a CGI directory.
        """
        if request.method not in STATIC_METHODS:
            return refuseMethod(request)
        try:
            resolved = resolvePath(resourcePath(request))
        except BadRequestPath:
            return sendError(request, 400, "Bad request path")
        return self.renderResolved(request, resolved)

    def renderResolved(self, request: IRequest, resolved: ResolvedPath) -> int:
        """
        Serve a GET or HEAD whose path the caller already resolved (a
        dispatcher in front of this resource resolves each request once).
        """
        if self._refused and _inDirectories(resolved, self._refused):
            return sendError(request, 404, "File not found")
        fsPath = os.path.join(self.path, *resolved.segments)
        return self.renderPath(request, fsPath, resolved.trailingSlash)

    def renderPath(self, request: IRequest, fsPath: str, trailingSlash: bool) -> int:
        """
        Serve the file or directory at C{fsPath}, already resolved from the
        request and known to lie below L{path}.
        """
        # lstat first: for what is not a link (most things) it is the stat,
        # and it also answers whether the last segment is a link, which
        # _isScript would otherwise ask with a second system call.
        try:
            st = os.lstat(fsPath)
            isLink = stat.S_ISLNK(st.st_mode)
            if isLink:
                st = os.stat(fsPath)
        except (OSError, ValueError):
            return sendError(request, 404, "File not found")
        if stat.S_ISDIR(st.st_mode):
            if self._isScript(
                fsPath, directory=True, trailingSlash=trailingSlash, isLink=isLink
            ):
                # A CGI directory reached through a link: not listed.
                return sendError(request, 404, "File not found")
            return self._renderDirectory(request, fsPath, trailingSlash)
        if (
            not stat.S_ISREG(st.st_mode)
            or trailingSlash
            or self._isScript(fsPath, isLink=isLink)
        ):
            # A file asked for with a trailing slash is not found (Issue17324);
            # FIFOs and devices are never opened for reading; scripts are
            # never sent.
            return sendError(request, 404, "File not found")
        return self._renderFile(request, fsPath, st)

    def _isScript(
        self,
        fsPath: str,
        *,
        directory: bool = False,
        trailingSlash: bool = False,
        isLink: bool | None = None,
    ) -> bool:
        """
        Whether the file or directory at C{fsPath} (below L{path}, found on
        disk) must not be served because of what it really is: a file named
        as a script (see L{hidesScript}), a symbolic link to one (through
        other links too), or, by its real path, something inside a CGI
        directory of this tree (see L{_inDirectories}). Served, a link would
        send a script's source, or list a CGI directory, under another name.
        A directory's name says nothing (a directory named C{x.cgi} is
        served); only where it really is counts.

        The real path is only worked out when a symbolic link lies on the
        way from L{path} to C{fsPath}: otherwise the request's own segments,
        already checked, are the real ones. That costs one C{lstat} per
        segment below L{path}, and a C{realpath} only for linked files.

        @param isLink: Whether C{fsPath} itself is a symbolic link, when the
            caller already knows (L{None}: asked here).
        """
        extensions = () if directory else self.cgiExtensions
        refused = self._refused
        if not (extensions or refused):
            return False
        if extensions and hidesScript(os.path.basename(fsPath), extensions):
            return True
        if not self._linked(fsPath, isLink):
            return False
        if extensions and self._linksToScriptName(fsPath):
            return True
        real = os.path.realpath(fsPath)
        if extensions and hidesScript(os.path.basename(real), extensions):
            return True
        if not refused:
            return False
        realRoot = os.path.realpath(self.path)
        if real == realRoot:
            segments: tuple[str, ...] = ()
        elif real.startswith(os.path.join(realRoot, "")):
            segments = tuple(real[len(realRoot) :].strip(os.sep).split(os.sep))
        else:
            # Outside the tree: in none of its CGI directories.
            return False
        return _inDirectories(ResolvedPath(segments, trailingSlash), refused)

    def _linked(self, fsPath: str, isLink: bool | None = None) -> bool:
        """
        Whether a symbolic link lies on the way from L{path} to C{fsPath},
        C{fsPath} itself included (the root's own links do not count: they
        move the whole tree).

        @param isLink: Whether C{fsPath} itself is a link, if known.
        """
        rest = fsPath[len(self.path) :].strip(os.sep)
        if not rest:
            return False
        segments = rest.split(os.sep)
        if isLink is not None:
            if isLink:
                return True
            # Only the directories on the way are left to ask about.
            segments.pop()
        current = self.path
        for segment in segments:
            current = os.path.join(current, segment)
            try:
                if stat.S_ISLNK(os.lstat(current).st_mode):
                    return True
            except (OSError, ValueError):
                # Gone since it was found: treat it as linked, so that the
                # careful path decides.
                return True
        return False

    def _linksToScriptName(self, fsPath: str) -> bool:
        """
        Whether C{fsPath} is a symbolic link whose chain of targets passes
        through a name of a script, within a bounded walk (a chain longer
        than the kernel's limit counts as one).
        """
        extensions = self.cgiExtensions
        for _ in range(_MAX_LINKS):
            if hidesScript(os.path.basename(fsPath), extensions):
                return True
            try:
                target = os.readlink(fsPath)
            except (OSError, ValueError):
                return False
            fsPath = os.path.join(os.path.dirname(fsPath), target)
        return True

    def _renderDirectory(
        self, request: IRequest, fsPath: str, trailingSlash: bool
    ) -> int:
        if not trailingSlash:
            request.setResponseCode(301)
            request.setHeader(b"location", _redirectTarget(request.uri))
            request.setHeader(b"content-length", b"0")
            request.finish()
            return NOT_DONE_YET
        for name in self.indexNames:
            indexPath = os.path.join(fsPath, name)
            try:
                st = os.stat(indexPath)
            except (OSError, ValueError):
                continue
            if stat.S_ISREG(st.st_mode) and not self._isScript(indexPath):
                # An index file named as a script is passed over, never
                # sent; the directory is then listed, script and all.
                return self._renderFile(request, indexPath, st)
        if not self.listDirectories:
            return sendError(request, 404, "File not found")
        path, _query = splitTarget(collapseLeadingSlashes(request.uri))
        try:
            builder = ListingBuilder(fsPath, path)
            try:
                small = builder.probe(self.smallListing)
                if small:
                    for _ in builder.steps():
                        pass
            finally:
                builder.close()
        except (OSError, ValueError):
            return sendError(request, 404, "No permission to list directory")
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        if small:
            body = builder.body()
            request.setHeader(b"content-length", b"%d" % (len(body),))
            sendBody(request, body, [(0, len(body))])
        elif request.method == b"HEAD":
            # Its length would cost as much as building it, and a HEAD
            # response may leave Content-Length out (RFC 9110 section 8.6).
            request.finish()
        else:
            # Built again from the start in a worker thread, so that a
            # listing waiting its turn holds no descriptor and no memory.
            self._listings.build(request, fsPath, path)
        return NOT_DONE_YET

    def _open(
        self, fsPath: str, st: os.stat_result
    ) -> tuple[int | bytes, os.stat_result] | None:
        """
        The file's contents (small files, from the cache when it is still
        what C{st} describes) or an open descriptor, and its status as
        opened; L{None} if it cannot be read.
        """
        data = self.cache.get(fsPath, st)
        if data is not None:
            return data, st
        try:
            fd = os.open(fsPath, _OPEN_FLAGS)
        except (OSError, ValueError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            if st.st_size > self.cache.maxFile:
                return fd, st
            data = os.pread(fd, st.st_size, 0)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        if len(data) != st.st_size:
            # Changed while being read: serve nothing rather than a mix.
            return None
        self.cache.put(fsPath, st, data)
        return data, st

    def _renderFile(self, request: IRequest, fsPath: str, st: os.stat_result) -> int:
        """
        Answer for a regular file: validators, preconditions, ranges, body.
        """
        opened = self._open(fsPath, st)
        if opened is None:
            return sendError(request, 404, "File not found")
        source, st = opened
        etag = makeETag(st)
        headers = request.requestHeaders
        # One pass over the (few) request headers instead of a lookup for
        # each of the six that matter here.
        conditions = {}
        for name, values in headers.getAllRawHeaders():
            lowered = name.lower()
            if lowered in _INTERESTING:
                conditions[lowered] = values[-1]
        rangeHeader = conditions.pop(b"range", None)
        ifRange = conditions.pop(b"if-range", None)
        lastModified = formatHTTPDate(st.st_mtime)
        if conditions:
            decision = evaluatePreconditions(conditions, st, etag)
            if decision is not Precondition.PROCEED:
                closeSource(source)
                if decision is Precondition.NOT_MODIFIED:
                    request.setResponseCode(304)
                    request.setHeader(b"etag", etag)
                    request.setHeader(b"last-modified", lastModified)
                    request.finish()
                    return NOT_DONE_YET
                return sendError(request, 412)
        contentType = self.contentTypes.forPath(fsPath)
        size = st.st_size
        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"etag", etag)
        request.setHeader(b"last-modified", lastModified)
        pieces: list[Piece] = [(0, size)]
        if (
            rangeHeader is not None
            and request.method == b"GET"
            and ifRangeAllows(ifRange, st, etag)
        ):
            ranges = parseRange(rangeHeader, size)
            if ranges is not None and not ranges:
                closeSource(source)
                request.setHeader(b"content-range", b"bytes */%d" % (size,))
                request.setResponseCode(416)
                request.setHeader(b"content-length", b"0")
                request.finish()
                return NOT_DONE_YET
            if ranges is not None and len(ranges) == 1:
                first, last = ranges[0]
                request.setResponseCode(206)
                request.setHeader(
                    b"content-range", b"bytes %d-%d/%d" % (first, last, size)
                )
                pieces = [(first, last - first + 1)]
            elif ranges:
                boundary = _boundary()
                pieces = []
                for first, last in ranges:
                    pieces.append(
                        b"\r\n--%s\r\nContent-Type: %s\r\n"
                        b"Content-Range: bytes %d-%d/%d\r\n\r\n"
                        % (boundary, contentType, first, last, size)
                    )
                    pieces.append((first, last - first + 1))
                pieces.append(b"\r\n--%s--\r\n" % (boundary,))
                request.setResponseCode(206)
                contentType = b"multipart/byteranges; boundary=" + boundary
        length = sum(len(p) if isinstance(p, bytes) else p[1] for p in pieces)
        request.setHeader(b"content-type", contentType)
        request.setHeader(b"content-length", b"%d" % (length,))
        sendBody(request, source, pieces)
        return NOT_DONE_YET
