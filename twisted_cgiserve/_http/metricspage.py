# -*- test-case-name: tests.http.test_metricspage -*-
"""
The page C{--metrics PATH} serves: the server's metrics in Prometheus's
text format, to the clients allowed to see them, and to no one else.

Who may see it: by default this machine's loopback addresses C{127.0.0.1}
and C{::1} only (not the rest of C{127.0.0.0/8}, which a local service may
be bound to for others to reach); C{--metrics-allow CIDR}, as often as
needed, replaces that default with the networks given. An IPv4 client on a
dual-stack socket (C{::ffff:127.0.0.1}) is its IPv4 address. The address
is the one the request reports (C{getClientAddress}), so the client behind
a trusted proxy, never the proxy; a client on a UNIX socket has no address
and is never allowed.

Anyone else gets the server's ordinary C{404 File not found}, byte for
byte what a path that does not exist gets: the page neither exists nor
hints that it does. The router (L{twisted_cgiserve._root}) sends every
spelling of the path here (C{//metrics}, C{%2Fmetrics} or C{/./metrics}
resolve to it, a query string is ignored), before any file of that name and
for HTTP/1.x and HTTP/2 alike, and answers methods other than GET and HEAD
as it would for a file (C{501}), so no request reaches the figures around
the check.

The figures are written by the library's own WSGI application (what its
Twisted resource, C{prometheus_client.twisted.MetricsResource}, serves),
in a thread of the reactor's pool, as that resource does: a scrape with
C{--workers} reads every worker's files. It is wrapped in Twisted's
L{WSGIResource} here rather than through that resource, for two reasons:
the library's application refuses HEAD (405), which this server answers
for every page; and its resource takes the global reactor when it is
imported, where this one takes the server's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.wsgi import WSGIResource

from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.forwarded import optionNetwork
from twisted_cgiserve._http.paths import BadRequestPath, ResolvedPath, resolvePath

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "LOOPBACK",
    "MetricsPage",
    "Network",
    "clientAllowed",
    "metricsApplication",
    "parseMetricsPath",
    "parseNetwork",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Who may see the page when --metrics-allow is not given.
LOOPBACK: tuple[Network, ...] = (
    ipaddress.IPv4Network("127.0.0.1/32"),
    ipaddress.IPv6Network("::1/128"),
)


def parseMetricsPath(value: str) -> tuple[str, ...]:
    """
    C{--metrics PATH}: an absolute URL path in its plain, normalised form
    (C{/metrics}, C{/status/metrics}), without a query, escapes, empty or
    dot segments, or a trailing slash.

    @return: Its segments.
    @raise ValueError: With a message fit for the command line.
    """
    problem = f"--metrics {value!r} must be a URL path such as /metrics"
    if not value.startswith("/") or not value.isascii() or not value.isprintable():
        raise ValueError(problem)
    if any(c in value for c in "?#% \\"):
        raise ValueError(f"{problem} (no query, escapes or spaces)")
    try:
        resolved = resolvePath(value.encode("ascii"))
    except BadRequestPath:
        raise ValueError(problem) from None
    if not resolved.segments:
        raise ValueError(f"{problem}, not the root of the tree")
    if "/" + "/".join(resolved.segments) != value:
        raise ValueError(
            f"{problem}: no empty or dot segments and no trailing slash "
            f"(say /{'/'.join(resolved.segments)})"
        )
    return resolved.segments


def parseNetwork(value: str) -> Network:
    """
    C{--metrics-allow CIDR}: an IPv4 or IPv6 network (C{10.0.0.0/8},
    C{2001:db8::/32}), or one address (C{192.0.2.7}).

    @raise ValueError: With a message fit for the command line; a network
        with host bits set (C{10.1.2.3/8}) is refused rather than guessed.
    """
    return optionNetwork("--metrics-allow", value)


def clientAllowed(address: object, networks: Iterable[Network]) -> bool:
    """
    Whether the client at C{address} (what a request's C{getClientAddress}
    returns) lies in one of C{networks}. An IPv4-mapped IPv6 address is
    taken as its IPv4 address; an address that is not IP (a UNIX socket)
    is in none.
    """
    if not isinstance(address, IPv4Address | IPv6Address):
        return False
    try:
        ip = ipaddress.ip_address(address.host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def metricsApplication(registry: CollectorRegistry) -> WSGIApplication:
    """
    The library's WSGI application over C{registry}, answering HEAD as GET
    (Twisted then sends the head alone).
    """
    # Imported here: the command line checks --metrics with this module,
    # and a worker of --workers must not import the library before its
    # environment says where its figures go.
    from prometheus_client.exposition import make_wsgi_app  # noqa: PLC0415

    application: WSGIApplication = make_wsgi_app(registry)

    def metrics(
        environ: dict[str, Any], startResponse: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "HEAD":
            environ = {**environ, "REQUEST_METHOD": "GET"}
        return application(environ, startResponse)

    return metrics


class MetricsPage(Resource):
    """
    The metrics at one path, for the allowed clients.
    """

    isLeaf = True

    def __init__(
        self,
        segments: Sequence[str],
        registry: CollectorRegistry,
        reactor: Any,
        allowed: Sequence[Network] = LOOPBACK,
        *,
        figures: IResource | None = None,
    ) -> None:
        """
        @param segments: The page's path (see L{parseMetricsPath}).
        @param registry: What a scrape reads.
        @param reactor: The reactor whose thread pool writes the figures.
        @param allowed: Who may see the page.
        @param figures: What renders the figures for an allowed client
            (default: the library's application over C{registry}).
        """
        super().__init__()
        self.segments = tuple(segments)
        self.allowed = tuple(allowed)
        self._registry = registry
        self._reactor = reactor
        self._figures = figures

    def _figuresResource(self) -> IResource:
        """
        What renders the figures, made at the first scrape: asking the
        reactor for its thread pool starts the pool, which a server never
        scraped does not need.
        """
        if self._figures is None:
            reactor = self._reactor
            self._figures = WSGIResource(
                reactor, reactor.getThreadPool(), metricsApplication(self._registry)
            )
        return self._figures

    def matches(self, resolved: ResolvedPath) -> bool:
        """
        Whether C{resolved} (a request path, as the router resolved it)
        names this page.
        """
        return resolved.segments == self.segments

    def render(self, request: IRequest) -> int:
        """
        The figures for an allowed client (a GET or HEAD: the router answers
        other methods); anyone else gets the 404 of a path that does not
        exist.
        """
        if not clientAllowed(request.getClientAddress(), self.allowed):
            return sendError(request, 404, "File not found")
        # Twisted's WSGI resource answers from its thread: NOT_DONE_YET.
        return cast(int, self._figuresResource().render(request))
