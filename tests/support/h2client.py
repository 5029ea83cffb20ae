"""
A minimal HTTP/2 client over TLS for the tests that must send what no
ordinary client sends on purpose (streams reset in the same packet that
ends them, floods of CONTINUATION frames), built on the same h2 library
Twisted's server uses.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


class H2Client:
    """
    One TLS connection speaking HTTP/2, driven step by step.
    """

    def __init__(self, host: str, port: int, window: int | None = None) -> None:
        """
        Connect and send the preface; with C{window}, advertise that
        flow-control window for the connection and every stream (up to
        2**31-1: a client that lets the server send as much as it likes).
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(client_side=True)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
            if window > 65535:
                self.conn.increment_flow_control_window(window - 65535)
        self.flush()
        self.nextStream = 1

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def headers(self, path: str) -> list[tuple[str, str]]:
        return [
            (":method", "GET"),
            (":path", path),
            (":scheme", "https"),
            (":authority", "localhost"),
        ]

    def get(self, path: str, reset: bool = False) -> int:
        """
        Queue a GET (not sent until L{flush}); with C{reset}, cancel it in
        the same packet.
        """
        stream = self.nextStream
        self.nextStream += 2
        self.conn.send_headers(stream, self.headers(path), end_stream=True)
        if reset:
            self.conn.reset_stream(stream)
        return stream

    def acknowledge(self, event: h2.events.DataReceived) -> None:
        """
        Give the server back the window a DATA frame used (only the
        connection's, for a stream this client has reset).
        """
        size = event.flow_controlled_length
        try:
            self.conn.acknowledge_received_data(size, event.stream_id)
        except h2.exceptions.StreamClosedError:
            if size:
                self.conn.increment_flow_control_window(size)

    def ping(self) -> None:
        """
        Send a PING (and whatever else is pending), as a client keeping an
        idle connection alive does.
        """
        self.conn.ping(b"12345678")
        self.flush()

    def reset(self, stream: int) -> None:
        self.conn.reset_stream(stream)
        self.flush()

    def frame(self, kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        """
        A raw frame, for what the h2 library itself refuses to send.
        """
        return (
            struct.pack(">I", len(payload))[1:]
            + bytes([kind, flags])
            + struct.pack(">I", stream)
            + payload
        )

    def events(
        self, until: type, timeout: float = 10, *, ack: bool = True
    ) -> list[object]:
        """
        Read until an event of type C{until} arrives or the server closes
        (then the list ends with C{"EOF"}); without C{ack}, the data read
        does not reopen the flow-control windows (a client that does not
        consume what it receives).
        """
        deadline = time.monotonic() + timeout
        seen: list[object] = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                data = b""
            if not data:
                seen.append("EOF")
                break
            for event in self.conn.receive_data(data):
                seen.append(event)
                if ack and isinstance(event, h2.events.DataReceived):
                    self.acknowledge(event)
            try:
                self.flush()
            except OSError:
                # The server closed its side (ssl.SSLError is an OSError).
                seen.append("EOF")
                break
            if any(isinstance(e, until) for e in seen):
                break
        return seen

    def close(self) -> None:
        self.sock.close()
