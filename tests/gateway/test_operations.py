"""Operating the gateway: health, reflection, graceful SIGTERM, and logs that never hold a secret."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, Stack, running_stack, start_gateway
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.recorder import envelope, recording_server

SERVICE = "encord_gateway.v1.ApiKeyService"
LIST = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_is_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == SERVING


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    names = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    described = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]), timeout=5
        )
    )
    assert described[0].file_descriptor_response.file_descriptor_proto


@pytest.mark.parametrize(
    ("symbol", "found"),
    [
        (f"{SERVICE}.CreateProjectApiKey", True),  # grpcurl describe asks for methods by full name
        ("encord_gateway.v1.CreateProjectApiKeyRequest", True),
        (f"{SERVICE}.NoSuchMethod", False),
        ("no.such.Symbol", False),
    ],
)
def test_reflection_finds_the_file_of_a_method_and_not_of_a_stranger(
    channel: grpc.Channel, symbol: str, found: bool
) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    (answer,) = reflection.ServerReflectionInfo(iter([request]), timeout=5)
    if found:
        assert answer.file_descriptor_response.file_descriptor_proto
    else:
        assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def watch_until(channel: grpc.Channel, wanted: int, timeout: float = 15) -> bool:
    for answer in health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout
    ):
        if answer.status == wanted:
            return True
    return False


def test_readiness_probe_follows_the_upstream(ssh_key_file: Path) -> None:
    with recording_server(lambda query: (200, envelope([]))) as (url, _):
        gateway = start_gateway(url, ssh_key_file, "--readiness-probe-interval", "0.1")
        with grpc.insecure_channel(gateway.address) as channel:
            assert watch_until(channel, SERVING)
    # The recorder is gone: the probe must notice.
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            assert watch_until(channel, NOT_SERVING)
    finally:
        assert gateway.stop() == 0


def test_sigterm_lets_an_in_flight_call_finish(ssh_key_file: Path) -> None:
    arrived, release = threading.Event(), threading.Event()

    def slow(query: dict[str, Any]) -> tuple[int, bytes]:
        arrived.set()
        release.wait(20)
        return 200, envelope([])

    with recording_server(slow) as (url, _):
        gateway = start_gateway(url, ssh_key_file, "--grace-period", "15")
        with grpc.insecure_channel(gateway.address) as channel:
            in_flight = pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys.future(LIST, timeout=30)
            assert arrived.wait(10)
            gateway.process.send_signal(signal.SIGTERM)
            assert gateway.wait_for_line(lambda line: "stopping" in line) is not None
            # A new connection is refused while the old call drains.
            with grpc.insecure_channel(gateway.address) as fresh:
                with pytest.raises(grpc.RpcError) as refused:
                    pb_grpc.ApiKeyServiceStub(fresh).ListProjectApiKeys(LIST, timeout=2)
                # grpc refuses a call to a stopping server as UNAVAILABLE (GOAWAY) or CANCELLED.
                assert refused.value.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
            release.set()
            assert list(in_flight.result(timeout=20).api_keys) == []
        assert gateway.process.wait(20) == 0


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("debug"), gateway_args=["--log-level", "debug"]) as running:
        yield running


def test_no_secret_reaches_any_log(debug_stack: Stack) -> None:
    created: list[str] = []
    with grpc.insecure_channel(debug_stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        created.append(
            stub.CreateProjectApiKey(
                pb.CreateProjectApiKeyRequest(
                    project_hash=DEMO_PROJECT, title="secret scan", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
                ),
                timeout=10,
            ).api_key
        )
        created.append(
            stub.GetOrCreateProjectApiKey(
                pb.GetOrCreateProjectApiKeyRequest(project_hash=DEMO_PROJECT), timeout=10
            ).api_key
        )
        created += [k.api_key for k in stub.ListProjectApiKeys(LIST, timeout=10).api_keys]
        created.append(
            stub.CreateDatasetApiKey(
                pb.CreateDatasetApiKeyRequest(
                    dataset_hash=DEMO_DATASET, title="secret scan", scopes=[pb.DATASET_SCOPE_READ]
                ),
                timeout=10,
            ).api_key
        )
        created.append(
            stub.GetOrCreateDatasetApiKey(
                pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=DEMO_DATASET), timeout=10
            ).api_key
        )
        created += [
            k.api_key
            for k in stub.ListDatasetApiKeys(
                pb.ListDatasetApiKeysRequest(dataset_hash=DEMO_DATASET), timeout=10
            ).api_keys
        ]
    assert debug_stack.gateway.wait_for_line(lambda line: "ListDatasetApiKeys" in line) is not None
    assert all(created)
    assert len(created) >= 6
    private_key_body = "".join(debug_stack.ssh_key_file.read_text().splitlines()[1:-1])
    logs = "".join(debug_stack.gateway.output) + "".join(debug_stack.emulator.output)
    for path in debug_stack.workdir.glob("*.log"):
        logs += path.read_text()
    assert '"level": "debug"' in logs, "DEBUG logging was not on"
    for key in created:
        assert key not in logs
    assert private_key_body[:32] not in logs
    assert "Authorization" not in logs


def test_one_json_line_per_call(debug_stack: Stack) -> None:
    with grpc.insecure_channel(debug_stack.gateway.address) as channel:
        pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(
            LIST, metadata=(("x-cloud-trace-context", "f" * 32 + "/1;o=1"),), timeout=10
        )
    line = debug_stack.gateway.wait_for_line(lambda text: "f" * 32 in text and '"message": "call"' in text)
    assert line is not None
    record = json.loads(line)
    assert record["method"] == "ListProjectApiKeys"
    assert record["resource_hash"] == DEMO_PROJECT
    assert record["code"] == "OK"
    assert record["upstream_status"] == "200"
    assert record["duration_ms"] > 0
