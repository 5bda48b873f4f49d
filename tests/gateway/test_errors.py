"""design.md's error table, row by row: the emulator answers each Encord code; the caller sees its status."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_PROJECT, Stack, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.emulator import EmulatorAdmin
from support.gateway import Calls, run_gateway
from support.status import decode

LIST = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
CREATE = pb.CreateProjectApiKeyRequest(
    project_hash=DEMO_PROJECT, title="t", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
)


@pytest.fixture
def admin(stack: Stack) -> Iterator[EmulatorAdmin]:
    emulator = EmulatorAdmin(stack.emulator.address)
    yield emulator
    emulator.clear_faults()


ENCORD_CODES = [
    ("INVALID_ARGUMENTS_ERROR", grpc.StatusCode.INVALID_ARGUMENT, "rejected the request's arguments"),
    ("RESOURCE_NOT_FOUND_ERROR", grpc.StatusCode.NOT_FOUND, "no such project"),
    ("AUTHORISATION_ERROR", grpc.StatusCode.PERMISSION_DENIED, "may not do this"),
    ("OPERATION_NOT_ALLOWED", grpc.StatusCode.PERMISSION_DENIED, "does not allow"),
    ("AUTHENTICATION_ERROR", grpc.StatusCode.FAILED_PRECONDITION, "refused the gateway's signing key"),
    ("SSH_KEY_NOT_FOUND_ERROR", grpc.StatusCode.FAILED_PRECONDITION, "refused the gateway's signing key"),
    ("DUPLICATE_SSH_KEY_ERROR", grpc.StatusCode.FAILED_PRECONDITION, "refused the gateway's signing key"),
    ("RESOURCE_EXISTS_ERROR", grpc.StatusCode.ALREADY_EXISTS, "already exists"),
    ("UNKNOWN_ERROR", grpc.StatusCode.UNKNOWN, "UNKNOWN_ERROR"),
    ("METHOD_NOT_ALLOWED_ERROR", grpc.StatusCode.UNKNOWN, "METHOD_NOT_ALLOWED_ERROR"),
    ("SOMETHING_NEW_ERROR", grpc.StatusCode.UNKNOWN, "SOMETHING_NEW_ERROR"),
]


@pytest.mark.parametrize(
    ("encord_code", "grpc_code", "message"), ENCORD_CODES, ids=[c[0] for c in ENCORD_CODES]
)
@pytest.mark.parametrize("mirror", [None, 400], ids=["http-200", "http-mirrored"])
def test_encord_code_maps_to_grpc_code(
    stub: pb_grpc.ApiKeyServiceStub,
    admin: EmulatorAdmin,
    encord_code: str,
    grpc_code: grpc.StatusCode,
    message: str,
    mirror: int | None,
) -> None:
    admin.faults(force_error=encord_code, force_error_status=mirror)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateProjectApiKey(CREATE, timeout=10)
    error = decode(caught.value)
    assert error.code == grpc_code
    assert error.reason == encord_code
    assert error.domain == "encord-gateway"
    assert message in error.message
    assert len(error.metadata["trace_id"]) == 32
    assert error.trailing["x-cloud-trace-context"].startswith(error.metadata["trace_id"])


def test_invalid_arguments_payload_reaches_the_caller(
    stub: pb_grpc.ApiKeyServiceStub, admin: EmulatorAdmin
) -> None:
    admin.faults(force_error="INVALID_ARGUMENTS_ERROR", force_error_payload="title is too fancy")
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateProjectApiKey(CREATE, timeout=10)
    assert "title is too fancy" in decode(caught.value).message


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"error_rate": 1.0}, "UPSTREAM_HTTP_ERROR"),
        ({"drop_rate": 1.0}, "UPSTREAM_CONNECTION_ERROR"),
        ({"garbage_rate": 1.0}, "UPSTREAM_BAD_RESPONSE"),
    ],
    ids=["http-503", "dropped-connection", "not-an-envelope"],
)
def test_upstream_failures_are_unavailable(
    stub: pb_grpc.ApiKeyServiceStub, admin: EmulatorAdmin, faults: dict[str, float], reason: str
) -> None:
    admin.faults(**faults)
    for call in (partial(stub.CreateProjectApiKey, CREATE), partial(stub.ListProjectApiKeys, LIST)):
        with pytest.raises(grpc.RpcError) as caught:
            call(timeout=20)
        error = decode(caught.value)
        assert error.code == grpc.StatusCode.UNAVAILABLE
        assert error.reason == reason


def test_http_429_is_resource_exhausted(stub: pb_grpc.ApiKeyServiceStub, admin: EmulatorAdmin) -> None:
    admin.faults(force_error="RATE_LIMITED", force_error_status=429)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateProjectApiKey(CREATE, timeout=10)
    error = decode(caught.value)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "UPSTREAM_RATE_LIMITED"


def test_refused_connection_is_unreachable_and_a_create_is_tried_again(ssh_key_file: Path) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    calls = Calls()
    with (
        run_gateway(
            0, encord_domain=f"http://127.0.0.1:{closed_port}", ssh_key_file=ssh_key_file, calls=calls
        ) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc.ApiKeyServiceStub(channel).CreateProjectApiKey(CREATE, timeout=10)
    error = decode(caught.value)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    # Nothing was sent, so the caller knows no key was made, and the gateway could try again.
    assert error.reason == "UPSTREAM_UNREACHABLE"
    assert "nothing was sent" in error.message
    record = calls.last("CreateProjectApiKey")
    assert record.context is not None
    assert sum(o.attempts for o in record.context.upstream) == 4  # the default --upstream-retries


def test_unregistered_signing_key_is_failed_precondition(stack: Stack, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_ed25519"
    write_ssh_key(stranger)
    with (
        run_gateway(0, encord_domain=f"http://{stack.emulator.address}", ssh_key_file=stranger) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(LIST, timeout=10)
    error = decode(caught.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "SSH_KEY_NOT_FOUND_ERROR"
    assert "signing key" in error.message
