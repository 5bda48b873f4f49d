"""Concurrency and keep-alive: many signed calls at once, many connections at once, no stalls."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from encord.orm.dataset import DatasetScope
from encord.utilities.client_utilities import APIKeyScopes
from support.emulator_users import DATASET, PROJECT, Emulator, sdk_body

THREADS = 20
CALLS = 200


def test_200_concurrent_signed_calls_lose_nothing(emulator: Emulator) -> None:
    before = emulator.stats()["keys"]

    def create(n: int) -> str:
        client = emulator.user()
        if n % 2:
            return client.create_dataset_api_key(DATASET, f"load {n}", [DatasetScope.READ]).api_key
        return client.create_project_api_key(PROJECT, f"load {n}", [APIKeyScopes.LABEL_READ])

    with ThreadPoolExecutor(THREADS) as pool:
        keys = list(pool.map(create, range(CALLS)))
    assert len(keys) == CALLS
    assert len(set(keys)) == CALLS  # no duplicate key
    after = emulator.stats()["keys"]
    assert after[PROJECT] - before[PROJECT] == CALLS // 2
    assert after[DATASET] - before[DATASET] == CALLS // 2
    listed = {k.api_key for k in emulator.user().get_project_api_keys(PROJECT)}
    listed |= {k.api_key for k in emulator.user().get_dataset_api_keys(DATASET)}
    assert set(keys) <= listed


def test_keep_alive_connection_never_stalls(emulator: Emulator) -> None:
    body = sdk_body("projectapikey", "GET", PROJECT, None)
    headers = emulator.signed_headers(body)
    url = f"{emulator.url}/public/user"
    connections = emulator.stats()["requests"]["connections"]

    def per_call(post: Callable[[], requests.Response]) -> float:
        """The median seconds of 40 calls: the middle is what a stall on every call would move."""
        took = []
        for _ in range(40):
            start = time.monotonic()
            assert post().json()["status"] == 200
            took.append(time.monotonic() - start)
        return statistics.median(took)

    with requests.Session() as session:
        session.post(url, data=body, headers=headers, timeout=10)  # warm up
        kept = per_call(lambda: session.post(url, data=body, headers=headers, timeout=10))
    # One connection for the session's 41 calls (and one for stats'): keep-alive was used.
    assert emulator.stats()["requests"]["connections"] - connections == 2
    # The same calls, each on a connection of its own, in the same run: no second exchange on a
    # connection, so no delayed-ACK wait. A stall on a kept connection costs 40 ms a call, ten times a
    # loopback call; a ratio to the same machine's fresh calls holds on a slow or busy machine too.
    fresh = per_call(lambda: requests.post(url, data=body, headers=headers, timeout=10))
    assert kept <= 3 * fresh, f"a kept-alive call took {kept * 1e3:.1f} ms, a fresh one {fresh * 1e3:.1f} ms"


def _http_request(address: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST /public/user HTTP/1.1\r\nHost: {address}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
    ).encode() + body


def test_many_open_connections_at_once(emulator: Emulator) -> None:
    host, port = emulator.address.rsplit(":", 1)
    body = sdk_body("projectapikey", "GET", PROJECT, None)
    request = _http_request(emulator.address, body.encode(), emulator.signed_headers(body))
    sockets = [socket.create_connection((host, int(port)), timeout=10) for _ in range(150)]
    try:
        for sock in sockets:  # every connection is open before any is answered
            sock.sendall(request)
        for sock in sockets:
            answer = b""
            while b'"status": 200' not in answer:
                chunk = sock.recv(65536)
                assert chunk, "connection closed before the answer"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in sockets:
            sock.close()
