"""Concurrency and keep-alive: many signed calls at once, many connections at once, no stalls."""

from __future__ import annotations

import socket
import time
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
    connections = emulator.stats()["requests"]["connections"]
    with requests.Session() as session:
        session.post(f"{emulator.url}/public/user", data=body, headers=headers, timeout=10)  # warm up
        start = time.monotonic()
        for _ in range(100):
            response = session.post(f"{emulator.url}/public/user", data=body, headers=headers, timeout=10)
            assert response.json()["status"] == 200
        elapsed = time.monotonic() - start
    # One connection for 101 calls; a delayed-ACK stall costs 40 ms a call, so 100 calls would take 4 s.
    assert emulator.stats()["requests"]["connections"] - connections == 2  # the session's, and stats'
    assert elapsed < 2.0, f"100 keep-alive calls took {elapsed:.2f} s"


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
