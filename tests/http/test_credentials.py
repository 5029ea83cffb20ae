"""
Tests for L{twisted_cgiserve._http.credentials}: the htpasswd checker's
outcomes, its caches and bounds, in simulated time with checks run when
the test says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python.failure import Failure

from twisted_cgiserve._http.credentials import (
    BAD_SECONDS,
    GOOD_SECONDS,
    MAX_PASSWORD,
    CheckerBusy,
    HtpasswdChecker,
    ThreadRunner,
)
from twisted_cgiserve._http.htpasswd import HtpasswdError
from twisted_cgiserve._http.shacrypt import shaCrypt


class Runner:
    """
    Holds checks until the test runs them, counting how many were real.
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], bool | None], Deferred[bool | None]]] = []

    def __call__(self, function: Callable[[], bool | None]) -> Deferred[bool | None]:
        d: Deferred[bool | None] = Deferred()
        self.jobs.append((function, d))
        return d

    def runAll(self) -> None:
        """
        Run the jobs, and those their outcomes let start, until none is left.
        """
        while self.jobs:
            jobs, self.jobs = self.jobs, []
            for function, d in jobs:
                try:
                    result = function()
                except Exception:
                    d.errback(Failure())
                else:
                    d.callback(result)


def hashLine(user: bytes, password: bytes) -> bytes:
    return user + b":" + shaCrypt(password, b"$5$" + user[:8]) + b"\n"


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    path.write_bytes(hashLine(b"alice", b"right") + hashLine(b"bob", b"builder"))
    return path


def make(
    htpasswd: Path, **kw: Any
) -> tuple[HtpasswdChecker, Runner, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    runner = Runner()
    return HtpasswdChecker(str(htpasswd), reactor, runner, **kw), runner, reactor


def outcome(d: Deferred[Any]) -> Any:
    """
    What a fired Deferred holds (its Failure's value for a failure).
    """
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "not fired"
    result = results[0]
    return result.value if isinstance(result, Failure) else result


def login(checker: HtpasswdChecker, user: bytes, password: bytes) -> Deferred[Any]:
    return checker.requestAvatarId(UsernamePassword(user, password))


def test_right(htpasswd: Path) -> None:
    """
    The right password gives the user name, once the check has run away
    from the caller.
    """
    checker, runner, _ = make(htpasswd)
    assert checker.users == 2
    d = login(checker, b"alice", b"right")
    assert not d.called
    runner.runAll()
    assert outcome(d) == b"alice"


def test_strCredentials(htpasswd: Path) -> None:
    """
    Text credentials are checked as UTF-8.
    """
    checker, runner, _ = make(htpasswd)
    d = checker.requestAvatarId(UsernamePassword("bob", "builder"))  # type: ignore[arg-type]
    runner.runAll()
    assert outcome(d) == b"bob"


def test_wrong(htpasswd: Path) -> None:
    checker, runner, _ = make(htpasswd)
    d = login(checker, b"alice", b"wrong")
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)


def test_unknownUserCostsTheSame(htpasswd: Path) -> None:
    """
    A user the file does not have is still checked (against another user's
    hash), and fails.
    """
    checker, runner, _ = make(htpasswd)
    d = login(checker, b"mallory", b"right")
    assert len(runner.jobs) == 1
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)


def test_noUsers(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    checker, runner, _ = make(path)
    assert isinstance(outcome(login(checker, b"a", b"b")), UnauthorizedLogin)
    assert not runner.jobs


def test_successCached(htpasswd: Path) -> None:
    """
    A success is remembered for L{GOOD_SECONDS}: the same credentials are
    answered at once, without a check, until then.
    """
    checker, runner, reactor = make(htpasswd)
    login(checker, b"alice", b"right")
    runner.runAll()
    reactor.advance(GOOD_SECONDS - 1)
    assert outcome(login(checker, b"alice", b"right")) == b"alice"
    assert not runner.jobs
    reactor.advance(1)
    d = login(checker, b"alice", b"right")
    assert len(runner.jobs) == 1
    runner.runAll()
    assert outcome(d) == b"alice"


def test_failureCached(htpasswd: Path) -> None:
    """
    A failure is remembered for L{BAD_SECONDS}; other credentials are not
    affected.
    """
    checker, runner, reactor = make(htpasswd)
    login(checker, b"alice", b"wrong")
    runner.runAll()
    assert isinstance(outcome(login(checker, b"alice", b"wrong")), UnauthorizedLogin)
    assert not runner.jobs
    right = login(checker, b"alice", b"right")
    runner.runAll()
    assert outcome(right) == b"alice"
    reactor.advance(BAD_SECONDS)
    login(checker, b"alice", b"wrong")
    assert len(runner.jobs) == 1


def test_cacheKeyUnambiguous(htpasswd: Path) -> None:
    """
    Moving bytes between user and password makes other credentials.
    """
    checker, runner, _ = make(htpasswd)
    login(checker, b"alice", b"right")
    runner.runAll()
    d = login(checker, b"alicer", b"ight")
    assert len(runner.jobs) == 1
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)


def test_cacheBounded(htpasswd: Path) -> None:
    """
    The oldest outcome is forgotten first once the cache is full.
    """
    checker, runner, _ = make(htpasswd, cacheSize=2)
    for password in (b"w1", b"w2", b"w3"):
        login(checker, b"alice", password)
        runner.runAll()
    login(checker, b"alice", b"w1")
    login(checker, b"alice", b"w3")
    assert len(runner.jobs) == 1


def test_sharedCheck(htpasswd: Path) -> None:
    """
    Requests with the same credentials while they are being checked wait
    for that one check.
    """
    checker, runner, _ = make(htpasswd)
    first = login(checker, b"alice", b"right")
    second = login(checker, b"alice", b"right")
    assert len(runner.jobs) == 1
    runner.runAll()
    assert outcome(first) == outcome(second) == b"alice"


def test_busy(htpasswd: Path) -> None:
    """
    Past C{maxPending} checks in progress, new credentials fail at once
    with L{CheckerBusy}; cached and shared ones do not.
    """
    checker, runner, _ = make(htpasswd, maxPending=2)
    login(checker, b"alice", b"right")
    runner.runAll()
    login(checker, b"alice", b"w1")
    login(checker, b"alice", b"w2")
    assert isinstance(outcome(login(checker, b"alice", b"w3")), CheckerBusy)
    assert outcome(login(checker, b"alice", b"right")) == b"alice"
    assert not login(checker, b"alice", b"w1").called
    runner.runAll()
    d = login(checker, b"alice", b"w3")
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)


def test_abandonedCheckSkipped(htpasswd: Path) -> None:
    """
    A check whose requesters all went away before it ran does not hash.
    """
    checker, runner, _ = make(htpasswd)
    d = login(checker, b"alice", b"right")
    d.cancel()
    assert isinstance(outcome(d), CancelledError)
    function, _ = runner.jobs[0]
    assert function() is None
    runner.runAll()
    # Not remembered as a failure: the next request checks again.
    login(checker, b"alice", b"right")
    assert len(runner.jobs) == 1


def test_oneRequesterLeaves(htpasswd: Path) -> None:
    """
    A check goes on for the requesters still waiting.
    """
    checker, runner, _ = make(htpasswd)
    first = login(checker, b"alice", b"right")
    second = login(checker, b"alice", b"right")
    first.cancel()
    runner.runAll()
    assert outcome(second) == b"alice"


def test_checkRaises(htpasswd: Path) -> None:
    """
    A check that raises is logged and fails the login.
    """
    checker, runner, _ = make(htpasswd)
    d = login(checker, b"alice", b"right")
    _, job = runner.jobs.pop()
    with capturedLogs() as events:
        job.errback(Failure(RuntimeError("boom")))
    assert isinstance(outcome(d), UnauthorizedLogin)
    assert any("alice" in formatEvent(e) for e in events)


def test_reload(htpasswd: Path) -> None:
    """
    Reading the file again uses its users from then on and forgets what
    was cached.
    """
    checker, runner, _ = make(htpasswd)
    login(checker, b"alice", b"right")
    runner.runAll()
    htpasswd.write_bytes(hashLine(b"alice", b"changed"))
    with capturedLogs() as events:
        assert checker.reload()
    assert "Read 1 users" in formatEvent(events[-1])
    d = login(checker, b"alice", b"right")
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)
    d = login(checker, b"alice", b"changed")
    runner.runAll()
    assert outcome(d) == b"alice"


def test_reloadBroken(htpasswd: Path) -> None:
    """
    A file that cannot be used keeps the users read before, and one error
    line says why.
    """
    checker, runner, _ = make(htpasswd)
    htpasswd.write_bytes(b"alice:$apr1$abcdefgh$0123456789abcdefghijkl\n")
    events: list[LogEvent]
    with capturedLogs() as events:
        assert not checker.reload()
    [event] = events
    text = formatEvent(event)
    assert "line 1" in text and "still using the 2 users" in text
    assert "\n" not in text
    d = login(checker, b"bob", b"builder")
    runner.runAll()
    assert outcome(d) == b"bob"


def test_reloadDuringCheck(htpasswd: Path) -> None:
    """
    A check that finishes after the file was read again counts for
    nothing: the user may be gone.
    """
    checker, runner, _ = make(htpasswd)
    d = login(checker, b"alice", b"right")
    htpasswd.write_bytes(hashLine(b"bob", b"builder"))
    checker.reload()
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)
    d = login(checker, b"alice", b"right")
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)


def test_unusableAtStart(tmp_path: Path) -> None:
    with pytest.raises(HtpasswdError):
        HtpasswdChecker(str(tmp_path / "missing"), MemoryReactorClock())


class FakePool:
    """
    A thread pool that runs work at once, in the calling thread.
    """

    def __init__(self) -> None:
        self.started = False
        self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, object], None], f: Callable[[], object]
    ) -> None:
        onResult(True, f())


class ThreadReactor(MemoryReactorClock):
    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        f(*args)


def test_threadRunner() -> None:
    """
    L{ThreadRunner} starts its pool on first use, stops it when the reactor
    shuts down, and gives the function's result.
    """
    reactor = ThreadReactor()
    pool = FakePool()
    runner = ThreadRunner(reactor, pool)  # type: ignore[arg-type]
    assert not pool.started
    assert outcome(runner(lambda: 7)) == 7
    assert outcome(runner(lambda: 8)) == 8
    assert pool.started
    [trigger] = reactor.triggers["during"]["shutdown"]
    trigger[0]()
    assert pool.stopped


def test_defaultRunner(htpasswd: Path) -> None:
    """
    Without a runner, checks go to a L{ThreadRunner}.
    """
    checker = HtpasswdChecker(str(htpasswd), MemoryReactorClock())
    assert isinstance(checker._runner, ThreadRunner)


def test_longPasswordRefusedAtOnce(htpasswd: Path) -> None:
    """
    A password longer than L{MAX_PASSWORD} bytes is wrong at once, without
    a check (SHA-crypt's time grows with the square of its length), and
    known to be wrong beforehand; one of L{MAX_PASSWORD} bytes is checked.
    """
    checker, runner, _ = make(htpasswd)
    long = b"x" * (MAX_PASSWORD + 1)
    assert checker.knownBad(UsernamePassword(b"alice", long))
    assert isinstance(outcome(login(checker, b"alice", long)), UnauthorizedLogin)
    assert not runner.jobs
    assert not checker.knownBad(UsernamePassword(b"alice", long[1:]))
    login(checker, b"alice", long[1:])
    assert len(runner.jobs) == 1


def test_knownBad(htpasswd: Path) -> None:
    """
    Credentials that failed recently are known to be bad until their
    failure is forgotten; others are not.
    """
    checker, runner, reactor = make(htpasswd)
    wrong = UsernamePassword(b"alice", b"wrong")
    assert not checker.knownBad(wrong)
    checker.requestAvatarId(wrong)
    runner.runAll()
    assert checker.knownBad(wrong)
    assert not checker.knownBad(UsernamePassword(b"alice", b"right"))
    reactor.advance(BAD_SECONDS)
    assert not checker.knownBad(wrong)


def _bcryptLine(user: bytes, password: bytes, cost: int) -> bytes:
    return user + b":" + bcrypt.hashpw(password, bcrypt.gensalt(cost)) + b"\n"


@pytest.mark.parametrize(
    "lines",
    [
        # bcrypt at cost 4 is faster than SHA-crypt's 5000 rounds...
        [_bcryptLine(b"alice", b"a", 4), hashLine(b"bob", b"slowest")],
        # ...and at cost 6 slower than 1000 rounds.
        [
            b"alice:" + shaCrypt(b"a", b"$5$rounds=1000$alice") + b"\n",
            _bcryptLine(b"bob", b"slowest", 6),
        ],
        # Of two SHA-crypt hashes, the one with more rounds.
        [
            b"alice:" + shaCrypt(b"a", b"$6$rounds=1000$alice") + b"\n",
            b"bob:" + shaCrypt(b"slowest", b"$5$rounds=9000$bob") + b"\n",
        ],
    ],
)
def test_unknownUserAgainstTheSlowest(tmp_path: Path, lines: list[bytes]) -> None:
    """
    A user the file does not have is checked against the file's slowest
    hash by kind and cost (so the answer comes as late as for its slowest
    user), whichever line it is on; the password matching it does not log
    the unknown user in.
    """
    path = tmp_path / "htpasswd"
    path.write_bytes(b"".join(lines))
    checker, runner, _ = make(path)
    d = login(checker, b"mallory", b"slowest")
    [(function, _)] = runner.jobs
    assert function() is True
    runner.runAll()
    assert isinstance(outcome(d), UnauthorizedLogin)
    # Reading the file again chooses again.
    path.write_bytes(b"".join(reversed(lines)))
    checker.reload()
    login(checker, b"mallory", b"slowest")
    [(function, _)] = runner.jobs
    assert function() is True


def test_oneSHACryptCheckAtATime(tmp_path: Path) -> None:
    """
    SHA-crypt checks (pure Python, holding the GIL) are handed to a thread
    one at a time, each when the one before has ended; bcrypt checks (whose
    C code releases the GIL) all at once.
    """
    path = tmp_path / "htpasswd"
    path.write_bytes(hashLine(b"alice", b"right") + _bcryptLine(b"bob", b"builder", 4))
    checker, runner, _ = make(path)
    first = login(checker, b"alice", b"w1")
    second = login(checker, b"alice", b"w2")
    login(checker, b"bob", b"w1")
    login(checker, b"bob", b"w2")
    assert len(runner.jobs) == 3
    function, d = runner.jobs.pop(0)
    d.callback(function())
    assert isinstance(outcome(first), UnauthorizedLogin)
    assert not second.called
    assert len(runner.jobs) == 3
    runner.runAll()
    assert isinstance(outcome(second), UnauthorizedLogin)
