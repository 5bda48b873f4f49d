"""Canned loopback peers for the Http1Client tests: the bytes a test chooses, and the fixtures' types."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from encord_gateway.upstream.http1 import Http1Client
from support.loopback import Handler, Server, Wire

PATH = "/public/user"  # Server.url()'s default path too
BODY = b'{"query_type": "user"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok"
# Deadlines for the tests that wait for one to pass: short, with a generous margin on the far side.
SHORT_S = 0.3
MARGIN_S = 1.0


def soon(seconds: float = 3.0) -> float:
    """A deadline no healthy loopback exchange comes near."""
    return time.monotonic() + seconds


class FakeClock:
    """A clock that moves only when told: idle ages and deadlines without sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now  # far from time.monotonic(): a deadline on the wrong clock shows at once

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


PLAIN = b'{"status": 200, "response": ["a", "b"]}' * 20


def replying(*replies: bytes, close: bool = False) -> Handler:
    """Answer each request with the next reply (the last one repeats); hang up after each if `close`."""
    count = 0
    lock = threading.Lock()

    def handle(wire: Wire) -> None:
        nonlocal count
        while wire.read_request() is not None:
            with lock:
                reply = replies[min(count, len(replies) - 1)]
                count += 1
            wire.send(reply)
            if close:
                return

    return handle


def never_answering(wire: Wire) -> None:
    wire.read_request()
    wire.server.stop.wait()


def hard_close(sock: socket.socket) -> None:
    """Close with a RST rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


Serve = Callable[..., Server]
MakeClient = Callable[..., Http1Client]


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    ca_pem: str
    ca_file: Path

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)
