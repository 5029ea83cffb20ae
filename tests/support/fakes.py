"""
Small fakes the unit tests of several layers share: a socket-like transport
and a producer that records what it is asked.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.internet.testing import StringTransport

__all__ = ["CLIENT", "RecordingProducer", "SocketTransport"]

# A client address from TEST-NET-1 (RFC 5737).
CLIENT = IPv4Address("TCP", "192.0.2.8", 44444)


class SocketTransport(StringTransport):
    """
    A socket as its protocol sees it: unregistering a producer twice is
    harmless, as with Twisted's own transports.
    """

    def __init__(self, peer: IAddress = CLIENT) -> None:
        super().__init__(peerAddress=peer)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


@implementer(IPushProducer)
class RecordingProducer:
    """
    A push producer that records what its consumer asks of it, in order.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")
