"""Upstream down and back: calls fail fast with UNAVAILABLE while Encord is gone, and work again after.

The emulator is stopped under load and restarted on the same address with the same SQLite state; the
gateway is never restarted. Keys created before the outage are still listed after it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.reliability import (
    UNKNOWN_OUTCOME,
    Ledger,
    Outcome,
    forbidden,
    invoke,
    new_hashes,
    report,
    start_emulator,
    start_gateway,
    stored_keys,
    tally,
)

DEADLINE_S = 10.0
# While Encord is down a list is tried --upstream-retries (4) times with at most 0.1 + 0.2 + 0.4 s of
# backoff; a create once. Either way the answer is due long before the deadline: if it takes half the
# deadline, something waited on a dead upstream.
FAIL_FAST_S = DEADLINE_S / 2


class Background:
    """Threads making creates and lists until stopped; each outcome is kept with its times."""

    def __init__(self, stub: pb_grpc.ApiKeyServiceStub, project: str, dataset: str, threads: int) -> None:
        self.stub, self.project, self.dataset = stub, project, dataset
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._ok = 0
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            outcome = one_call(self.stub, self.project, self.dataset, f"bg {worker}.{n}", n)
            with self._progress:
                self.outcomes.append(outcome)
                self._ok += outcome.ok
                self._progress.notify_all()

    def wait_for_ok(self, more: int, timeout: float = 60.0) -> bool:
        with self._progress:
            target = self._ok + more
            return self._progress.wait_for(lambda: self._ok >= target, timeout)

    @contextmanager
    def running(self) -> Iterator[Background]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(DEADLINE_S * 2)


def one_call(stub: pb_grpc.ApiKeyServiceStub, project: str, dataset: str, title: str, n: int) -> Outcome:
    kind = ("create_project", "list_project", "create_dataset", "list_dataset")[n % 4]
    request: Any
    if kind == "create_project":
        request = pb.CreateProjectApiKeyRequest(
            project_hash=project, title=title, scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        return invoke(kind, stub.CreateProjectApiKey, request, timeout=DEADLINE_S)
    if kind == "create_dataset":
        request = pb.CreateDatasetApiKeyRequest(
            dataset_hash=dataset, title=title, scopes=[pb.DATASET_SCOPE_READ]
        )
        return invoke(kind, stub.CreateDatasetApiKey, request, timeout=DEADLINE_S)
    if kind == "list_project":
        return invoke(
            kind,
            stub.ListProjectApiKeys,
            pb.ListProjectApiKeysRequest(project_hash=project),
            timeout=DEADLINE_S,
        )
    return invoke(
        kind, stub.ListDatasetApiKeys, pb.ListDatasetApiKeysRequest(dataset_hash=dataset), timeout=DEADLINE_S
    )


def probe(
    stub: pb_grpc.ApiKeyServiceStub, project: str, dataset: str, label: str, count: int
) -> list[Outcome]:
    """`count` calls of every kind, 8 at a time."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda n: one_call(stub, project, dataset, f"{label} {n}", n), range(count)))


def run_restarts(ledger: Ledger, name: str, *, cycles: int, threads: int, probes: int) -> None:
    workdir = ledger.folder(name)
    key_file, fixture, state = (
        workdir / "gateway_ed25519",
        workdir / "fixture.toml",
        workdir / "emulator.sqlite",
    )
    ledger.ssh_key_files.append(key_file)
    (project,), (dataset,) = new_hashes(1), new_hashes(1)
    write_fixture(fixture, write_ssh_key(key_file), projects=[project], datasets=[dataset])
    emulator = start_emulator(workdir, fixture, state=state)
    address = emulator.address
    gateway = start_gateway(workdir, key_file, f"http://{address}")
    down: list[Outcome] = []
    back: list[Outcome] = []
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            grpc.channel_ready_future(channel).result(timeout=15)
            stub = pb_grpc.ApiKeyServiceStub(channel)
            with Background(stub, project, dataset, threads).running() as background:
                for cycle in range(cycles):
                    assert background.wait_for_ok(20), f"cycle {cycle}: no progress before the outage"
                    assert emulator.stop() == 0
                    down += probe(stub, project, dataset, f"down {cycle}", probes)
                    # Same address, same state file: Encord is back, with every key it had.
                    emulator = start_emulator(workdir, fixture, listen=address, state=state)
                    back += probe(stub, project, dataset, f"back {cycle}", probes)
                    assert background.wait_for_ok(20), f"cycle {cycle}: no progress after the outage"
            final_project = stub.ListProjectApiKeys(
                pb.ListProjectApiKeysRequest(project_hash=project), timeout=30
            )
            final_dataset = stub.ListDatasetApiKeys(
                pb.ListDatasetApiKeysRequest(dataset_hash=dataset), timeout=30
            )
    finally:
        gateway.stop()
        emulator.stop()
    everything = [*background.outcomes, *down, *back]
    ledger.saw(everything)
    ledger.stored(state)
    listed = {k.api_key for k in final_project.api_keys} | {k.api_key for k in final_dataset.api_keys}
    stored = stored_keys(state)
    ok_keys = {o.response.api_key for o in everything if o.ok and o.kind.startswith("create")}
    answered = {o.request.title: o for o in everything if o.kind.startswith("create")}
    report(
        name,
        cycles=cycles,
        background=tally(background.outcomes),
        down=tally(down),
        back=tally(back),
        slowest_down_s=round(max(o.seconds for o in down), 2),
        stored=len(stored),
        listed=len(listed),
    )
    assert not forbidden(everything), tally(forbidden(everything))
    # Down: every call failed fast, with UNAVAILABLE, and no create reached Encord.
    assert {o.code for o in down} == {"UNAVAILABLE"}, tally(down)
    assert max(o.seconds for o in down) < FAIL_FAST_S, max(o.seconds for o in down)
    assert not {o.request.title for o in down if o.kind.startswith("create")} & {
        t for _, t in stored.values()
    }
    # Back: everything works again, without restarting the gateway.
    assert {o.code for o in back} == {"OK"}, tally(back)
    # Nothing lost across restarts: every key answered OK is stored and listed.
    assert ok_keys <= listed, f"{len(ok_keys - listed)} keys answered OK are not listed after the restarts"
    for key, (_, title) in stored.items():
        outcome = answered[title]
        if not outcome.ok:
            assert (outcome.code, outcome.reason) in UNKNOWN_OUTCOME, (title, outcome.code, outcome.reason)
        else:
            assert outcome.response.api_key == key
    assert gateway.process.returncode == 0


def test_upstream_down_and_back_short(ledger: Ledger) -> None:
    run_restarts(ledger, "restart-short", cycles=1, threads=4, probes=8)


@pytest.mark.slow
def test_upstream_down_and_back_repeatedly(ledger: Ledger) -> None:
    run_restarts(ledger, "restart-long", cycles=5, threads=16, probes=40)
