# -*- test-case-name: tests.http.test_basicauth -*-
"""
HTTP Basic authentication (RFC 7617) in front of a served tree.

L{BasicAuthResource} wraps the root. The root is a leaf that resolves each
request's path once, so the wrapper is a leaf too: it resolves the path
with the same normaliser (L{resolvePath}) and decides from the resolved
segments whether the request needs a user, which no spelling of the path
(C{%2F}, C{//}, C{/./}, C{..}, C{%70rivate}) can get around. Prefixes match
whole segments (C{/private} protects C{/private} and C{/private/x}, not
C{/privateer}), compared after Unicode normalisation and case folding, so
that a case-insensitive file system cannot serve C{/PRIVATE} unprotected:
protecting a little more than asked is the safe side.

L{twisted.web.guard}'s wrapper was not used: it works by traversal
(C{getChildWithDefault}), which a leaf root does not do, protects all or
nothing, and answers with its own page. The credentials are still checked
through L{twisted.cred}: a L{Portal} whose checker is an
L{HtpasswdChecker<twisted_cgiserve._http.credentials.HtpasswdChecker>},
and whose avatar is the L{Authentication} recorded on the request, where
the CGI environment (C{AUTH_TYPE}, C{REMOTE_USER}) and the access log find
it.

A resource renders only once the request's body has arrived: an
unauthenticated client could upload up to the site's body limit (and be
told C{100 Continue} first) before it is refused. So the wrapper is also
the site's L{EarlyGate}: the connection asks it at the end of a request's
head, and refuses with 401 there, before the body, a request to a
protected path without well-formed Basic credentials or with credentials
known to be wrong.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from zope.interface import Attribute, Interface, implementer

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from twisted_cgiserve._http.bodystream import StreamsBodies
from twisted_cgiserve._http.credentials import CheckerBusy
from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.paths import (
    BadRequestPath,
    ResolvedPath,
    collapseLeadingSlashes,
    resolvePath,
    splitTarget,
)

__all__ = [
    "MAX_AUTHORIZATION",
    "Authentication",
    "BasicAuthResource",
    "EarlyGate",
    "IAuthentication",
    "ProtectedPaths",
    "authenticationOf",
    "parseBasicCredentials",
]

_log = Logger(namespace="cgiserve.auth")

# Seconds a client is asked to wait when too many checks are in progress.
_RETRY_AFTER = b"5"

# The longest Authorization header read, in bytes: room for "Basic ", a
# long user name and a password of MAX_PASSWORD bytes, base64-encoded.
# A longer one is not credentials anybody has.
MAX_AUTHORIZATION = 8192


class EarlyGate(Protocol):
    """
    What a site asks at the end of a request's head, before its body.
    """

    def earlyChallenge(self, target: bytes, headers: Headers) -> bytes | None:
        """
        The C{WWW-Authenticate} challenge to refuse the request with at
        once (401), or L{None} to read its body and decide later.

        @param target: The request target as sent.
        @param headers: The request's headers.
        """


class IAuthentication(Interface):
    """
    How a request that passed a L{BasicAuthResource} was authenticated.
    """

    user = Attribute(
        "The user name the client authenticated as (bytes), or None when the "
        "path needs no authentication."
    )


@implementer(IAuthentication)
@dataclass(frozen=True)
class Authentication:
    """
    @ivar user: The authenticated user, or L{None}: the path is not
        protected and the client's credentials, if any, were not checked.
    """

    user: bytes | None


def authenticationOf(request: object) -> Authentication | None:
    """
    How C{request} was authenticated: L{None} when it did not pass through
    a L{BasicAuthResource} (the server does no authentication).
    """
    if not isinstance(request, Componentized):
        return None
    found: Authentication | None = request.getComponent(IAuthentication)
    return found


@implementer(IRealm)
class _Realm:
    """
    The realm of a L{Portal} whose avatars are L{Authentication}s.
    """

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, Authentication, Callable[[], None]]:
        if IAuthentication not in interfaces or not isinstance(avatarId, bytes):
            raise NotImplementedError("only IAuthentication avatars of a user")
        return IAuthentication, Authentication(avatarId), lambda: None


def _segmentKey(segment: str) -> str:
    return unicodedata.normalize("NFC", segment).casefold()


class ProtectedPaths:
    """
    The URL path prefixes that need a user.
    """

    def __init__(self, prefixes: Sequence[str] = ()) -> None:
        """
        @param prefixes: URL paths starting with C{/}, percent-encoded or
            not; none protects everything.
        """
        keys = []
        for prefix in prefixes:
            resolved = resolvePath(prefix.encode("utf-8", "surrogateescape"))
            keys.append(tuple(_segmentKey(s) for s in resolved.segments))
        self._prefixes = tuple(keys) if keys else ((),)

    def protects(self, path: ResolvedPath | None) -> bool:
        """
        Whether C{path} is below a prefix; L{None}, a path that cannot be
        resolved, always is.
        """
        if path is None:
            return True
        segments = tuple(_segmentKey(s) for s in path.segments)
        return any(segments[: len(prefix)] == prefix for prefix in self._prefixes)


def parseBasicCredentials(
    headerValues: Sequence[bytes] | None,
) -> UsernamePassword | None:
    """
    The user name and password of an C{Authorization: Basic} header.

    @return: L{None} when there is none, or more than one, or it is longer
        than L{MAX_AUTHORIZATION}, or it is not Basic, or its credentials are
        not base64 of C{user:password}.
    """
    if (
        not headerValues
        or len(headerValues) != 1
        or len(headerValues[0]) > MAX_AUTHORIZATION
    ):
        return None
    scheme, _, token = headerValues[0].strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return UsernamePassword(user, password)


def _pathBelow(request: IRequest) -> bytes:
    """
    The raw path below this resource: the request's path less the segments
    traversal consumed to reach it (none at a site's root).
    """
    path, _query = splitTarget(request.uri)
    path = collapseLeadingSlashes(path)
    depth = len(getattr(request, "prepath", None) or ())
    if not depth:
        return path
    return b"/" + b"/".join(path[1:].split(b"/")[depth:])


def _resolveTarget(path: bytes) -> ResolvedPath | None:
    """
    A raw request path, resolved as for serving; L{None} when it cannot be.
    """
    try:
        return resolvePath(path)
    except BadRequestPath:
        return None


class BasicAuthResource(Resource):
    """
    Serve C{wrapped} to authenticated users only, below the protected paths.

    Also the L{EarlyGate} of a site whose root it is.
    """

    isLeaf = True

    def __init__(
        self,
        wrapped: IResource,
        checker: ICredentialsChecker,
        realm: str,
        paths: Sequence[str] = (),
    ) -> None:
        """
        @param realm: Shown by browsers when they ask for a password; no
            quotes or backslashes.
        @param paths: See L{ProtectedPaths}.
        """
        super().__init__()
        self._wrapped = wrapped
        self._checker = checker
        self._portal = Portal(_Realm(), [checker])
        self._challenge = b'Basic realm="%s", charset="UTF-8"' % (
            realm.encode("utf-8"),
        )
        self._paths = ProtectedPaths(paths)

    def earlyChallenge(self, target: bytes, headers: Headers) -> bytes | None:
        """
        Refuse at once a request to a protected path whose credentials
        could not succeed: none, not well-formed Basic, or known to be
        wrong (by a checker that can tell, such as
        L{HtpasswdChecker<twisted_cgiserve._http.credentials.HtpasswdChecker>}).
        Others are checked when the request is rendered.
        """
        path = collapseLeadingSlashes(splitTarget(target)[0])
        if not self._paths.protects(_resolveTarget(path)):
            return None
        credentials = parseBasicCredentials(headers.getRawHeaders(b"authorization"))
        if credentials is None:
            return self._challenge
        knownBad = getattr(self._checker, "knownBad", None)
        if knownBad is not None and knownBad(credentials):
            return self._challenge
        return None

    def streamsBody(self, request: IRequest) -> bool:
        """
        Whether the wrapped tree streams C{request}'s body to a script as it
        arrives (see L{StreamsBodies}): a gate in front of it must not turn
        every upload back into a spooled one. The credentials are still
        checked before the script starts.
        """
        return isinstance(self._wrapped, StreamsBodies) and self._wrapped.streamsBody(
            request
        )

    def render(self, request: IRequest) -> int | bytes:
        resolved = _resolveTarget(_pathBelow(request))
        if not self._paths.protects(resolved):
            return self._serve(request, Authentication(None))
        credentials = parseBasicCredentials(
            request.requestHeaders.getRawHeaders(b"authorization")
        )
        if credentials is None:
            return self._unauthorized(request)
        login = self._portal.login(credentials, None, IAuthentication)

        def gone(reason: Failure) -> None:
            login.cancel()

        cast(Any, request).notifyFinish().addErrback(gone)
        login.addCallbacks(
            lambda avatar: self._serveChecked(request, avatar[1]),
            lambda reason: self._refused(request, reason),
        )
        return NOT_DONE_YET

    def _serve(self, request: IRequest, authentication: Authentication) -> int | bytes:
        """
        Render the wrapped resource, recording how the request was
        authenticated.
        """
        if isinstance(request, Componentized):
            request.setComponent(IAuthentication, authentication)
        result: int | bytes = self._wrapped.render(request)
        return result

    def _serveChecked(self, request: IRequest, authentication: Authentication) -> None:
        """
        L{_serve}, once the credentials have been checked: finish what the
        wrapped resource returned, and turn its exceptions into a 500 as
        L{twisted.web.server.Request.render} would have.
        """
        try:
            result = self._serve(request, authentication)
        except BaseException:
            request.processingFailed(Failure())  # type: ignore[attr-defined]
            return
        if result is not NOT_DONE_YET:
            assert isinstance(result, bytes)
            request.write(result)
            request.finish()

    def _refused(self, request: IRequest, reason: Failure) -> None:
        if reason.check(CancelledError):
            return
        if reason.check(CheckerBusy):
            request.responseHeaders.setRawHeaders(b"retry-after", [_RETRY_AFTER])
            sendError(request, 503, "Too many password checks in progress")
            return
        if reason.check(UnauthorizedLogin):
            self._unauthorized(request)
            return
        _log.failure("Checking credentials for {uri!r} failed", reason, uri=request.uri)
        request.processingFailed(reason)  # type: ignore[attr-defined]

    def _unauthorized(self, request: IRequest) -> int:
        request.responseHeaders.setRawHeaders(b"www-authenticate", [self._challenge])
        return sendError(
            request,
            401,
            explain="The server could not verify that you are authorized to "
            "access this URL: a user name and password are needed",
        )
