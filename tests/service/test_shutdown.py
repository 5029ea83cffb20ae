"""
Tests for L{twisted_cgiserve._service.shutdown}: the graceful stop, against a fake
site and a fake script owner, in simulated time.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, capturedLogs, formatEvent

from twisted_cgiserve._cgi.protocol import KILL_GRACE
from twisted_cgiserve._service.shutdown import ShutdownService

# The service's poll interval and flush time, as the tests expect them.
POLL = 0.02
FLUSH = 5.0


class _Site:
    """
    A site that records what the shutdown asks of it. It settles once
    L{settleAt} (reactor seconds) has passed and its connections close
    L{closeTime} seconds after the first L{closeConnections}.
    """

    def __init__(self, clock: MemoryReactorClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, float]] = []
        self.inFlight: set[Any] = set()
        self.settleAt: float | None = 0.0
        self.closeTime: float | None = 0.0
        self._closingSince: float | None = None

    def _note(self, name: str) -> None:
        self.calls.append((name, self.clock.seconds()))

    def named(self, name: str) -> list[float]:
        return [when for (what, when) in self.calls if what == name]

    def startDraining(self) -> None:
        self._note("startDraining")

    def closeIdleConnections(self) -> None:
        self._note("closeIdleConnections")

    def settled(self) -> bool:
        return self.settleAt is not None and self.clock.seconds() >= self.settleAt

    def closeConnections(self) -> None:
        self._note("closeConnections")
        if self._closingSince is None:
            self._closingSince = self.clock.seconds()

    def connectionsOpen(self) -> int:
        if self._closingSince is None or self.closeTime is None:
            return 3
        return 0 if self.clock.seconds() >= self._closingSince + self.closeTime else 3


class _Scripts:
    """
    A script owner whose scripts end when the test says.
    """

    def __init__(self, site: _Site) -> None:
        self.site = site
        self.stops: list[Deferred[object]] = []

    def stopScripts(self) -> Deferred[object]:
        self.site._note("stopScripts")
        stopped: Deferred[object] = Deferred()
        self.stops.append(stopped)
        return stopped


def _stop(
    grace: float = 30.0,
    *,
    scripts: bool = True,
    settleAt: float | None = 0.0,
    inFlight: int = 0,
    closeTime: float | None = 0.0,
) -> tuple[MemoryReactorClock, _Site, _Scripts, Deferred[None], list[object]]:
    """
    Stop a service over a fake site that settles at C{settleAt} with
    C{inFlight} requests until then, and whose connections take
    C{closeTime} to close.
    """
    clock = MemoryReactorClock()
    site = _Site(clock)
    site.settleAt = settleAt
    site.inFlight.update(object() for _ in range(inFlight))
    site.closeTime = closeTime
    owner = _Scripts(site)
    service = ShutdownService(site, owner if scripts else None, grace, clock)
    service.startService()
    stopped = service.stopService()
    results: list[object] = []
    stopped.addBoth(results.append)
    return clock, site, owner, stopped, results


def _advance(clock: MemoryReactorClock, seconds: float) -> None:
    """
    Move the clock on in poll-sized steps, as the reactor would.
    """
    for _ in range(round(seconds / POLL)):
        clock.advance(POLL)


def _shutdownLog(events: list[LogEvent]) -> list[str]:
    return [
        formatEvent(e) for e in events if e.get("log_namespace") == "cgiserve.shutdown"
    ]


def test_drainsBeforeEndingScripts() -> None:
    """
    Stopping starts the site draining and polls it to close connections as
    they become idle; the scripts are left alone while requests are in
    flight.
    """
    clock, site, owner, _, results = _stop(settleAt=1.0, inFlight=1)
    assert site.named("startDraining") == [0.0]
    _advance(clock, 0.5)
    polls = site.named("closeIdleConnections")
    assert len(polls) >= 0.5 / POLL
    assert all(b - a <= POLL + 1e-9 for a, b in pairwise(polls))
    assert owner.stops == []
    assert results == []


def test_endsScriptsOnceSettled() -> None:
    """
    Once the site has settled, the scripts are ended (not before), then the
    connections are closed, and the stop completes once they have closed.
    """
    clock, site, owner, _, results = _stop(settleAt=1.0, inFlight=1)
    _advance(clock, 1.0)
    assert len(owner.stops) == 1
    assert site.named("stopScripts")[0] >= 1.0
    assert site.named("closeConnections") == []
    owner.stops[0].callback(None)
    assert site.named("closeConnections")
    assert results == [None]
    order = [what for (what, _) in site.calls if what != "closeIdleConnections"]
    assert order == ["startDraining", "stopScripts", "closeConnections"]


def test_settledAtOnceStopsAtOnce() -> None:
    """
    A server with nothing in flight stops without waiting a poll.
    """
    clock, _, owner, _, results = _stop()
    owner.stops[0].callback(None)
    assert results == [None]
    assert clock.seconds() == 0


def test_waitsForConnectionsToClose() -> None:
    """
    Connections that take a while to send their last bytes are waited
    for, polling them.
    """
    clock, site, owner, _, results = _stop(closeTime=1.0)
    owner.stops[0].callback(None)
    _advance(clock, 0.9)
    assert results == []
    _advance(clock, 0.2)
    assert results == [None]
    assert len(site.named("closeConnections")) > 1


def test_waitsForConnectionsAtMostTheFlushTime() -> None:
    """
    Connections that never close (a client that reads nothing) hold the
    stop for the flush time and no longer.
    """
    clock, _, owner, _, results = _stop(closeTime=None)
    owner.stops[0].callback(None)
    _advance(clock, FLUSH - 0.1)
    assert results == []
    _advance(clock, 0.2)
    assert results == [None]


def test_scriptsThatDoNotEndDoNotHoldTheStop() -> None:
    """
    Scripts that do not report their end hold the stop for the kill grace
    and a little more, then the connections are closed all the same.
    """
    clock, site, _, _, results = _stop()
    clock.advance(KILL_GRACE + 1)
    assert site.named("closeConnections") == []
    clock.advance(1.01)
    assert site.named("closeConnections")
    assert results == [None]


def test_graceExpiryWarnsAndStillEndsScripts() -> None:
    """
    Requests still in flight when the grace period is over are logged,
    once, and the scripts are ended all the same.
    """
    with capturedLogs() as events:
        clock, _, owner, _, results = _stop(grace=2.0, settleAt=None, inFlight=2)
        _advance(clock, 2.0 - POLL)
        assert owner.stops == []
        _advance(clock, 2 * POLL)
        assert len(owner.stops) == 1
        owner.stops[0].callback(None)
    assert results == [None]
    lines = _shutdownLog(list(events))
    warnings = [line for line in lines if "after the grace period" in line]
    assert warnings == [
        "2 request(s) still in progress after the grace period; ending them."
    ]


def test_graceZero() -> None:
    """
    With no grace, the requests in flight are not waited for: scripts are
    ended at once.
    """
    with capturedLogs() as events:
        _, site, owner, _, results = _stop(grace=0, settleAt=None, inFlight=1)
    assert site.named("stopScripts") == [0.0]
    owner.stops[0].callback(None)
    assert results == [None]
    assert any("after the grace period" in line for line in _shutdownLog(list(events)))


def test_noScriptOwner() -> None:
    """
    A site without CGI has no scripts to end.
    """
    _, site, _, _, results = _stop(scripts=False)
    assert results == [None]
    assert site.named("closeConnections") == [0.0]


def test_logsRequestsWaitedFor() -> None:
    """
    The log says how long the server waits and for how many requests.
    """
    clock = MemoryReactorClock()
    site = _Site(clock)
    site.inFlight.update({object(), object(), object()})
    service = ShutdownService(site, None, 7, clock)
    with capturedLogs() as events:
        service.stopService()
    assert "Waiting up to 7 s for 3 request(s) in progress." in _shutdownLog(
        list(events)
    )


class _RunningClock(MemoryReactorClock):
    """
    A clock that can be asked to stop from a signal handler.
    """

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        self.callLater(0, f, *args, **kw)

    def stop(self) -> None:
        # As the real reactor: stopping twice is an error.
        if not self.running:
            raise ReactorNotRunning()
        super().stop()


@pytest.fixture
def _signals() -> Iterator[None]:
    """
    Restore SIGTERM's and SIGINT's handlers after the test.
    """
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("_signals")
def test_signalStopsTheReactorCleanly() -> None:
    """
    Once the reactor runs, SIGTERM and SIGINT stop it through the service,
    so that twistd does not die of the signal and exits with status 0.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    clock = _RunningClock()
    service = ShutdownService(_Site(clock), None, 1, clock)
    service.startService()
    clock.run()
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    assert signal.getsignal(signal.SIGINT) == handler
    clock.running = True
    with capturedLogs() as events:
        handler(signal.SIGTERM, None)
        clock.advance(0)
    assert not clock.running
    assert "Received SIGTERM; stopping." in _shutdownLog(list(events))
    # A second signal while stopping changes nothing, and is no error.
    with capturedLogs() as events:
        handler(signal.SIGINT, None)
        clock.advance(0)
    assert "Received SIGINT; stopping." in _shutdownLog(list(events))
    assert not [e for e in events if e.get("log_failure")]


@pytest.mark.usefixtures("_signals")
def test_ignoredSignalsAreLeftAlone() -> None:
    """
    A process started with SIGTERM ignored (as under nohup) keeps it so.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    before = signal.getsignal(signal.SIGINT)
    clock = _RunningClock()
    service = ShutdownService(_Site(clock), None, 1, clock)
    service.startService()
    clock.run()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == before
