"""A signed-in caller whose calls hang upstream holds only its max_in_flight workers; others keep working.

Encord stalls every list of one project (the proxy holds them); the caller asking for it fires three
times its max_in_flight. Its own slots fill and the rest of its calls are refused at once, while another
caller's calls, on the same 8 workers, are answered as usual.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

import grpc
import tomli_w
from encord_gateway.dev.devstack import start_gateway, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.reliability import FaultProxy, new_hashes, start_emulator
from support.secured import sha256

WORKERS = 8
GREEDY_SLOTS = 4


def _caller(name: str, token: str, **rule: object) -> dict[str, object]:
    grants = {key: ["*"] for key in ("methods", "projects", "datasets")}
    return {"name": name, "tokens": [{"sha256": sha256(token)}], **grants, **rule}


def test_a_caller_stuck_upstream_cannot_take_the_workers_of_the_others(tmp_path: Path) -> None:
    stalled, healthy = new_hashes(2)
    key_file = tmp_path / "gateway_ed25519"
    fixture = tmp_path / "fixture.toml"
    write_fixture(fixture, write_ssh_key(key_file), projects=[stalled, healthy], datasets=[])
    greedy_token, other_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    config = tmp_path / "gateway.toml"
    callers = [_caller("greedy", greedy_token, max_in_flight=GREEDY_SLOTS), _caller("other", other_token)]
    config.write_text(tomli_w.dumps({"callers": callers}))
    emulator = start_emulator(tmp_path, fixture)
    proxy = FaultProxy(emulator.address)
    args = ["--config", str(config), "--workers", str(WORKERS)]
    gateway = start_gateway(proxy.url, key_file, *args, log_path=tmp_path / "gateway.log")
    pool = futures.ThreadPoolExecutor(3 * GREEDY_SLOTS)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.ApiKeyServiceStub(channel)

            def listing(token: str, project: str) -> grpc.StatusCode:
                try:
                    stub.ListProjectApiKeys(
                        pb.ListProjectApiKeysRequest(project_hash=project),
                        timeout=30,
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
                except grpc.RpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            assert listing(other_token, healthy) == grpc.StatusCode.OK
            proxy.hold(only_bodies_with=stalled.encode())
            greedy = [pool.submit(listing, greedy_token, stalled) for _ in range(3 * GREEDY_SLOTS)]
            assert proxy.wait_held(GREEDY_SLOTS, 15), "the stalled caller's calls never reached Encord"
            # Everything beyond its slots is refused at once, without waiting for the stalled ones.
            give_up = time.monotonic() + 15
            while sum(f.done() for f in greedy) < 2 * GREEDY_SLOTS and time.monotonic() < give_up:
                time.sleep(0.05)
            refused = [f for f in greedy if f.done()]
            assert Counter(f.result() for f in refused) == {
                grpc.StatusCode.RESOURCE_EXHAUSTED: 2 * GREEDY_SLOTS
            }
            # Its slots are its own: even a call that Encord would answer is refused ...
            assert listing(greedy_token, healthy) == grpc.StatusCode.RESOURCE_EXHAUSTED
            # ... while the other caller, on the workers left, is answered every time (a worker pool
            # held by the stalled caller would show as DEADLINE_EXCEEDED here).
            assert [listing(other_token, healthy) for _ in range(10)] == [grpc.StatusCode.OK] * 10
            assert proxy.held == GREEDY_SLOTS  # no more of its calls reached Encord than its slots
            proxy.release()
            assert [f.result(timeout=30) for f in greedy if f not in refused] == [
                grpc.StatusCode.OK
            ] * GREEDY_SLOTS
    finally:
        proxy.release()
        pool.shutdown(wait=True)
        gateway.stop()
        proxy.close()
        emulator.stop()
