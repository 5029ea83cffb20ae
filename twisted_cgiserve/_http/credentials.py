# -*- test-case-name: tests.http.test_credentials -*-
"""
The users of an htpasswd file as a L{twisted.cred} credentials checker, at a
bounded cost.

Password hashes are slow by design (bcrypt at cost 10 takes about 60 ms of
CPU, SHA-crypt in pure Python a few), so a client could make the server do
a lot of work by sending passwords. What bounds it:

  - Checks never run on the reactor thread: they go to a pool of two
    threads of their own (not the reactor's shared pool, which directory
    listings use). bcrypt's C code releases the GIL while it works, so
    bcrypt checks do not slow the reactor. SHA-crypt here is pure Python
    and holds the GIL for most of its run: every SHA-crypt check running
    takes a share of the one interpreter from the reactor thread, so at
    most one runs at a time (the others wait in line, without a thread),
    which bounds the slowdown of everything else to that one thread's
    share, measured at a few milliseconds a request.
  - A password longer than L{MAX_PASSWORD} bytes is refused as a wrong
    one at once, without a check: SHA-crypt's time grows with the square
    of the password's length. No user needs one that long (passlib has
    the same bound).
  - At most L{MAX_PENDING} checks are queued or running; past that a login
    fails with L{CheckerBusy} (the client gets a 503) instead of growing a
    queue without bound.
  - Identical credentials are checked once: requests that arrive while
    they are being checked wait for that check, and the outcome is kept
    (L{GOOD_SECONDS} for a success, L{BAD_SECONDS} for a failure, at most
    L{CACHE_SIZE} of each), keyed by an HMAC of user and password under a
    key drawn at start-up: the cache holds no password, and its keys are no
    faster to brute-force than the hashes. A browser or C{git} sends the
    same credentials with every request and pays for one check.
  - A check whose every requester has gone away before it started is
    skipped, so clients that send a password and disconnect cost nothing.
  - A user the file does not have is checked all the same, against the
    file's slowest hash (by kind and cost, see
    L{twisted_cgiserve._http.htpasswd.workFactor}): an unknown user
    answers as late as a wrong password of the slowest user. When all the
    file's hashes have one kind and cost, timing cannot tell which users
    exist; when they differ, it can tell that a name whose wrong password
    is answered sooner is a user with a cheaper hash (re-create those with
    the same C{htpasswd} options to close that).

An attacker sending distinct wrong passwords still occupies the two
threads (and, past L{MAX_PENDING}, makes new logins wait with a 503), and
with SHA-crypt hashes slows the reactor by one thread's share of the GIL;
users whose credentials are cached are not affected.

Reading the file again (L{HtpasswdChecker.reload}) empties both caches.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from zope.interface import implementer

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from twisted_cgiserve._http.htpasswd import (
    HtpasswdError,
    PasswordHash,
    readHtpasswd,
    workFactor,
)
from twisted_cgiserve._http.shacrypt import SHACryptHash

__all__ = [
    "BAD_SECONDS",
    "CACHE_SIZE",
    "GOOD_SECONDS",
    "MAX_PASSWORD",
    "MAX_PENDING",
    "CheckerBusy",
    "HtpasswdChecker",
    "ThreadRunner",
]

_log = Logger(namespace="cgiserve.auth")

_T = TypeVar("_T")

# What cred calls an avatar ID: here always the user name.
_AvatarId = bytes | tuple[()]

# How long an outcome is trusted without checking again (seconds).
GOOD_SECONDS = 300.0
BAD_SECONDS = 60.0
# The most outcomes of each kind kept; the oldest go first.
CACHE_SIZE = 4096
# The most checks queued or running at once.
MAX_PENDING = 64
# The threads checks run in.
THREADS = 2
# The longest password checked, in bytes; longer ones are wrong. passlib's
# bound: SHA-crypt's time grows with the square of the length.
MAX_PASSWORD = 4096

Runner = Callable[[Callable[[], bool | None]], "Deferred[bool | None]"]


class CheckerBusy(Exception):
    """
    Too many password checks are in progress to take another; try later.
    """


class ThreadRunner:
    """
    Runs functions in a small thread pool of its own, started on first use
    and stopped when the reactor shuts down.
    """

    def __init__(self, reactor: Any, pool: ThreadPool | None = None) -> None:
        self._reactor = reactor
        self._pool = pool or ThreadPool(0, THREADS, "cgiserve-auth")
        self._started = False

    def __call__(self, function: Callable[[], _T]) -> Deferred[_T]:
        if not self._started:
            self._started = True
            self._pool.start()
            self._reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        return deferToThreadPool(self._reactor, self._pool, function)


class _Check:
    """
    One password check, and the requests waiting for it.

    @ivar waiting: Requesters that have not gone away.
    """

    def __init__(self) -> None:
        self.waiting: list[Deferred[_AvatarId]] = []

    def wait(self) -> Deferred[_AvatarId]:
        """
        A Deferred for this check's outcome; cancelling it leaves the
        check.
        """
        waiter: Deferred[_AvatarId] = Deferred(self.waiting.remove)
        self.waiting.append(waiter)
        return waiter

    def run(self, stored: PasswordHash, password: bytes) -> bool | None:
        """
        In a worker thread: the check itself, unless nobody waits for it any
        more (L{None}).
        """
        if not self.waiting:
            return None
        return stored.verify(password)

    def deliver(self, outcome: _AvatarId | Failure) -> None:
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)


@implementer(ICredentialsChecker)
class HtpasswdChecker:
    """
    Checks user names and passwords against an htpasswd file.

    @ivar path: The file.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        path: str,
        reactor: Any,
        runner: Runner | None = None,
        *,
        maxPending: int = MAX_PENDING,
        cacheSize: int = CACHE_SIZE,
    ) -> None:
        """
        @param runner: Runs a check away from the reactor thread (default: a
            L{ThreadRunner}).
        @raise HtpasswdError: The file cannot be used.
        """
        self.path = path
        self._users = readHtpasswd(path)
        self._slowest = _slowest(self._users)
        self._reactor = reactor
        self._runner = runner or ThreadRunner(reactor)
        self._maxPending = maxPending
        self._cacheSize = cacheSize
        self._key = os.urandom(32)
        self._good: OrderedDict[bytes, float] = OrderedDict()
        self._bad: OrderedDict[bytes, float] = OrderedDict()
        self._checks: dict[bytes, _Check] = {}
        # One SHA-crypt check at a time (see the module's docstring).
        self._shaCrypt = DeferredLock()

    @property
    def users(self) -> int:
        """
        How many users the file has.
        """
        return len(self._users)

    def reload(self) -> bool:
        """
        Read the file again. If it cannot be used, the users read before
        stay, and one line says why.

        @return: Whether the file was read.
        """
        try:
            users = readHtpasswd(self.path)
        except HtpasswdError as e:
            _log.error(
                "{error}; still using the {count} users read before.",
                error=str(e),
                count=len(self._users),
            )
            return False
        self._users = users
        self._slowest = _slowest(users)
        self._good.clear()
        self._bad.clear()
        _log.info(
            "Read {count} users from --auth-file {path}.",
            count=len(users),
            path=self.path,
        )
        return True

    def _cacheKey(self, user: bytes, password: bytes) -> bytes:
        message = b"%d:%s%s" % (len(user), user, password)
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _remember(
        self, cache: OrderedDict[bytes, float], key: bytes, ttl: float
    ) -> None:
        cache[key] = self._reactor.seconds() + ttl
        cache.move_to_end(key)
        while len(cache) > self._cacheSize:
            cache.popitem(last=False)

    def _cached(self, cache: OrderedDict[bytes, float], key: bytes) -> bool:
        expires = cache.get(key)
        if expires is None:
            return False
        if expires <= self._reactor.seconds():
            del cache[key]
            return False
        return True

    def knownBad(self, credentials: IUsernamePassword) -> bool:
        """
        Whether C{credentials} would be refused without a check: the
        password is too long, or the same credentials failed recently.
        Lets a request be refused before its body is read.
        """
        password = _bytes(credentials.password)
        if len(password) > MAX_PASSWORD:
            return True
        key = self._cacheKey(_bytes(credentials.username), password)
        return self._cached(self._bad, key)

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[_AvatarId]:
        """
        The user name, if the password is right.

        @return: A Deferred that fails with L{UnauthorizedLogin} for a wrong
            user or password, and with L{CheckerBusy} when too many checks
            are in progress; already fired when the outcome is cached.
        """
        user = _bytes(credentials.username)
        password = _bytes(credentials.password)
        if len(password) > MAX_PASSWORD:
            return fail(UnauthorizedLogin())
        key = self._cacheKey(user, password)
        if self._cached(self._good, key):
            return succeed(user)
        if self._cached(self._bad, key):
            return fail(UnauthorizedLogin())
        check = self._checks.get(key)
        if check is None:
            # An unknown user costs as much as the slowest known one.
            target = self._users.get(user) or self._slowest
            if target is None:
                return fail(UnauthorizedLogin())
            if len(self._checks) >= self._maxPending:
                return fail(CheckerBusy())
            check = self._checks[key] = _Check()
            waiter = check.wait()
            run = self._runner
            if isinstance(target, SHACryptHash):
                started = self._shaCrypt.run(run, lambda: check.run(target, password))
            else:
                started = run(lambda: check.run(target, password))
            started.addBoth(self._checked, key, check, user, self._users)
            return waiter
        return check.wait()

    def _checked(
        self,
        result: bool | Failure | None,
        key: bytes,
        check: _Check,
        user: bytes,
        users: dict[bytes, PasswordHash],
    ) -> None:
        del self._checks[key]
        if isinstance(result, Failure):
            _log.failure("Checking the password of {user!r} failed", result, user=user)
            check.deliver(Failure(UnauthorizedLogin()))
            return
        if result is None or self._users is not users:
            # Skipped, so there is no outcome to remember; or the file was
            # read again meanwhile, and the outcome is for users that may
            # be gone (the client asks again).
            check.deliver(Failure(UnauthorizedLogin()))
            return
        if result and user in users:
            self._remember(self._good, key, GOOD_SECONDS)
            check.deliver(user)
            return
        self._remember(self._bad, key, BAD_SECONDS)
        check.deliver(Failure(UnauthorizedLogin()))


def _slowest(users: dict[bytes, PasswordHash]) -> PasswordHash | None:
    """
    The hash of C{users} slowest to check, to check unknown users against.
    """
    return max(users.values(), key=workFactor, default=None)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
