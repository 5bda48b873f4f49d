"""The gateway sends Encord the same bytes as encord==0.1.145 for each of the six operations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from encord.orm.dataset import DatasetScope
from encord.user_client import EncordUserClient
from encord.utilities.client_utilities import APIKeyScopes
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.gateway import run_gateway
from support.recorder import Recorded, envelope, recording_server

PROJECT = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"
DATASET = "0c2f1f0e-7f37-4a0e-8c47-1d2e9a6b5f21"
DATASET_KEY = {
    "resource_hash": DATASET,
    "api_key": "0-1datasetkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "title": "Full Access API Key",
    "key_hash": "7d4f0c1e-2b7a-4e55-9c0a-5b1f7e2d3c4a",
    "scopes": ["dataset.read", "dataset.write"],
}


def answer(query: dict[str, Any]) -> tuple[int, bytes]:
    """Lists are empty, so that get-or-create goes on to create, as the SDK does."""
    kind, method = query["query_type"], query["query_method"]
    if kind == "projectapikey":
        return 200, envelope("0-1projectkeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" if method == "POST" else [])
    if kind == "datasetapikey":
        return 200, envelope(DATASET_KEY if method == "POST" else [])
    return 200, envelope(None)


# (SDK call, the same operation through the gateway)
Operation = tuple[Callable[[EncordUserClient], Any], Callable[[pb_grpc.ApiKeyServiceStub], Any]]
OPERATIONS: dict[str, Operation] = {
    "create_project_api_key": (
        lambda sdk: sdk.create_project_api_key(
            PROJECT, "Example API key title", [APIKeyScopes.LABEL_READ, APIKeyScopes.LABEL_WRITE]
        ),
        lambda stub: stub.CreateProjectApiKey(
            pb.CreateProjectApiKeyRequest(
                project_hash=PROJECT,
                title="Example API key title",
                scopes=[pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_LABEL_WRITE],
            )
        ),
    ),
    "get_project_api_keys": (
        lambda sdk: sdk.get_project_api_keys(PROJECT),
        lambda stub: stub.ListProjectApiKeys(pb.ListProjectApiKeysRequest(project_hash=PROJECT)),
    ),
    "get_or_create_project_api_key": (
        lambda sdk: sdk.get_or_create_project_api_key(PROJECT),
        lambda stub: stub.GetOrCreateProjectApiKey(pb.GetOrCreateProjectApiKeyRequest(project_hash=PROJECT)),
    ),
    "create_dataset_api_key": (
        lambda sdk: sdk.create_dataset_api_key(
            DATASET, "Full Access API Key", [DatasetScope.READ, DatasetScope.WRITE]
        ),
        lambda stub: stub.CreateDatasetApiKey(
            pb.CreateDatasetApiKeyRequest(
                dataset_hash=DATASET,
                title="Full Access API Key",
                scopes=[pb.DATASET_SCOPE_READ, pb.DATASET_SCOPE_WRITE],
            )
        ),
    ),
    "get_dataset_api_keys": (
        lambda sdk: sdk.get_dataset_api_keys(DATASET),
        lambda stub: stub.ListDatasetApiKeys(pb.ListDatasetApiKeysRequest(dataset_hash=DATASET)),
    ),
    "get_or_create_dataset_api_key": (
        lambda sdk: sdk.get_or_create_dataset_api_key(DATASET),
        lambda stub: stub.GetOrCreateDatasetApiKey(pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=DATASET)),
    ),
}


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[str, list[Recorded]]]:
    with recording_server(answer) as running:
        yield running


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from encord_gateway.dev.devstack import write_ssh_key

    path = tmp_path_factory.mktemp("wire") / "id_ed25519"
    write_ssh_key(path)
    return path


@pytest.fixture(scope="module")
def gateway_stub(recorder: tuple[str, list[Recorded]], key_file: Path) -> Iterator[pb_grpc.ApiKeyServiceStub]:
    url, _ = recorder
    with (
        run_gateway(0, encord_domain=url, ssh_key_file=key_file) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield pb_grpc.ApiKeyServiceStub(channel)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_gateway_sends_what_the_sdk_sends(
    name: str,
    recorder: tuple[str, list[Recorded]],
    key_file: Path,
    gateway_stub: pb_grpc.ApiKeyServiceStub,
) -> None:
    url, seen = recorder
    sdk_call, gateway_call = OPERATIONS[name]
    sdk = EncordUserClient.create_with_ssh_private_key(ssh_private_key_path=key_file, domain=url)

    seen.clear()
    sdk_call(sdk)
    by_sdk = list(seen)
    seen.clear()
    gateway_call(gateway_stub)
    by_gateway = list(seen)

    assert by_sdk, "the SDK sent nothing"
    assert len(by_gateway) == len(by_sdk)
    for sent_by_sdk, sent_by_gateway in zip(by_sdk, by_gateway, strict=True):
        assert sent_by_gateway.path == sent_by_sdk.path == "/public/user"
        assert sent_by_gateway.body == sent_by_sdk.body
        assert sent_by_gateway.header_names == sent_by_sdk.header_names
        # Ed25519 is deterministic: the same key over the same bytes gives the same header.
        assert sent_by_gateway.header("Authorization") == sent_by_sdk.header("Authorization")
        for name_ in ("Accept", "Content-Type", "Accept-Encoding", "ResourceType", "ResourceID"):
            assert sent_by_gateway.header(name_) == sent_by_sdk.header(name_)
        trace = sent_by_gateway.header("X-Cloud-Trace-Context")
        assert trace.endswith("/1;o=1")
        assert len(trace.split("/")[0]) == 32
