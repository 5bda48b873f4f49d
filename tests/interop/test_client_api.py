"""The convenience client against a fake service on a real port: arguments, metadata, TLS, errors."""

from __future__ import annotations

import re
import threading
import tomllib
import types
from pathlib import Path

import encord_gateway_client
import grpc
import pytest
from encord_gateway import scopes as server_scopes
from encord_gateway_client import (
    DatasetApiKey,
    DatasetScope,
    FieldViolation,
    GatewayClient,
    GatewayError,
    ProjectApiKey,
    ProjectScope,
    connect,
    is_loopback,
)
from encord_gateway_client.v1 import api_keys_pb2 as pb
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from interop.fakes import DATASET, PROJECT, FailWith, Pki, RunningFake, StartFake

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


# --- the package surface ------------------------------------------------------


def test_all_names_every_public_object_and_nothing_else() -> None:
    package = encord_gateway_client
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(package.__all__) == public | {"__version__"}
    assert all(hasattr(package, name) for name in package.__all__)


def test_version_is_the_one_pyproject_builds() -> None:
    pyproject = tomllib.loads((ROOT / "client_stubs/python/pyproject.toml").read_text())
    assert encord_gateway_client.__version__ == pyproject["project"]["version"]


# --- scopes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enum", "proto_enum", "server_names"),
    [
        (ProjectScope, pb.ApiKeyScope, server_scopes.PROJECT_SCOPES),
        (DatasetScope, pb.DatasetScope, server_scopes.DATASET_SCOPES),
    ],
)
def test_each_proto_scope_is_one_enum_member_named_as_encord_names_it(
    enum: type[ProjectScope] | type[DatasetScope], proto_enum: object, server_names: dict[int, str]
) -> None:
    # The server's table was written separately; the two must agree on every number.
    numbers = [n for n in proto_enum.values() if n != 0]  # type: ignore[attr-defined]
    assert {n: enum.from_proto(n) for n in numbers} == {n: enum(server_names[n]) for n in numbers}
    assert sorted(m.to_proto() for m in enum) == sorted(numbers)
    assert enum.from_proto(0) is None


def test_scopes_are_python_enums_equal_to_encords_strings() -> None:
    assert ProjectScope("label_logs.read") is ProjectScope.LABEL_LOGS_READ
    # mypy holds a StrEnum member and a str literal never equal; at run time they are.
    assert DatasetScope.WRITE == "dataset.write"  # type: ignore[comparison-overlap]
    with pytest.raises(ValueError, match=r"label\.delete"):
        ProjectScope("label.delete")


# --- calls and answers ----------------------------------------------------------


def test_create_project_key_sends_proto_scopes_and_answers_a_frozen_dataclass(fake: RunningFake) -> None:
    with connect(fake.address) as client:
        key = client.create_project_api_key(PROJECT, "vendor", [ProjectScope.LABEL_READ, "label.write"])
    sent = fake.fake.received[0].request
    assert list(sent.scopes) == [pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_LABEL_WRITE]
    assert (sent.project_hash, sent.title, sent.validate_only) == (PROJECT, "vendor", False)
    assert key == ProjectApiKey(
        api_key="fake-project-key-0001",
        title="vendor",
        scopes=(ProjectScope.LABEL_READ, ProjectScope.LABEL_WRITE),
        project_hash=PROJECT,
        fingerprint="0123456789abcdef",
    )
    with pytest.raises(AttributeError):
        key.title = "other"  # type: ignore[misc]


def test_create_dataset_key_passes_validate_only(fake: RunningFake) -> None:
    with connect(fake.address) as client:
        key = client.create_dataset_api_key(DATASET, "trainer", ["dataset.read"], validate_only=True)
    assert fake.fake.received[0].request.validate_only is True
    assert key.scopes == (DatasetScope.READ,)
    assert (key.dataset_hash, key.key_hash, key.api_key) == (DATASET, "key-hash-1", "fake-dataset-key-0001")


def test_lists_and_get_or_create_decode_each_key(fake: RunningFake) -> None:
    fake.fake.answers = {
        "ListProjectApiKeys": pb.ListProjectApiKeysResponse(
            api_keys=[
                pb.ProjectApiKey(
                    title="a", scopes=[pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_ALGO_LIBRARY]
                ),
                pb.ProjectApiKey(title="b"),
            ]
        ),
        "ListDatasetApiKeys": pb.ListDatasetApiKeysResponse(
            api_keys=[pb.DatasetApiKey(title="c", scopes=[pb.DATASET_SCOPE_WRITE])]
        ),
        "GetOrCreateProjectApiKey": pb.ProjectApiKey(
            title="master", scopes=[pb.API_KEY_SCOPE_LABEL_LOGS_READ]
        ),
        "GetOrCreateDatasetApiKey": pb.DatasetApiKey(
            title="master", scopes=[pb.DATASET_SCOPE_READ, pb.DATASET_SCOPE_WRITE]
        ),
    }
    with connect(fake.address) as client:
        projects = client.list_project_api_keys(PROJECT)
        datasets = client.list_dataset_api_keys(DATASET)
        project_master = client.get_or_create_project_api_key(PROJECT)
        dataset_master = client.get_or_create_dataset_api_key(DATASET, validate_only=True)
    assert [(k.title, k.scopes) for k in projects] == [
        ("a", (ProjectScope.LABEL_READ, ProjectScope.ALGO_LIBRARY)),
        ("b", ()),
    ]
    assert [(k.title, k.scopes) for k in datasets] == [("c", (DatasetScope.WRITE,))]
    assert project_master.scopes == (ProjectScope.LABEL_LOGS_READ,)
    assert dataset_master.scopes == (DatasetScope.READ, DatasetScope.WRITE)
    assert [r.method for r in fake.fake.received] == [
        "ListProjectApiKeys",
        "ListDatasetApiKeys",
        "GetOrCreateProjectApiKey",
        "GetOrCreateDatasetApiKey",
    ]
    assert fake.fake.received[-1].request.validate_only is True


def test_a_scope_newer_than_the_client_is_left_out(fake: RunningFake) -> None:
    # The stub types scopes as ApiKeyScope only; protobuf takes any number, as the wire may carry one.
    fake.fake.answers["GetOrCreateProjectApiKey"] = pb.ProjectApiKey(scopes=[1, 99])  # type: ignore[list-item]
    with connect(fake.address) as client:
        assert client.get_or_create_project_api_key(PROJECT).scopes == (ProjectScope.LABEL_READ,)


def test_an_unknown_scope_string_fails_before_any_call(fake: RunningFake) -> None:
    with connect(fake.address) as client, pytest.raises(ValueError, match=r"dataset\.delete"):
        client.create_dataset_api_key(DATASET, "t", ["dataset.delete"])
    assert fake.fake.received == []


def test_repr_leaves_the_key_out() -> None:
    project = ProjectApiKey("secret-project-key", "t", (), PROJECT, "0123")
    dataset = DatasetApiKey(DATASET, "secret-dataset-key", "t", "h", (), "0123")
    assert "secret" not in repr(project)
    assert "secret" not in repr(dataset)
    assert "0123" in repr(project)


# --- metadata: token and trace id -------------------------------------------------


def test_token_goes_as_bearer_metadata_on_plaintext_loopback(fake: RunningFake) -> None:
    with connect(fake.address, token="caller-token") as client:
        client.list_project_api_keys(PROJECT, trace_id=TRACE_ID)
    metadata = fake.fake.received[0].metadata
    assert metadata["authorization"] == "Bearer caller-token"
    assert metadata["x-cloud-trace-context"] == TRACE_ID
    assert str(metadata["user-agent"]).startswith("encord-gateway-client-python/")


def test_without_token_or_trace_id_neither_header_is_sent(fake: RunningFake) -> None:
    with connect(fake.address) as client:
        client.list_dataset_api_keys(DATASET)
    assert "authorization" not in fake.fake.received[0].metadata
    assert "x-cloud-trace-context" not in fake.fake.received[0].metadata


def test_a_token_is_never_sent_in_plaintext_off_this_machine() -> None:
    with pytest.raises(ValueError, match="plaintext"):
        connect("gateway.example.com:50051", token="caller-token")


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.10:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("dns:///localhost:443", True),
        ("ipv4:127.0.0.1:50051", True),
        ("unix:/run/gateway.sock", True),
        ("10.0.0.1:50051", False),
        ("gateway.example.com:443", False),
        ("[2001:db8::1]:50051", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_client_cert_needs_its_key() -> None:
    with pytest.raises(ValueError, match="client_cert and client_key"):
        connect("127.0.0.1:1", client_cert=b"pem")


# --- TLS ------------------------------------------------------------------------


def test_tls_with_a_ca_carries_the_token_as_call_credentials(start_fake: StartFake, pki: Pki) -> None:
    running = start_fake(grpc.ssl_server_credentials([(pki.server_key, pki.server_cert)]))
    with connect(running.address, tls_ca=pki.ca, token="tls-token") as client:
        client.get_or_create_dataset_api_key(DATASET)
    assert running.fake.received[0].metadata["authorization"] == "Bearer tls-token"


def test_tls_ca_may_be_a_path(start_fake: StartFake, pki: Pki, tmp_path: Path) -> None:
    running = start_fake(grpc.ssl_server_credentials([(pki.server_key, pki.server_cert)]))
    (tmp_path / "ca.pem").write_bytes(pki.ca)
    with connect(running.address, tls_ca=tmp_path / "ca.pem") as client:
        client.list_project_api_keys(PROJECT)
    assert len(running.fake.received) == 1


def test_mutual_tls_presents_the_client_certificate(start_fake: StartFake, pki: Pki) -> None:
    running = start_fake(
        grpc.ssl_server_credentials(
            [(pki.server_key, pki.server_cert)], root_certificates=pki.ca, require_client_auth=True
        )
    )
    with connect(running.address, tls_ca=pki.ca) as client, pytest.raises(GatewayError) as refused:
        client.list_project_api_keys(PROJECT, timeout=5)
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    with connect(
        running.address, tls_ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
    ) as client:
        client.list_project_api_keys(PROJECT)
    assert len(running.fake.received) == 1


# --- errors ---------------------------------------------------------------------


def _rich_status(code: grpc.StatusCode, message: str, *details: Message) -> FailWith:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return FailWith(
        code,
        message,
        (
            ("grpc-status-details-bin", status.SerializeToString()),
            ("x-cloud-trace-context", f"{TRACE_ID}/1;o=1"),
        ),
    )


def test_an_error_carries_code_reason_metadata_violations_and_trace_id(fake: RunningFake) -> None:
    fake.fake.fail = _rich_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid request: project_hash: must not be empty",
        error_details_pb2.ErrorInfo(reason="INVALID_REQUEST", domain="encord-gateway", metadata={"k": "v"}),
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="project_hash", description="must not be empty"
                )
            ]
        ),
    )
    with connect(fake.address) as client, pytest.raises(GatewayError) as caught:
        client.create_project_api_key("", "t", [ProjectScope.LABEL_READ])
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.reason, error.domain) == ("INVALID_REQUEST", "encord-gateway")
    assert dict(error.metadata) == {"k": "v"}
    assert error.field_violations == (FieldViolation("project_hash", "must not be empty"),)
    assert error.trace_id == TRACE_ID
    assert error.retry_delay is None
    assert str(error) == (
        "INVALID_ARGUMENT (INVALID_REQUEST): invalid request: project_hash: must not be empty"
    )
    assert isinstance(error.__cause__, grpc.RpcError)


def test_retry_info_becomes_seconds(fake: RunningFake) -> None:
    fake.fake.fail = _rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="encord-gateway"),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
    )
    with connect(fake.address) as client, pytest.raises(GatewayError) as caught:
        client.list_project_api_keys(PROJECT)
    assert caught.value.retry_delay == 1.5
    assert caught.value.reason == "RATE_LIMITED"


def test_a_status_without_details_still_names_its_code(fake: RunningFake) -> None:
    fake.fake.fail = FailWith(grpc.StatusCode.NOT_FOUND, "no such\nproject")
    with connect(fake.address) as client, pytest.raises(GatewayError) as caught:
        client.list_dataset_api_keys(DATASET)
    assert (caught.value.reason, caught.value.field_violations, caught.value.trace_id) == ("", (), "")
    assert str(caught.value) == "NOT_FOUND: no such project"


def test_the_default_timeout_is_each_calls_deadline(fake: RunningFake) -> None:
    fake.fake.hold = threading.Event()
    with connect(fake.address, default_timeout=0.2) as client, pytest.raises(GatewayError) as caught:
        client.list_project_api_keys(PROJECT)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_per_call_timeout_overrides_the_default(fake: RunningFake) -> None:
    fake.fake.hold = threading.Event()
    with connect(fake.address, default_timeout=None) as client, pytest.raises(GatewayError) as caught:
        client.get_or_create_project_api_key(PROJECT, timeout=0.2)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_refused_connection_is_unavailable() -> None:
    # Port 1 on loopback: nothing listens there in a test environment.
    with connect("127.0.0.1:1") as client, pytest.raises(GatewayError) as caught:
        client.list_project_api_keys(PROJECT)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert re.match(r"^UNAVAILABLE: \S", str(caught.value))


def test_a_client_can_wrap_an_existing_channel(fake: RunningFake) -> None:
    with GatewayClient(grpc.insecure_channel(fake.address), metadata=(("x-extra", "1"),)) as client:
        client.list_project_api_keys(PROJECT)
    assert fake.fake.received[0].metadata["x-extra"] == "1"
