"""The /metrics port holds a bounded number of connections and drops idle ones; a scrape still gets in."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from encord_gateway.api.metrics import GatewayMetrics
from encord_gateway.dev.devstack import Service, start_gateway

UNREACHABLE = "http://127.0.0.1:9"
IDLE = 300
# Guards against a hang, never the measure: each is many times the idle timeout under test.
GUARD_S = 30.0


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@contextlib.contextmanager
def idle_sockets(address: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that never send a byte, each connected before the next one is opened.

    Opened one at a time, so that the server sees them in this order and all of them are in its accept
    queue before anything opened later (a non-blocking burst overflows the queue and its SYNs trickle in
    over seconds of retransmissions, after the connection that was meant to come last).
    """
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection(host_port(address), timeout=GUARD_S))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def closed_by_server(sock: socket.socket, timeout: float = GUARD_S) -> bool:
    """True once the server hung up (EOF or reset); False if the socket is still open after `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_open(sock: socket.socket) -> bool:
    """Nothing to read on it right now: neither data nor the server's FIN."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def scrape(address: str) -> requests.Response:
    answer = requests.get(f"http://{address}/metrics", timeout=GUARD_S)
    answer.raise_for_status()
    return answer


@pytest.fixture
def gateway(ssh_key_file: Path) -> Iterator[Service]:
    service = start_gateway(UNREACHABLE, ssh_key_file, "--metrics-listen", "127.0.0.1:0")
    try:
        yield service
    finally:
        assert service.stop() == 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads thread counts from /proc")
def test_idle_connections_do_not_each_hold_a_thread(gateway: Service) -> None:
    line = next(x for x in gateway.output if x.startswith("metrics on "))
    address = line.split()[-1]
    pid = gateway.process.pid
    assert "encord_gateway_calls" in scrape(address).text
    baseline = threads_of(pid)
    with idle_sockets(address, IDLE):
        # The scrape's connection is queued behind all 300: once it is answered, every one of them has
        # been accepted (and, with a thread per connection, has its thread by now).
        assert "encord_gateway_build_info" in scrape(address).text
        during = threads_of(pid)
        assert during <= baseline + 2, f"{during} threads with {IDLE} idle connections (baseline {baseline})"
        assert "encord_gateway_build_info" in scrape(address).text
    assert gateway.process.poll() is None


@pytest.fixture
def served() -> Iterator[tuple[GatewayMetrics, str]]:
    metrics = GatewayMetrics(process=False)
    address = metrics.serve("127.0.0.1:0", max_connections=4, idle_timeout_s=0.3)
    try:
        yield metrics, address
    finally:
        metrics.close()


def test_a_silent_connection_is_closed_after_the_idle_timeout(served: tuple[GatewayMetrics, str]) -> None:
    _, address = served
    with socket.create_connection(host_port(address), timeout=GUARD_S) as sock:
        assert closed_by_server(sock)
    assert scrape(address).status_code == 200


def test_a_request_trickled_in_is_cut_off_however_often_bytes_arrive(
    served: tuple[GatewayMetrics, str],
) -> None:
    # A slow client sends a header line three times per idle timeout: the timeout runs from the
    # connection's start to a complete request, so each byte does not buy more time.
    _, address = served
    lines_sent = 0
    with socket.create_connection(host_port(address), timeout=GUARD_S) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n")
        while lines_sent < 40:
            if closed_by_server(sock, timeout=0.1):
                break
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"X-Slow: yes\r\n")
            lines_sent += 1
        else:
            pytest.fail("the server kept a trickling request open for 40 lines (over 13 idle timeouts)")
    assert lines_sent < 12, f"cut off only after {lines_sent} lines, about {lines_sent / 3:.1f} idle timeouts"


def test_a_kept_alive_connection_is_closed_when_idle_after_its_answer(
    served: tuple[GatewayMetrics, str],
) -> None:
    _, address = served
    with socket.create_connection(host_port(address), timeout=GUARD_S) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close" not in head
        length = int(next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length:")).split()[1])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, body
            body += chunk
        assert b"encord_gateway_build_info" in body
        assert closed_by_server(sock)


def test_connections_past_the_cap_evict_idle_ones_and_a_scrape_gets_in() -> None:
    metrics = GatewayMetrics(process=False)
    address = metrics.serve("127.0.0.1:0", max_connections=4, idle_timeout_s=GUARD_S * 10)
    before = threading.active_count()
    try:
        with idle_sockets(address, 20) as idle:
            assert "encord_gateway_build_info" in scrape(address).text
            assert threading.active_count() <= before
            # Each connection past the fourth evicted the longest-idle one, the scrape included:
            # the oldest 17 are closed, the newest three are still held.
            assert all(closed_by_server(sock) for sock in idle[:17])
            assert all(still_open(sock) for sock in idle[17:])
    finally:
        metrics.close()
    assert threading.active_count() < before


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 1\r\n\r\nx", b"405"),
        (b"GET /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\n\r\nhello", b"400"),
        (b"GET /elsewhere HTTP/1.1\r\nHost: m\r\n\r\n", b"404"),
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n", b"431"),
    ],
    ids=["post", "body", "path", "garbage", "huge-head"],
)
def test_bad_requests_are_answered_and_closed(
    served: tuple[GatewayMetrics, str], request_bytes: bytes, status: bytes
) -> None:
    _, address = served
    with socket.create_connection(host_port(address), timeout=GUARD_S) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert b"Connection: close" in answer
