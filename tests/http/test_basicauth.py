"""
Tests for L{twisted_cgiserve._http.basicauth}: which paths are protected,
the Authorization header, and the wrapper's answers.
"""

from __future__ import annotations

import base64
from typing import Any

from zope.interface import implementer

import pytest
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tests.support.requests import body, header
from twisted_cgiserve._http.basicauth import (
    MAX_AUTHORIZATION,
    Authentication,
    BasicAuthResource,
    IAuthentication,
    ProtectedPaths,
    _Realm,
    authenticationOf,
    parseBasicCredentials,
)
from twisted_cgiserve._http.credentials import CheckerBusy
from twisted_cgiserve._http.paths import resolvePath


@pytest.mark.parametrize(
    ("prefixes", "path", "protected"),
    [
        ((), b"/", True),
        ((), b"/anything/at/all", True),
        (("/private",), b"/private", True),
        (("/private",), b"/private/", True),
        (("/private",), b"/private/deep/file", True),
        (("/private",), b"/privateer", False),
        (("/private",), b"/", False),
        (("/private",), b"/public/private", False),
        (("/private",), b"/%70rivate/x", True),
        (("/private",), b"//private/x", True),
        (("/private",), b"/./private/x", True),
        (("/private",), b"/public/../private/x", True),
        (("/private",), b"/../../private/x", True),
        (("/private",), b"/PRIVATE/x", True),
        (("/private",), b"/Priv%41te", True),
        (("/a/b",), b"/a%2fb/c", True),
        (("/a/b",), b"/a/bc", False),
        (("/a/b",), b"/a", False),
        (("/caf%C3%A9",), "/café/x".encode(), True),
        (("/café",), b"/cafe%CC%81/x", True),
        (("/private", "/cgi-bin/"), b"/cgi-bin/x.sh", True),
        (("/",), b"/x", True),
    ],
)
def test_protectedPaths(
    prefixes: tuple[str, ...], path: bytes, protected: bool
) -> None:
    """
    Prefixes match whole segments of the resolved path, whatever the
    spelling, case and Unicode normalisation.
    """
    assert ProtectedPaths(prefixes).protects(resolvePath(path)) is protected


def test_unresolvableProtected() -> None:
    """
    A path that cannot be resolved needs a user, wherever the prefixes are.
    """
    assert ProtectedPaths(("/private",)).protects(None)


def basic(text: bytes) -> bytes:
    return b"Basic " + base64.b64encode(text)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, None),
        ([], None),
        ([basic(b"alice:pw")], (b"alice", b"pw")),
        ([b"basic " + base64.b64encode(b"a:b")], (b"a", b"b")),
        ([b"BASIC  " + base64.b64encode(b"a:b") + b" "], (b"a", b"b")),
        ([basic(b"alice:pw:with:colons")], (b"alice", b"pw:with:colons")),
        ([basic(b":")], (b"", b"")),
        ([basic("jörg:pässword".encode())], ("jörg".encode(), "pässword".encode())),
        ([basic(b"a:b"), basic(b"c:d")], None),
        ([basic(b"no colon")], None),
        ([b"Basic"], None),
        ([b"Basic !!!!"], None),
        ([b"Basic YWxpY2U6cHc"], None),
        ([b"Bearer " + base64.b64encode(b"a:b")], None),
        ([b"Digest username=alice"], None),
        ([b"\xff\x00"], None),
        # Longer than any credentials anybody has: not read.
        ([basic(b"alice:" + b"p" * 7000)], None),
    ],
)
def test_parseBasicCredentials(
    values: list[bytes] | None, expected: tuple[bytes, bytes] | None
) -> None:
    """
    Only one well-formed Basic header gives credentials.
    """
    credentials = parseBasicCredentials(values)
    if expected is None:
        assert credentials is None
    else:
        assert credentials is not None
        assert (credentials.username, credentials.password) == expected


@implementer(ICredentialsChecker)
class Checker:
    """
    A checker whose answers the test decides: alice/right at once, or held
    until the test fires them.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.pending: list[Deferred[bytes]] = []
        self.asked: list[tuple[bytes, bytes]] = []

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes]:
        self.asked.append((credentials.username, credentials.password))
        if self.hold:
            d: Deferred[bytes] = Deferred()
            self.pending.append(d)
            return d
        if (credentials.username, credentials.password) == (b"alice", b"right"):
            return succeed(b"alice")
        return fail(UnauthorizedLogin())


class Leaf(Resource):
    """
    The wrapped tree: records what it saw, answers with bytes or
    NOT_DONE_YET.
    """

    isLeaf = True

    def __init__(self, answer: bytes | None = b"served", error: bool = False) -> None:
        super().__init__()
        self.answer = answer
        self.error = error
        self.seen: list[Authentication | None] = []

    def render(self, request: Any) -> bytes | int:
        self.seen.append(authenticationOf(request))
        if self.error:
            raise RuntimeError("broken")
        if self.answer is None:
            request.write(b"later")
            request.finish()
            return NOT_DONE_YET
        return self.answer


class Request(DummyRequest, Componentized):
    """
    A dummy request that takes components, as L{twisted.web.server.Request}
    does.
    """

    def __init__(self, uri: bytes, authorization: bytes | None = None) -> None:
        DummyRequest.__init__(self, [])
        Componentized.__init__(self)
        self.uri = uri
        self.failures: list[Failure] = []
        if authorization is not None:
            self.requestHeaders.addRawHeader(b"authorization", authorization)

    def processingFailed(self, reason: Failure) -> None:
        self.failures.append(reason)
        super().processingFailed(reason)


def serve(resource: BasicAuthResource, request: DummyRequest) -> DummyRequest:
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request


def wrapper(
    leaf: Resource | None = None,
    checker: Checker | None = None,
    paths: tuple[str, ...] = (),
) -> BasicAuthResource:
    return BasicAuthResource(leaf or Leaf(), checker or Checker(), "Team Ö", paths)


def test_unprotectedServed() -> None:
    """
    A path outside the prefixes is served without credentials, recorded as
    not authenticated; credentials sent are not checked.
    """
    leaf = Leaf()
    checker = Checker()
    request = serve(
        wrapper(leaf, checker, ("/private",)), Request(b"/public", basic(b"a:b"))
    )
    assert body(request) == b"served"
    assert leaf.seen == [Authentication(None)]
    assert checker.asked == []


@pytest.mark.parametrize(
    "authorization",
    [None, basic(b"alice:wrong"), basic(b"mallory:right"), b"Basic ###", b"Bearer x"],
)
def test_unauthorized(authorization: bytes | None) -> None:
    """
    No credentials, wrong ones, or a header that is not Basic: 401 with the
    challenge and the server's error page; nothing is served.
    """
    leaf = Leaf()
    request = serve(wrapper(leaf), Request(b"/x?q", authorization))
    assert request.responseCode == 401
    assert header(request, b"www-authenticate") == (
        'Basic realm="Team Ö", charset="UTF-8"'.encode()
    )
    assert b"Error code: 401" in body(request)
    assert leaf.seen == []
    assert request.finished == 1


def test_authorized() -> None:
    """
    The right credentials serve the wrapped resource, which finds the user.
    """
    leaf = Leaf()
    request = Request(b"/private/x", basic(b"alice:right"))
    serve(wrapper(leaf, paths=("/private",)), request)
    assert body(request) == b"served"
    assert leaf.seen == [Authentication(b"alice")]
    assert authenticationOf(request) == Authentication(b"alice")


def test_authorizedLater() -> None:
    """
    Credentials checked later serve the resource then: bytes it returns are
    written and the request finished.
    """
    checker = Checker(hold=True)
    leaf = Leaf()
    request = Request(b"/", basic(b"alice:right"))
    assert wrapper(leaf, checker).render(request) is NOT_DONE_YET
    assert not request.finished
    checker.pending.pop().callback(b"alice")
    assert body(request) == b"served"
    assert request.finished == 1


def test_authorizedLaterNotDoneYet() -> None:
    checker = Checker(hold=True)
    request = Request(b"/", basic(b"alice:right"))
    wrapper(Leaf(None), checker).render(request)
    checker.pending.pop().callback(b"alice")
    assert body(request) == b"later"
    assert request.finished == 1


def test_refusedLater() -> None:
    checker = Checker(hold=True)
    request = Request(b"/", basic(b"alice:wrong"))
    wrapper(Leaf(), checker).render(request)
    checker.pending.pop().errback(UnauthorizedLogin())
    assert request.responseCode == 401


def test_busy() -> None:
    """
    Too many checks in progress: 503 with C{Retry-After}.
    """
    checker = Checker(hold=True)
    request = Request(b"/", basic(b"alice:right"))
    wrapper(Leaf(), checker).render(request)
    checker.pending.pop().errback(CheckerBusy())
    assert request.responseCode == 503
    assert header(request, b"retry-after") == b"5"
    assert b"Too many password checks" in body(request)


def test_clientGone() -> None:
    """
    A client that goes away while its credentials are checked cancels its
    wait; nothing is written.
    """
    checker = Checker(hold=True)
    request = Request(b"/", basic(b"alice:right"))
    wrapper(Leaf(), checker).render(request)
    pending = checker.pending.pop()
    request.processingFailed(Failure(ConnectionDone()))
    assert pending.called
    assert request.written == []
    assert request.responseCode is None


def test_wrappedRaises() -> None:
    """
    The wrapped resource raising after a later check is the request's
    processing failure, as it would have been without the wrapper.
    """
    checker = Checker(hold=True)
    request = Request(b"/", basic(b"alice:right"))
    wrapper(Leaf(error=True), checker).render(request)
    checker.pending.pop().callback(b"alice")
    [failure] = request.failures
    assert failure.check(RuntimeError)


def test_checkerFails() -> None:
    """
    A checker failing otherwise is logged and the request's processing
    failure.
    """
    checker = Checker(hold=True)
    request = Request(b"/", basic(b"alice:right"))
    wrapper(Leaf(), checker).render(request)
    checker.pending.pop().errback(RuntimeError("checker broke"))
    [failure] = request.failures
    assert failure.check(RuntimeError)


def test_badPathProtected() -> None:
    """
    A path that does not resolve (a NUL) needs a user even with prefixes.
    """
    request = serve(wrapper(paths=("/private",)), Request(b"/%00"))
    assert request.responseCode == 401


def test_mountedDeeper() -> None:
    """
    Mounted below a site's root, the prefixes are below the mount point.
    """
    request = Request(b"/mount/private/x")
    request.prepath = [b"mount"]
    serve(wrapper(paths=("/private",)), request)
    assert request.responseCode == 401
    request = Request(b"/private/x")
    request.prepath = [b"private"]
    assert body(serve(wrapper(paths=("/private",)), request)) == b"served"


def test_plainRequest() -> None:
    """
    A request that takes no components is served, with nothing recorded.
    """
    request = DummyRequest([])
    request.uri = b"/"
    request.requestHeaders.addRawHeader(b"authorization", basic(b"alice:right"))
    leaf = Leaf()
    serve(wrapper(leaf), request)
    assert leaf.seen == [None]
    assert authenticationOf(request) is None


def test_realmAvatars() -> None:
    """
    The realm gives L{Authentication} avatars for user names only.
    """
    interface, avatar, logout = _Realm().requestAvatar(b"alice", None, IAuthentication)
    assert (interface, avatar) == (IAuthentication, Authentication(b"alice"))
    logout()
    with pytest.raises(NotImplementedError):
        _Realm().requestAvatar(b"alice", None, IUsernamePassword)
    with pytest.raises(NotImplementedError):
        _Realm().requestAvatar((), None, IAuthentication)


def test_authorizationLengthBound() -> None:
    """
    A header of L{MAX_AUTHORIZATION} bytes is read, one byte more is not:
    its password would be too long to check anyway.
    """
    # 6138 bytes are 8184 in base64; spaces around the token are allowed.
    header = basic(b"a:" + b"p" * 6136) + b"  "
    assert len(header) == MAX_AUTHORIZATION
    assert parseBasicCredentials([header]) is not None
    assert parseBasicCredentials([header + b" "]) is None


class BadKnowingChecker(Checker):
    """
    A checker that knows alice/wrong is wrong without checking.
    """

    def knownBad(self, credentials: Any) -> bool:
        return bool(credentials.password == b"wrong")


def headers(authorization: bytes | None = None) -> Headers:
    found = Headers()
    if authorization is not None:
        found.addRawHeader(b"authorization", authorization)
    return found


@pytest.mark.parametrize(
    ("target", "authorization", "refused"),
    [
        # Protected, and nothing that could succeed: refused at once.
        (b"/private/x", None, True),
        (b"/private/x", b"Bearer abc", True),
        (b"/private/x", basic(b"no colon"), True),
        (b"/private/x", basic(b"alice:wrong"), True),
        (b"/%70rivate/x?q", None, True),
        (b"http://host//private/x", None, True),
        (b"/bad%00path", None, True),
        # Credentials to check: the body is read and they are checked later.
        (b"/private/x", basic(b"alice:right"), False),
        (b"/private/x", basic(b"alice:unknown"), False),
        # Not protected.
        (b"/public/x", None, False),
        (b"/privateer", None, False),
    ],
)
def test_earlyChallenge(
    target: bytes, authorization: bytes | None, refused: bool
) -> None:
    """
    L{BasicAuthResource.earlyChallenge} gives the challenge for a request
    to a protected path (resolved as for serving) without well-formed Basic
    credentials or with credentials its checker knows to be wrong, and
    L{None} for every other request.
    """
    resource = wrapper(checker=BadKnowingChecker(), paths=("/private",))
    challenge = resource.earlyChallenge(target, headers(authorization))
    if refused:
        assert challenge == 'Basic realm="Team Ö", charset="UTF-8"'.encode()
    else:
        assert challenge is None


def test_earlyChallengePlainChecker() -> None:
    """
    With a checker that cannot tell wrong credentials without checking
    them, well-formed ones are always left for later.
    """
    resource = wrapper()
    assert resource.earlyChallenge(b"/x", headers(basic(b"alice:wrong"))) is None
    assert resource.earlyChallenge(b"/x", headers()) is not None


class StreamingLeaf(Leaf):
    """
    A wrapped tree that streams the bodies of requests below C{/cgi-bin}.
    """

    def streamsBody(self, request: IRequest) -> bool:
        return bytes(request.uri).startswith(b"/cgi-bin/")


def test_streamsBodyAsWrappedTreeDoes() -> None:
    """
    The gate streams a body exactly when the tree behind it would, so that
    protecting a site does not turn every upload back into a spooled one; a
    tree that cannot stream bodies never does.
    """
    gate = wrapper(StreamingLeaf())
    assert gate.streamsBody(Request(b"/cgi-bin/upload.sh")) is True
    assert gate.streamsBody(Request(b"/static.txt")) is False
    assert wrapper(Leaf()).streamsBody(Request(b"/cgi-bin/upload.sh")) is False
