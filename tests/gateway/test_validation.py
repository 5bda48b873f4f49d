"""Bad input is refused with INVALID_ARGUMENT and BadRequest field violations, before any upstream call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.gateway import Calls, run_gateway
from support.recorder import Recorded, envelope, recording_server

PROJECT = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"
DATASET = "0c2f1f0e-7f37-4a0e-8c47-1d2e9a6b5f21"
READ, WRITE = pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_LABEL_WRITE


CALLS = Calls()


@pytest.fixture(scope="module")
def stub(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[pb_grpc.ApiKeyServiceStub, list[Recorded]]]:
    key: Path = tmp_path_factory.mktemp("validation") / "id_ed25519"
    write_ssh_key(key)
    with (
        recording_server(lambda query: (200, envelope([]))) as (url, seen),
        run_gateway(0, encord_domain=url, ssh_key_file=key, calls=CALLS) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield pb_grpc.ApiKeyServiceStub(channel), seen


def violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    found: dict[str, str] = {}
    reasons = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append((info.reason, info.domain))
    assert reasons == [("INVALID_REQUEST", "encord-gateway")]
    return found


CASES: list[tuple[str, str, Any, dict[str, str]]] = [
    # (id, RPC, request, {field: part of the description})
    (
        "empty project hash",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash="", title="t", scopes=[READ]),
        {"project_hash": "required"},
    ),
    (
        "project hash not a uuid",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash="my-project", title="t", scopes=[READ]),
        {"project_hash": "UUID"},
    ),
    (
        "uuid without dashes",
        "ListProjectApiKeys",
        pb.ListProjectApiKeysRequest(project_hash=PROJECT.replace("-", "")),
        {"project_hash": "8-4-4-4-12"},
    ),
    (
        "empty title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="", scopes=[READ]),
        {"title": "required"},
    ),
    (
        "blank title",
        "CreateDatasetApiKey",
        pb.CreateDatasetApiKeyRequest(dataset_hash=DATASET, title="   ", scopes=[pb.DATASET_SCOPE_READ]),
        {"title": "blank"},
    ),
    (
        "over-long title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="x" * 256, scopes=[READ]),
        {"title": "256 characters long; at most 255"},
    ),
    (
        "control characters in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\x00b", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "C1 CSI (U+009B) in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\u009bb", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "NEL (U+0085) in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\u0085b", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "line separator (U+2028) in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\u2028b", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "paragraph separator (U+2029) in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\u2029b", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "right-to-left override (U+202E) in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\u202eb", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "left-to-right isolate (U+2066) in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\u2066b", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "DEL in title",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="a\x7fb", scopes=[READ]),
        {"title": "control"},
    ),
    (
        "no scopes",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="t"),
        {"scopes": "at least one"},
    ),
    (
        "unspecified scope",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(
            project_hash=PROJECT, title="t", scopes=[READ, pb.API_KEY_SCOPE_UNSPECIFIED]
        ),
        {"scopes[1]": "UNSPECIFIED"},
    ),
    (
        "unknown scope number",
        "CreateProjectApiKey",
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title="t", scopes=[99]),  # type: ignore[list-item]
        {"scopes[0]": "99 is not a known scope"},
    ),
    (
        "dataset scope out of range",
        "CreateDatasetApiKey",
        pb.CreateDatasetApiKeyRequest(dataset_hash=DATASET, title="t", scopes=[3]),  # type: ignore[list-item]
        {"scopes[0]": "3 is not a known scope"},
    ),
    (
        "every field wrong at once",
        "CreateDatasetApiKey",
        pb.CreateDatasetApiKeyRequest(dataset_hash="nope", title="", scopes=[]),
        {"dataset_hash": "UUID", "title": "required", "scopes": "at least one"},
    ),
    (
        "empty dataset hash to list",
        "ListDatasetApiKeys",
        pb.ListDatasetApiKeysRequest(dataset_hash=""),
        {"dataset_hash": "required"},
    ),
    (
        "empty hash to get-or-create project",
        "GetOrCreateProjectApiKey",
        pb.GetOrCreateProjectApiKeyRequest(project_hash=""),
        {"project_hash": "required"},
    ),
    (
        "bad hash to get-or-create dataset",
        "GetOrCreateDatasetApiKey",
        pb.GetOrCreateDatasetApiKeyRequest(dataset_hash="x" * 36),
        {"dataset_hash": "UUID"},
    ),
]


@pytest.mark.parametrize(("rpc", "request_", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_upstream(
    stub: tuple[pb_grpc.ApiKeyServiceStub, list[Recorded]], rpc: str, request_: Any, expected: dict[str, str]
) -> None:
    client, seen = stub
    seen.clear()
    with pytest.raises(grpc.RpcError) as caught:
        getattr(client, rpc)(request_, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(caught.value)
    assert set(found) == set(expected)
    for field, text in expected.items():
        assert text in found[field]
    assert seen == [], "an invalid request reached Encord"
    # The call's log line names no resource: only a hash that passed validation reaches a log.
    assert CALLS.last(rpc).resource_hash == ""


def test_the_log_line_names_the_checked_hash(stub: tuple[pb_grpc.ApiKeyServiceStub, list[Recorded]]) -> None:
    client, _ = stub
    client.ListProjectApiKeys(pb.ListProjectApiKeysRequest(project_hash=PROJECT.upper()), timeout=10)
    assert CALLS.last("ListProjectApiKeys").resource_hash == PROJECT  # as validated: lower case


def test_duplicate_scopes_are_sent_once(stub: tuple[pb_grpc.ApiKeyServiceStub, list[Recorded]]) -> None:
    client, seen = stub
    seen.clear()
    # The recorder answers [] to everything, which is not a created key: UNAVAILABLE,
    # but the request it saw is what matters here.
    with pytest.raises(grpc.RpcError) as caught:
        client.CreateProjectApiKey(
            pb.CreateProjectApiKeyRequest(
                project_hash=PROJECT.upper(), title="  t  ", scopes=[READ, WRITE, READ]
            ),
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(seen) == 1
    values = seen[0].query["values"]
    assert values == {"uid": PROJECT, "payload": {"title": "t", "scopes": ["label.read", "label.write"]}}
