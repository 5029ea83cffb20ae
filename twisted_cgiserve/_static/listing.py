# -*- test-case-name: tests.static.test_listing -*-
"""
Directory listings, byte for byte the page CPython 3.14's http.server
renders: scripts and tests that scrape those pages keep working.

Names are sorted case-insensitively with no directories-first grouping,
directories get a C{/} (in the text and the link), symbolic links an C{@}
(in the text only), links are percent-quoted and text is HTML-escaped.
Undecodable file names travel as surrogate escapes and come back out as the
same bytes, so every listed file can be fetched.

A listing costs 2 to 4 microseconds per entry, so building one of 100,000
entries in the reactor thread stopped every other client for 0.4 s (eight
at once: 2.4 s). Small directories, the common case, are still listed at
once: a thread costs more than they do. Larger ones are built by
L{Listings} in a worker thread, in short steps: the worker shares the
interpreter lock with the reactor, and C{list.sort} or C{bytes.join} over
the whole directory would hold it for tens of milliseconds in one call, so
entries are read, formatted and sorted in chunks and the sorted chunks are
merged lazily (the order is that of one stable sort of the whole
directory, as http.server's).
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Callable, Iterator
from html import escape
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest

from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.paths import decodePath
from twisted_cgiserve._static.body import sendBody

__all__ = ["SMALL_ENTRIES", "ListingBuilder", "Listings", "renderListing"]

_log = Logger(namespace="cgiserve.static")

_HEAD = (
    "<!DOCTYPE HTML>\n"
    '<html lang="en">\n'
    "<head>\n"
    '<meta charset="utf-8">\n'
    '<style type="text/css">\n:root {\ncolor-scheme: light dark;\n}\n</style>\n'
    "<title>Directory listing for {title}</title>\n</head>\n"
    "<body>\n<h1>Directory listing for {title}</h1>\n"
    "<hr>\n<ul>"
)
_TAIL = b"\n</ul>\n<hr>\n</body>\n</html>\n"

# Entries read, formatted and sorted (or merged) per step: under a
# millisecond's work.
STEP = 256
# Directories with at most this many entries are listed in the reactor
# thread: 2 ms (4 ms on a busy machine), about what a listing built in a
# thread costs other clients anyway by holding the interpreter lock for its
# 5 ms switch interval. Telling a larger directory costs reading this many
# names (0.4 ms).
SMALL_ENTRIES = 1000

_sortKey = itemgetter(0)

if TYPE_CHECKING:
    _Scandir = os._ScandirIterator[str]


def _line(entry: os.DirEntry[str]) -> str:
    """
    The C{<li>} for one directory entry.
    """
    name = entry.name
    display = link = name
    try:
        isDir = entry.is_dir()
    except OSError:
        isDir = False
    if isDir:
        display = link = name + "/"
    try:
        isLink = entry.is_symlink()
    except OSError:
        isLink = False
    if isLink:
        display = name + "@"
    return '\n<li><a href="{}">{}</a></li>'.format(
        quote(link, errors="surrogatepass"), escape(display, quote=False)
    )


def _title(requestPath: bytes) -> str:
    """
    The page's title: the raw request path (no query) decoded as 3.14 does.
    """
    try:
        return decodePath(requestPath)
    except ValueError:
        return requestPath.decode("latin-1")


class ListingBuilder:
    """
    Build one directory's listing page in bounded steps.

    L{probe} says cheaply whether the directory is small; iterate L{steps}
    to the end (each step reads, formats or merges at most L{STEP} entries,
    so no step holds the interpreter lock for long), then take L{body}.
    L{close} releases the directory when the listing is abandoned part way.
    """

    def __init__(self, directory: str, requestPath: bytes) -> None:
        """
        Open the directory.

        @param requestPath: The raw request path (no query), shown decoded
            in the title.
        @raise OSError: The directory cannot be listed.
        """
        self._scandir: _Scandir | None = os.scandir(directory)
        head = _HEAD.replace("{title}", escape(_title(requestPath), quote=False))
        try:
            headBytes = head.encode("utf-8", "surrogateescape")
            # File names always encode this way: they were decoded so.
            self._errors = "surrogateescape"
        except UnicodeEncodeError:
            # A lone surrogate from the request path, which cannot have come
            # from the disk: replaced, in the whole page, as before.
            headBytes = head.encode("utf-8", "replace")
            self._errors = "replace"
        self._read: list[os.DirEntry[str]] = []
        self._chunks: list[list[tuple[str, str]]] = []
        self._parts: list[bytes] = [headBytes]

    def probe(self, most: int) -> bool:
        """
        Read up to C{most + 1} entries, without formatting them: about a
        tenth of the cost of listing them.

        @return: Whether the directory has at most C{most} entries.
        @raise OSError: The directory could not be read.
        """
        assert self._scandir is not None
        for entry in self._scandir:
            self._read.append(entry)
            if len(self._read) > most:
                return False
        return True

    def _nextChunk(self) -> bool:
        """
        Format and sort the next chunk of entries (those L{probe} read
        first).

        @return: Whether there may be more.
        @raise OSError: The directory could not be read.
        """
        entries, self._read = self._read[:STEP], self._read[STEP:]
        if len(entries) < STEP and self._scandir is not None:
            for entry in self._scandir:
                entries.append(entry)
                if len(entries) == STEP:
                    break
        if entries:
            chunk = [(entry.name.lower(), _line(entry)) for entry in entries]
            chunk.sort(key=_sortKey)
            self._chunks.append(chunk)
        return len(entries) == STEP

    def _emit(self, lines: list[str]) -> None:
        text = "".join(lines)
        try:
            self._parts.append(text.encode("utf-8", self._errors))
        except UnicodeEncodeError:
            self._parts.append(text.encode("utf-8", "replace"))

    def steps(self) -> Iterator[None]:
        """
        The work, one bounded step per item.

        @raise OSError: The directory could not be read.
        """
        try:
            while self._nextChunk():
                yield None
        finally:
            self.close()
        chunks, self._chunks = self._chunks, []
        if len(chunks) == 1:
            self._emit([line for _key, line in chunks[0]])
        elif chunks:
            # heapq.merge takes equal keys from earlier chunks first, so the
            # order is that of one stable sort in directory order, as
            # sorted(os.listdir(), key=str.lower) gives it.
            lines: list[str] = []
            for _key, line in heapq.merge(*chunks, key=_sortKey):
                lines.append(line)
                if len(lines) == STEP:
                    self._emit(lines)
                    lines = []
                    yield None
            self._emit(lines)
        self._parts.append(_TAIL)

    def body(self) -> bytes:
        """
        The page, once L{steps} has run to its end.
        """
        return b"".join(self._parts)

    def close(self) -> None:
        """
        Release the directory (idempotent).
        """
        scandir, self._scandir = self._scandir, None
        self._read = []
        if scandir is not None:
            scandir.close()


def renderListing(directory: str, requestPath: bytes) -> bytes:
    """
    The listing page for C{directory}, built at once.

    @param requestPath: The raw request path (no query), shown decoded in
        the title as 3.14 does.
    @raise OSError: The directory cannot be listed.
    """
    builder = ListingBuilder(directory, requestPath)
    for _ in builder.steps():
        pass
    return builder.body()


# Large listings built at once, each in its own thread. One: the threads
# share the interpreter lock with the reactor, and each more thread is one
# more for it to wait for (measured with 8 clients listing 100,000 entries:
# with four threads another client's 1 KiB file took up to 0.45 s, p90
# 45 ms; with one, 0.06 s, p90 10 ms).
WORKERS = 1

# Runs a function in a thread; the Deferred fires in the reactor thread.
RunInThread = Callable[[Callable[[], "bytes | None"]], "Deferred[bytes | None]"]


class Listings:
    """
    Build large listings in a worker thread and send each when it is
    complete; the reactor thread meanwhile serves everyone else.

    The work is L{ListingBuilder}'s short steps (no step holds the
    interpreter lock for long, the sort included), and it stops at the next
    step when the client goes away. Listings wait their turn in the pool's
    queue holding no descriptor and no memory.
    """

    def __init__(
        self, reactor: Any = None, *, runInThread: RunInThread | None = None
    ) -> None:
        """
        @param reactor: Delivers results to the reactor thread and stops
            the worker threads at shutdown (default: the global reactor,
            looked up when first needed).
        @param runInThread: Runs the work instead of the thread pool
            (tests).
        """
        self._reactor = reactor
        self._runInThread = runInThread
        self._pool: ThreadPool | None = None

    def _inThread(self, work: Callable[[], bytes | None]) -> Deferred[bytes | None]:
        if self._runInThread is not None:
            return self._runInThread(work)
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # noqa: PLC0415

            self._reactor = reactor
        if self._pool is None:
            self._pool = ThreadPool(0, WORKERS, name="cgiserve-listings")
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        return deferToThreadPool(reactor, self._pool, work)

    def build(self, request: IRequest, directory: str, requestPath: bytes) -> None:
        """
        List C{directory} as the answer to C{request} (a GET whose headers
        are set but for Content-Length) and finish it; if the client goes
        away first, stop and write nothing.
        """
        gone = threading.Event()

        def work() -> bytes | None:
            # In the worker thread: touches nothing but the directory.
            if gone.is_set():
                return None
            builder = ListingBuilder(directory, requestPath)
            try:
                for _ in builder.steps():
                    if gone.is_set():
                        return None
            finally:
                builder.close()
            return builder.body()

        def built(body: bytes | None) -> None:
            if body is None or gone.is_set():
                return
            request.setHeader(b"content-length", b"%d" % (len(body),))
            sendBody(request, body, [(0, len(body))])

        def failed(failure: Failure) -> None:
            if gone.is_set():
                return
            if failure.check(OSError, ValueError):
                # Gone, or made unreadable, since it was first read.
                sendError(request, 404, "No permission to list directory")
                return
            _log.failure("Error listing {directory}", failure, directory=directory)
            sendError(request, 500)

        # Every Twisted request has notifyFinish; IRequest does not say so.
        cast(Any, request).notifyFinish().addErrback(lambda _: gone.set())
        self._inThread(work).addCallbacks(built, failed)
