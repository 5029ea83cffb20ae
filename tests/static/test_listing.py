"""
Tests for directory listings: http.server's page byte for byte however the
work is split, small directories listed at once, large ones in a worker
thread (run here in the test's own thread, or not at all, to see each step),
HEAD without a body, and clients that go away while their listing is built.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tests.support.pages import listingPage
from tests.support.requests import body, header, makeRequest, render
from twisted_cgiserve import StaticResource
from twisted_cgiserve._static import listing as _listing
from twisted_cgiserve._static.listing import (
    SMALL_ENTRIES,
    ListingBuilder,
    Listings,
    renderListing,
)


def reference(directory: Path, title: str) -> bytes:
    """
    http.server 3.14's C{list_directory}, written out plainly: the page the
    listing must equal byte for byte.
    """
    names = sorted(os.listdir(directory), key=str.lower)
    entries = []
    for name in names:
        full = os.path.join(directory, name)
        display = link = name
        if os.path.isdir(full):
            display = link = name + "/"
        if os.path.islink(full):
            display = name + "@"
        entries.append(
            (quote(link, errors="surrogatepass"), escape(display, quote=False))
        )
    return listingPage(escape(title, quote=False), entries)


def fill(directory: Path, count: int, prefix: str = "f") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"{prefix}{i:05d}").touch()


class Worker:
    """
    A stand-in for the thread pool: keeps the work until the test runs it.
    """

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[], bytes | None], Deferred[bytes | None]]]
        self.queue = []

    def __call__(self, work: Callable[[], bytes | None]) -> Deferred[bytes | None]:
        d: Deferred[bytes | None] = Deferred()
        self.queue.append((work, d))
        return d

    def runAll(self) -> None:
        while self.queue:
            work, d = self.queue.pop(0)
            try:
                result = work()
            except BaseException:
                d.errback(Failure())
            else:
                d.callback(result)


def inline(work: Callable[[], bytes | None]) -> Deferred[bytes | None]:
    try:
        return succeed(work())
    except Exception:
        return fail()


def static(root: Path, runInThread: Callable[..., object] = inline) -> StaticResource:
    resource = StaticResource(str(root))
    resource._listings = Listings(runInThread=runInThread)  # type: ignore[arg-type]
    return resource


_names = st.lists(
    st.one_of(
        st.sampled_from(["a", "A", "b", "B", "a.txt", "A.txt", "_", "~x", "Z"]),
        st.text(
            alphabet=st.characters(
                blacklist_categories=["Cs", "Cc"], blacklist_characters="/\x00"
            ),
            min_size=1,
            max_size=8,
        ),
    ),
    max_size=40,
    unique_by=lambda name: name,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=_names, step=st.integers(min_value=1, max_value=7), dirs=st.data())
def test_sameBytesHoweverSplit(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    names: list[str],
    step: int,
    dirs: st.DataObject,
) -> None:
    """
    The page is http.server's, byte for byte, whatever the chunk size: the
    merged chunks give the order of one stable case-insensitive sort
    (names equal but for case keep the directory's order), with
    directories, symbolic links and escaping as http.server has them.
    """
    monkeypatch.setattr(_listing, "STEP", step)
    directory = tmp_path_factory.mktemp("names")
    made = []
    for name in names:
        if name in (".", "..") or name.lower() in (n.lower() for n in made):
            # Some file systems fold case; keep the test independent of it.
            continue
        kind = dirs.draw(st.sampled_from(["file", "dir", "link"]))
        path = directory / name
        try:
            if kind == "dir":
                path.mkdir()
            elif kind == "link":
                path.symlink_to(".")
            else:
                path.touch()
        except OSError:
            continue
        made.append(name)
    assert renderListing(str(directory), b"/d/") == reference(directory, "/d/")


def test_caseTiesKeepDirectoryOrder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Names equal but for case come in the order the directory gives them, as
    from one stable sort, even when they fall in different chunks.
    """
    monkeypatch.setattr(_listing, "STEP", 2)
    for name in ("x", "X", "b", "a", "B", "A"):
        (tmp_path / name).touch()
    assert renderListing(str(tmp_path), b"/") == reference(tmp_path, "/")


def test_undecodableNamesAndTitle(tmp_path: Path) -> None:
    """
    Undecodable names come back as the same bytes; a title with a lone
    surrogate (only a request path can carry one) makes the whole page use
    replacement characters, as http.server's encoding fallback does.
    """
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    with open(raw, "wb"):
        pass
    page = renderListing(str(tmp_path), b"/")
    assert b"caf\xe9</a>" in page
    assert page == reference(tmp_path, "/")
    replaced = renderListing(str(tmp_path), b"/%ED%A0%80/../")
    assert b"caf?</a>" in replaced
    assert b"Directory listing for /?/../" in replaced


def test_probe(tmp_path: Path) -> None:
    """
    C{probe(n)} says whether there are at most C{n} entries, reading one more
    at most; the entries it read are listed once, not twice.
    """
    fill(tmp_path, 5)
    builder = ListingBuilder(str(tmp_path), b"/")
    assert not builder.probe(4)
    for _ in builder.steps():
        pass
    assert builder.body() == reference(tmp_path, "/")
    builder = ListingBuilder(str(tmp_path), b"/")
    assert builder.probe(5)
    builder.close()


def test_closeReleasesDirectory(tmp_path: Path) -> None:
    """
    A listing abandoned part way closes the directory it read.
    """
    fill(tmp_path, 20)
    before = len(os.listdir("/proc/self/fd"))
    builders = [ListingBuilder(str(tmp_path), b"/") for _ in range(10)]
    for builder in builders:
        builder.probe(3)
    assert len(os.listdir("/proc/self/fd")) >= before + 10
    for builder in builders:
        builder.close()
        builder.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_smallListedAtOnce(tmp_path: Path) -> None:
    """
    A directory of C{SMALL_ENTRIES} entries is listed in the request's own
    call, with no worker involved.
    """
    fill(tmp_path / "d", SMALL_ENTRIES)
    worker = Worker()
    request = render(static(tmp_path, worker), makeRequest(b"/d/"))
    assert not worker.queue
    assert body(request) == reference(tmp_path / "d", "/d/")
    assert header(request, b"content-length") == b"%d" % (len(body(request)),)


def test_largeBuiltByWorker(tmp_path: Path) -> None:
    """
    One entry more and the listing is built by the worker; the request is
    finished, with the same page and its length, when the worker is done.
    """
    fill(tmp_path / "d", SMALL_ENTRIES + 1)
    worker = Worker()
    request = makeRequest(b"/d/")
    assert static(tmp_path, worker).render(request) == NOT_DONE_YET
    assert len(worker.queue) == 1
    assert not request.finished and not request.written
    worker.runAll()
    assert request.finished == 1
    expected = reference(tmp_path / "d", "/d/")
    assert body(request) == expected
    assert header(request, b"content-length") == b"%d" % (len(expected),)
    assert header(request, b"content-type") == b"text/html; charset=utf-8"


def test_thresholdSetting(tmp_path: Path) -> None:
    """
    L{StaticResource.smallListing} sets where large begins.
    """
    fill(tmp_path / "d", 3)
    worker = Worker()
    resource = static(tmp_path, worker)
    resource.smallListing = 2
    request = makeRequest(b"/d/")
    resource.render(request)
    assert len(worker.queue) == 1
    worker.runAll()
    assert body(request) == reference(tmp_path / "d", "/d/")


def test_headBuildsNothing(tmp_path: Path) -> None:
    """
    HEAD on a large directory builds no page: no worker, no body, and no
    Content-Length (it would cost the whole build); the type is GET's. On a
    small one it gives GET's Content-Length, as http.server does.
    """
    fill(tmp_path / "big", SMALL_ENTRIES + 1)
    fill(tmp_path / "small", 3)
    worker = Worker()
    resource = static(tmp_path, worker)
    head = render(resource, makeRequest(b"/big/", method=b"HEAD"))
    assert not worker.queue
    assert body(head) == b""
    assert head.responseCode in (None, 200)
    assert header(head, b"content-length") is None
    assert header(head, b"content-type") == b"text/html; charset=utf-8"
    get = render(resource, makeRequest(b"/small/"))
    head = render(resource, makeRequest(b"/small/", method=b"HEAD"))
    assert body(head) == b""
    assert list(head.responseHeaders.getAllRawHeaders()) == list(
        get.responseHeaders.getAllRawHeaders()
    )


def test_headOnUnlistableDirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    HEAD still finds out that a directory cannot be listed (the tests run as
    root, who may read any directory: the refusal is simulated).
    """
    (tmp_path / "d").mkdir()

    def refuse(path: str) -> object:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(_listing.os, "scandir", refuse)
    for method in (b"GET", b"HEAD"):
        request = render(static(tmp_path), makeRequest(b"/d/", method=method))
        assert request.responseCode == 404
        assert request.responseMessage == b"No permission to list directory"


def test_clientGoneBeforeWork(tmp_path: Path) -> None:
    """
    A client that goes away while its listing waits for the worker gets
    nothing written and is not finished again; the work does not read the
    directory.
    """
    fill(tmp_path / "d", SMALL_ENTRIES + 1)
    worker = Worker()
    request = makeRequest(b"/d/")
    static(tmp_path, worker).render(request)
    request.processingFailed(Failure(ConnectionDone()))
    before = len(os.listdir("/proc/self/fd"))
    work, d = worker.queue.pop()
    assert work() is None
    d.callback(None)
    assert request.written == []
    assert len(os.listdir("/proc/self/fd")) == before


def test_clientGoneDuringWork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A client that goes away while its listing is being built stops the
    build at the next step, releases the directory, and gets nothing.
    """
    fill(tmp_path / "d", SMALL_ENTRIES + 1)
    worker = Worker()
    request = makeRequest(b"/d/")
    static(tmp_path, worker).render(request)
    steps = []
    original = _listing._line

    def line(entry: os.DirEntry[str]) -> str:
        steps.append(entry.name)
        if len(steps) == 300:
            # The reactor thread hears of the disconnect mid-build.
            request.processingFailed(Failure(ConnectionDone()))
        return original(entry)

    monkeypatch.setattr(_listing, "_line", line)
    before = len(os.listdir("/proc/self/fd"))
    worker.runAll()
    # It stops after the step in progress, long before the end.
    assert len(steps) <= 2 * _listing.STEP < SMALL_ENTRIES
    assert request.written == []
    assert len(os.listdir("/proc/self/fd")) <= before


def test_directoryGoneBeforeWork(tmp_path: Path) -> None:
    """
    A directory removed between the request and the worker's turn is not
    found, as one that could not be listed at once.
    """
    fill(tmp_path / "d", SMALL_ENTRIES + 1)
    worker = Worker()
    request = makeRequest(b"/d/")
    static(tmp_path, worker).render(request)
    for child in (tmp_path / "d").iterdir():
        child.unlink()
    (tmp_path / "d").rmdir()
    worker.runAll()
    assert request.finished == 1
    assert request.responseCode == 404
    assert b"No permission to list directory" in body(request)


def test_unexpectedErrorIs500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A bug in the worker is logged and answered with a 500, never a request
    left open.
    """
    fill(tmp_path / "d", SMALL_ENTRIES + 1)
    worker = Worker()
    request = makeRequest(b"/d/")
    static(tmp_path, worker).render(request)

    def broken(entry: os.DirEntry[str]) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(_listing, "_line", broken)
    worker.runAll()
    assert request.finished == 1
    assert request.responseCode == 500


def test_realThreadPool(tmp_path: Path) -> None:
    """
    Without a stand-in, the work runs in the listing pool's thread and its
    result comes back through the reactor.
    """
    fill(tmp_path / "d", SMALL_ENTRIES + 1)
    calls: list[Callable[[], None]] = []
    triggers: list[tuple[str, str, Callable[[], None]]] = []

    class Reactor:
        def callFromThread(self, f: Callable[..., None], *a: object) -> None:
            calls.append(lambda: f(*a))

        def addSystemEventTrigger(
            self, phase: str, event: str, f: Callable[[], None]
        ) -> None:
            triggers.append((phase, event, f))

    resource = StaticResource(str(tmp_path), reactor=Reactor())
    request = DummyRequest([])
    request.uri = b"/d/"
    resource.render(request)
    try:
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls
        for call in calls:
            call()
        assert body(request) == reference(tmp_path / "d", "/d/")
    finally:
        assert [(p, e) for p, e, _ in triggers] == [("during", "shutdown")]
        triggers[0][2]()
