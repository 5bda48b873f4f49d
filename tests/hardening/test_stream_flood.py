"""Header-only HTTP/2 streams from a stranger cost the gateway no worker thread and lock nobody out.

A raw HTTP/2 client (the `h2` package, no gRPC library) opens streams for ApiKeyService calls and for
server reflection, with no credentials and no grpc-timeout, and never sends a request message. While
those streams are held, a real caller's calls and health checks keep succeeding at a latency close to
the baseline measured in the same test (a ratio, never an absolute time), and the gateway process's
thread count and resident memory stay bounded.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from encord_gateway.dev.devstack import DEMO_PROJECT, running_stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.secured import secured_stack, sha256

TOKEN = secrets.token_urlsafe(24)
CALLER: dict[str, Any] = {
    "name": "real",
    "tokens": [{"sha256": sha256(TOKEN)}],
    "methods": ["*"],
    "projects": ["*"],
    "datasets": ["*"],
}
LIST_PATH = "/encord_gateway.v1.ApiKeyService/ListProjectApiKeys"
REFLECTION_PATH = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
WORKERS = 64
SAMPLES = 15
# Under the flood a call may take this many times its baseline median; a worker pool held by the flood
# shows up as DEADLINE_EXCEEDED instead, so the ratio is generous and only catches gross slowdowns.
LATENCY_RATIO = 8.0
# Threads the gateway may have while the flood is held: refusing a stream takes a worker for a moment,
# so the pool may grow to --workers, and never past it (a thread per held stream would).
THREAD_SLACK = WORKERS + 8
# Resident memory a held stream may cost the gateway, on average.
BYTES_PER_STREAM = 64 * 1024


@dataclass
class Target:
    """A running gateway, how to reach it as a real caller, and how a raw client connects."""

    address: str
    pid: int
    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]
    tls: ssl.SSLContext | None = None


def proc_status(pid: int) -> dict[str, int]:
    """Threads and VmRSS (bytes) of a process, from /proc/PID/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "Threads":
            found["threads"] = int(value)
        elif name == "VmRSS":
            found["rss"] = int(value.split()[0]) * 1024
    return found


@dataclass
class HeldConnection:
    """One raw HTTP/2 connection that opens `streams` call streams and never sends a message on them."""

    target: Target
    path: str
    streams: int
    headers: tuple[tuple[str, str], ...] = ()
    sock: socket.socket | ssl.SSLSocket = field(init=False)
    conn: h2.connection.H2Connection = field(init=False)
    ended: set[int] = field(default_factory=set)  # streams the server answered or reset
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
                    elif isinstance(event, h2.events.StreamReset | h2.events.StreamEnded):
                        self.ended.add(event.stream_id)
                with contextlib.suppress(OSError):
                    self.sock.sendall(self.conn.data_to_send())

    @property
    def reset(self) -> int:
        return len(self.ended)

    def wait_read(self, timeout: float) -> bool:
        return self._pinged.wait(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._reader is not None:
            self._reader.join(5)


@contextlib.contextmanager
def flood(target: Target, connections: int, streams: int, path: str) -> Iterator[list[HeldConnection]]:
    held = [HeldConnection(target, path, streams) for _ in range(connections)]
    try:
        for connection in held:
            connection.open()
        for connection in held:
            assert connection.wait_read(30), "the gateway never acknowledged the flood's PING"
        yield held
    finally:
        for connection in held:
            connection.close()


def timed(call: Callable[[], Any], samples: int = SAMPLES) -> float:
    """The median seconds of `samples` calls; every call must succeed."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def real_calls(target: Target) -> tuple[Callable[[], Any], Callable[[], Any]]:
    stub = pb_grpc.ApiKeyServiceStub(target.channel)
    health = health_pb2_grpc.HealthStub(target.channel)

    def listing() -> None:
        stub.ListProjectApiKeys(
            pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=5, metadata=target.metadata
        )

    def check() -> None:
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    return listing, check


@pytest.fixture(scope="module", params=["plaintext", "tls"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp(f"flood-{request.param}")
    args = ["--workers", str(WORKERS)]
    if request.param == "plaintext":
        with (
            running_stack(workdir, gateway_args=args, caller_token=TOKEN) as stack,
            grpc.insecure_channel(stack.gateway.address) as channel,
        ):
            yield Target(
                stack.gateway.address,
                stack.gateway.process.pid,
                channel,
                (("authorization", f"Bearer {TOKEN}"),),
            )
        return
    with secured_stack(workdir, [CALLER], mutual=False, gateway_args=args) as secured:
        tls = ssl.create_default_context(cadata=secured.ca.cert_pem.decode())
        tls.set_alpn_protocols(["h2"])
        yield Target(
            secured.address,
            secured.stack.gateway.process.pid,
            secured.channel(),
            (("authorization", f"Bearer {TOKEN}"),),
            tls,
        )


@pytest.mark.parametrize("path", [LIST_PATH, REFLECTION_PATH], ids=["api", "reflection"])
@pytest.mark.parametrize("streams", [64, 1000])
@pytest.mark.parametrize("connections", [1, 4, 16])
def test_header_only_streams_hold_no_worker_and_lock_nobody_out(
    target: Target, connections: int, streams: int, path: str
) -> None:
    listing, check = real_calls(target)
    listing(), check()  # warm: the channel is connected and a worker exists
    base_list, base_check = timed(listing), timed(check)
    before = proc_status(target.pid)
    with flood(target, connections, streams, path) as held:
        during = proc_status(target.pid)
        flood_list, flood_check = timed(listing), timed(check)
        after_calls = proc_status(target.pid)
        assert not any(c.closed for c in held), "the gateway dropped a flood connection it could refuse"
    held_streams = connections * streams
    grown = during["rss"] - before["rss"]
    report = (
        f"{connections}x{streams} {path.rsplit('/', 1)[-1]}: threads {before['threads']} -> "
        f"{during['threads']} -> {after_calls['threads']}, rss +{grown // 1024} KiB "
        f"({max(0, grown) // held_streams} B/stream), list x{flood_list / base_list:.2f}, "
        f"health x{flood_check / base_check:.2f}"
    )
    print(report)
    assert after_calls["threads"] <= before["threads"] + THREAD_SLACK, report
    assert during["rss"] - before["rss"] <= BYTES_PER_STREAM * held_streams, report
    assert flood_list <= LATENCY_RATIO * base_list, report
    assert flood_check <= LATENCY_RATIO * base_check, report


def test_reflection_streams_beyond_the_cap_are_refused(target: Target) -> None:
    """Reflection is a streaming RPC: only a few may be open at once; the rest are told so at once."""
    with flood(target, 1, 64, REFLECTION_PATH) as held:
        deadline = time.monotonic() + 10
        while held[0].reset < 64 - 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held[0].reset >= 64 - 8, f"only {held[0].reset} of 64 reflection streams were refused"


GREEDY_TOKEN = secrets.token_urlsafe(24)
GREEDY_CEILING = 4


def test_a_caller_holding_streams_open_takes_only_its_max_in_flight(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """An authenticated caller's header-only streams hold at most its slots; other callers still run."""
    greedy = {**CALLER, "name": "greedy", "tokens": [{"sha256": sha256(GREEDY_TOKEN)}]}
    greedy["max_in_flight"] = GREEDY_CEILING
    workdir = tmp_path_factory.mktemp("greedy")
    args = ["--workers", "16"]
    with secured_stack(workdir, [CALLER, greedy], mutual=False, gateway_args=args) as secured:
        tls = ssl.create_default_context(cadata=secured.ca.cert_pem.decode())
        tls.set_alpn_protocols(["h2"])
        with secured.channel() as channel:
            target = Target(
                secured.address,
                secured.stack.gateway.process.pid,
                channel,
                (("authorization", f"Bearer {TOKEN}"),),
                tls,
            )
            listing, _ = real_calls(target)
            listing()
            base = timed(listing)
            held = HeldConnection(target, LIST_PATH, 64, (("authorization", f"Bearer {GREEDY_TOKEN}"),))
            try:
                held.open()
                assert held.wait_read(30)
                deadline = time.monotonic() + 10
                while held.reset < 64 - GREEDY_CEILING and time.monotonic() < deadline:
                    time.sleep(0.05)
                # 64 streams on 16 workers: all but the caller's 4 slots are refused at once.
                assert held.reset == 64 - GREEDY_CEILING, held.reset
                assert timed(listing) <= LATENCY_RATIO * base
            finally:
                held.close()
