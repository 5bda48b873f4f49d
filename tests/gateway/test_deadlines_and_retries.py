"""Deadlines bound every upstream wait; list calls are retried on transient failures, creates never."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_PROJECT, Stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.emulator import EmulatorAdmin
from support.gateway import run_gateway
from support.recorder import envelope, recording_server
from support.status import decode

LIST = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
CREATE = pb.CreateProjectApiKeyRequest(
    project_hash=DEMO_PROJECT, title="t", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
)


@pytest.fixture
def admin(stack: Stack) -> Iterator[EmulatorAdmin]:
    emulator = EmulatorAdmin(stack.emulator.address)
    emulator.reset_stats()
    yield emulator
    emulator.clear_faults()


def test_deadline_shorter_than_upstream_latency(
    stub: pb_grpc.ApiKeyServiceStub, admin: EmulatorAdmin, stack: Stack
) -> None:
    admin.faults(latency_ms=3000)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListProjectApiKeys(LIST, timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The gateway's own verdict: it gave up at the caller's deadline, not when
    # Encord would have answered (3 s later).
    line = stack.gateway.wait_for_line(
        lambda text: '"method": "ListProjectApiKeys"' in text and "DEADLINE_EXCEEDED" in text
    )
    assert line is not None
    assert json.loads(line)["duration_ms"] < 2000


def test_lists_are_retried_then_unavailable(stub: pb_grpc.ApiKeyServiceStub, admin: EmulatorAdmin) -> None:
    admin.faults(error_rate=1.0)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListProjectApiKeys(LIST, timeout=20)
    assert decode(caught.value).code == grpc.StatusCode.UNAVAILABLE
    assert admin.requests_for("projectapikey", "GET") == 4  # the default --upstream-retries


def test_creates_are_never_sent_twice(stub: pb_grpc.ApiKeyServiceStub, admin: EmulatorAdmin) -> None:
    for faults in ({"error_rate": 1.0}, {"drop_rate": 1.0}):
        admin.reset_stats()
        admin.faults(**faults)
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateProjectApiKey(CREATE, timeout=20)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert admin.requests_for("projectapikey", "POST") == 1


def test_a_list_succeeds_through_transient_failures(ssh_key_file: Path) -> None:
    answers = iter([(503, b"busy"), (502, b"bad gateway"), (200, envelope([]))])
    with (
        recording_server(lambda query: next(answers)) as (url, seen),
        run_gateway(0, encord_domain=url, ssh_key_file=ssh_key_file) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        answer = pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(LIST, timeout=20)
    assert list(answer.api_keys) == []
    assert len(seen) == 3
    # Each attempt is a fresh signature over the same body.
    assert len({r.body for r in seen}) == 1


def test_retries_stop_at_the_deadline(stub: pb_grpc.ApiKeyServiceStub, admin: EmulatorAdmin) -> None:
    admin.faults(error_rate=1.0, latency_ms=400)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListProjectApiKeys(LIST, timeout=0.6)
    assert caught.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    assert admin.requests_for("projectapikey", "GET") <= 2


def test_a_long_caller_deadline_is_capped(stack: Stack) -> None:
    admin = EmulatorAdmin(stack.emulator.address)
    admin.faults(latency_ms=5000)
    encord = f"http://{stack.emulator.address}"
    try:
        with (
            run_gateway(
                0,
                encord_domain=encord,
                ssh_key_file=stack.ssh_key_file,
                default_deadline=0.5,
                max_deadline=1.0,
            ) as (_, port),
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(LIST, timeout=60)
    finally:
        admin.clear_faults()
    # The gateway's own answer (it carries ErrorInfo), not the caller's 60 s running out.
    error = decode(caught.value)
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.reason == "DEADLINE_EXCEEDED"
