"""The request_id metrics of a real gateway: replays, conflicts, reconciliations by outcome, store errors."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from api.test_exactly_once import READ, create
from encord_gateway.api.exactly_once import EVENTS
from encord_gateway.api.metrics import GatewayMetrics
from encord_gateway.dev.devstack import Service, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families
from support.lossy import PROJECT, LossyStack, lossy_stack
from support.reliability import metrics_address, reason_of, retry_delay, start_emulator, start_gateway

# Long enough that a retry sent at once falls inside it, short enough to wait out a few times.
RECONCILE_AFTER_S = 1.0


def samples(gateway: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every request_id sample on the gateway's /metrics page, by name and labels."""
    address = metrics_address(gateway)
    assert address is not None, "the gateway printed no `metrics on` line"
    page = requests.get(f"http://{address}/metrics", timeout=10)
    page.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
        if sample.name.startswith("encord_gateway_request_id_") and sample.name.endswith("_total")
    }


def stored(stack: LossyStack, title: str) -> int:
    return stack.titles()[title]


def replays(n: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {("encord_gateway_request_id_replays_total", ()): n}


def labelled(name: str, **counts: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(f"encord_gateway_request_id_{name}_total", (("outcome", k),)): v for k, v in counts.items()}


def store_errors(n: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {("encord_gateway_request_id_store_errors_total", ()): n}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LossyStack]:
    state_url = f"sqlite:///{tmp_path / 'gateway-state.db'}"
    with lossy_stack(
        tmp_path, "--state-url", state_url, "--reconcile-after", str(RECONCILE_AFTER_S)
    ) as running:
        yield running


def _lose_answer(stack: LossyStack, stub: pb_grpc.ApiKeyServiceStub, title: str, request_id: str) -> None:
    with pytest.raises(grpc.RpcError) as lost:
        create(stub, title, request_id)
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE


def _retry_after_settling(stub: pb_grpc.ApiKeyServiceStub, title: str, request_id: str) -> pb.ProjectApiKey:
    """At once (refused: the lost attempt is settling), then after the RetryInfo delay."""
    with pytest.raises(grpc.RpcError) as settling:
        create(stub, title, request_id)
    refused = (settling.value.code(), reason_of(settling.value))
    assert refused == (grpc.StatusCode.ABORTED, "REQUEST_IN_PROGRESS")
    time.sleep(retry_delay(settling.value))
    return create(stub, title, request_id)[0]


def test_replays_conflicts_and_reconciliations_are_counted(stack: LossyStack) -> None:
    start = samples(stack.gateway)
    # Every series is there from the start, at zero.
    assert start == {
        **replays(0),
        **labelled("reconciliations", adopted=0, resent=0, ambiguous=0),
        **labelled("conflicts", reused=0, in_progress=0),
        **store_errors(0),
    }
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)

        # A replay, and the same id for another request.
        first = str(uuid.uuid4())
        made, _ = create(stub, "replayed", first)
        again, trailers = create(stub, "replayed", first)
        assert again.fingerprint == made.fingerprint
        assert trailers.get("encord-gateway-replayed") == "true"
        with pytest.raises(grpc.RpcError) as reused:
            create(stub, "another title", first)
        assert reason_of(reused.value) == "REQUEST_ID_REUSED"

        # Encord stores the key, the proxy loses the answer: the retry adopts the one new key.
        stack.proxy.faults.only_bodies_with = b'"query_method": "POST"'
        stack.proxy.faults.drop_after = 1.0
        adopted_id = str(uuid.uuid4())
        _lose_answer(stack, stub, "adopted", adopted_id)
        stack.proxy.faults.drop_after = 0.0
        adopted = _retry_after_settling(stub, "adopted", adopted_id)
        assert stored(stack, "adopted") == 1

        # The emulator drops the create before storing it: the retry finds nothing and sends it again.
        stack.emulator_faults(drop_rate=1.0, match_query_method="POST")
        resent_id = str(uuid.uuid4())
        _lose_answer(stack, stub, "resent", resent_id)
        stack.emulator_faults()
        assert stored(stack, "resent") == 0
        resent = _retry_after_settling(stub, "resent", resent_id)
        assert stored(stack, "resent") == 1

        # A lost answer, then someone else makes an identical key: two candidates, none returned.
        stack.proxy.faults.drop_after = 1.0
        ambiguous_id = str(uuid.uuid4())
        _lose_answer(stack, stub, "twice", ambiguous_id)
        stack.proxy.faults.drop_after = 0.0
        stub.CreateProjectApiKey(
            pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="twice", scopes=READ)
        )
        with pytest.raises(grpc.RpcError) as ambiguous:
            _retry_after_settling(stub, "twice", ambiguous_id)
        assert reason_of(ambiguous.value) == "RECONCILE_AMBIGUOUS"

        # A replay of an adopted key counts as a replay; the adoption itself did not.
        assert create(stub, "adopted", adopted_id)[0].fingerprint == adopted.fingerprint
        assert resent.fingerprint
    assert samples(stack.gateway) == {
        **replays(2),
        **labelled("reconciliations", adopted=1, resent=1, ambiguous=1),
        **labelled("conflicts", reused=1, in_progress=3),
        **store_errors(0),
    }


def test_a_state_store_that_cannot_be_reached_is_counted(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    key_file = tmp_path / "gateway_ed25519"
    fixture = tmp_path / "fixture.toml"
    write_fixture(fixture, write_ssh_key(key_file), projects=[PROJECT], datasets=[])
    emulator = start_emulator(tmp_path, fixture, state=tmp_path / "emulator.sqlite")
    args = ["--state-url", f"redis://127.0.0.1:{closed_port}/0"]
    gateway = start_gateway(tmp_path, key_file, f"http://{emulator.address}", args=args)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.ApiKeyServiceStub(channel)
            for _ in range(2):
                with pytest.raises(grpc.RpcError) as refused:
                    create(stub, "no store", str(uuid.uuid4()))
                assert reason_of(refused.value) == "STATE_UNAVAILABLE"
            # Without a request id the store is not needed, and nothing is counted.
            stub.CreateProjectApiKey(
                pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="no id", scopes=READ), timeout=20
            )
        counted = samples(gateway)
    finally:
        gateway.stop()
        emulator.stop()
    assert counted[("encord_gateway_request_id_store_errors_total", ())] == 2
    assert counted[("encord_gateway_request_id_replays_total", ())] == 0


def test_every_event_moves_exactly_one_counter() -> None:
    for event in EVENTS:
        metrics = GatewayMetrics(process=False)
        before = {s.name + str(s.labels): s.value for f in metrics.registry.collect() for s in f.samples}
        metrics.request_id_event(event)
        after = {s.name + str(s.labels): s.value for f in metrics.registry.collect() for s in f.samples}
        moved = {name for name in after if after[name] != before.get(name)}
        assert len([m for m in moved if m.startswith("encord_gateway_request_id_")]) == 1, (event, moved)
    metrics = GatewayMetrics(process=False)
    metrics.request_id_event("something new")  # not in EVENTS: no series appears
    counted = {
        (s.name, str(s.labels)): s.value
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name.startswith("encord_gateway_request_id_") and s.name.endswith("_total")
    }
    assert len(counted) == 7  # the four counters' series, all at zero
    assert not any(counted.values()), counted
