"""A raw HTTP/2 client (the `h2` package, no gRPC library): call streams opened, their message never sent."""

from __future__ import annotations

import collections
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions

HTTP2_RESET = "http2 reset"  # how a stream ends that HTTP/2 reset before any grpc-status
# The gateway answers every stream of a flood it need not hold within this; a held worker never would.
ANSWER_TIMEOUT_S = 60.0


@dataclass
class Target:
    """A running gateway, how to reach it as a real caller, and how a raw client connects."""

    address: str
    pid: int
    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]
    tls: ssl.SSLContext | None = None


def proc_status(pid: int) -> dict[str, int]:
    """Threads, VmRSS and VmHWM (peak RSS; bytes) of a process, from /proc/PID/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "Threads":
            found["threads"] = int(value)
        elif name == "VmRSS":
            found["rss"] = int(value.split()[0]) * 1024
        elif name == "VmHWM":
            found["peak"] = int(value.split()[0]) * 1024
    return found


def reset_peak(pid: int) -> None:
    """Starts VmHWM again from the current RSS (proc(5), clear_refs), so a burst's peak can be read."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class HeldConnection:
    """One raw HTTP/2 connection that opens `streams` call streams and never sends a message on them."""

    target: Target
    path: str
    streams: int
    headers: tuple[tuple[str, str], ...] = ()
    sock: socket.socket | ssl.SSLSocket = field(init=False)
    conn: h2.connection.H2Connection = field(init=False)
    outcomes: dict[int, str] = field(default_factory=dict)  # how each stream ended (the first word wins)
    closed: bool = False
    _pinged: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self) -> None:
        host, _, port = self.target.address.rpartition(":")
        raw = socket.create_connection((host, int(port)), timeout=10)
        self.sock = raw
        if self.target.tls is not None:
            self.sock = self.target.tls.wrap_socket(raw, server_hostname="localhost")
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        # Every HEADERS frame goes out before the server's SETTINGS are read, so the client library does
        # not hold back streams past the server's concurrent-stream limit: this client is hostile.
        scheme = "https" if self.target.tls is not None else "http"
        for n in range(self.streams):
            self.conn.send_headers(
                2 * n + 1,
                [
                    (":method", "POST"),
                    (":scheme", scheme),
                    (":path", self.path),
                    (":authority", self.target.address),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    *self.headers,
                ],
            )
        # The server handles frames in order: its PING ACK means every HEADERS frame above was read.
        self.conn.ping(b"floodack")
        self.sock.sendall(self.conn.data_to_send())
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed = True
                self._pinged.set()
                return
            with self._lock:
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self.closed = True
                    self._pinged.set()
                    return
                for event in events:
                    if isinstance(event, h2.events.PingAckReceived):
                        self._pinged.set()
                    elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                        # header_encoding="utf-8": names and values arrive as str
                        status = dict(cast(list[tuple[str, str]], event.headers)).get("grpc-status")
                        if status is not None:
                            self.outcomes.setdefault(event.stream_id, f"grpc-status {status}")
                    elif isinstance(event, h2.events.StreamReset):
                        # grpc resets a stream after its trailers too; only a reset before them refuses it.
                        self.outcomes.setdefault(event.stream_id, HTTP2_RESET)
                with contextlib.suppress(OSError):
                    self.sock.sendall(self.conn.data_to_send())

    def tally(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self.outcomes.values())

    def wait_read(self, timeout: float) -> bool:
        return self._pinged.wait(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._reader is not None:
            self._reader.join(5)


@contextlib.contextmanager
def flood(
    target: Target, connections: int, streams: int, path: str, headers: tuple[tuple[str, str], ...] = ()
) -> Iterator[list[HeldConnection]]:
    """`connections` raw connections, each with `streams` header-only streams to `path`, held open."""
    held = [HeldConnection(target, path, streams, headers) for _ in range(connections)]
    try:
        for connection in held:
            connection.open()
        for connection in held:
            assert connection.wait_read(30), "the gateway never acknowledged the flood's PING"
        yield held
    finally:
        for connection in held:
            connection.close()


def wait_answered(held: list[HeldConnection], at_least: int) -> None:
    """Returns once the gateway has ended `at_least` of the flood's streams, however it ended them."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while sum(c.tally().total() for c in held) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
