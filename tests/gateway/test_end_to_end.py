"""Each RPC end to end: a real gateway process, a real emulator process, real channels and HTTP."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import grpc
import pytest
from encord.client import EncordClient
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, Stack, running_stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.emulator import EmulatorAdmin

FRESH_PROJECT = "11111111-2222-4333-8444-555555555555"
FRESH_DATASET = "66666666-7777-4888-9999-aaaaaaaaaaaa"
ALL_PROJECT = [
    pb.API_KEY_SCOPE_LABEL_READ,
    pb.API_KEY_SCOPE_LABEL_WRITE,
    pb.API_KEY_SCOPE_MODEL_INFERENCE,
    pb.API_KEY_SCOPE_MODEL_TRAIN,
    pb.API_KEY_SCOPE_LABEL_LOGS_READ,
    pb.API_KEY_SCOPE_ALGO_LIBRARY,
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("e2e"),
        projects=(DEMO_PROJECT, FRESH_PROJECT),
        datasets=(DEMO_DATASET, FRESH_DATASET),
    ) as running:
        yield running


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def test_create_and_list_project_keys(stub: pb_grpc.ApiKeyServiceStub) -> None:
    created = stub.CreateProjectApiKey(
        pb.CreateProjectApiKeyRequest(
            project_hash=DEMO_PROJECT,
            title="Example API key title",
            scopes=[pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_LABEL_WRITE],
        ),
        timeout=10,
    )
    assert created.api_key
    assert created.title == "Example API key title"
    assert list(created.scopes) == [pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_LABEL_WRITE]
    assert created.project_hash == DEMO_PROJECT
    assert created.fingerprint == fingerprint(created.api_key)

    listed = stub.ListProjectApiKeys(pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=10)
    mine = [k for k in listed.api_keys if k.api_key == created.api_key]
    assert len(mine) == 1
    assert mine[0].title == created.title
    assert set(mine[0].scopes) == set(created.scopes)
    assert mine[0].fingerprint == created.fingerprint
    assert mine[0].project_hash == DEMO_PROJECT


def test_created_project_key_works_with_the_sdk(stub: pb_grpc.ApiKeyServiceStub, stack: Stack) -> None:
    created = stub.CreateProjectApiKey(
        pb.CreateProjectApiKeyRequest(
            project_hash=DEMO_PROJECT, title="for the sdk", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        ),
        timeout=10,
    )
    client = EncordClient.initialise(DEMO_PROJECT, created.api_key, domain=f"http://{stack.emulator.address}")
    assert type(client).__name__ == "EncordClientProject"


def test_get_or_create_project_key_is_stable(stub: pb_grpc.ApiKeyServiceStub) -> None:
    request = pb.GetOrCreateProjectApiKeyRequest(project_hash=DEMO_PROJECT)
    first = stub.GetOrCreateProjectApiKey(request, timeout=10)
    second = stub.GetOrCreateProjectApiKey(request, timeout=10)
    assert first.api_key
    assert first.api_key == second.api_key
    assert set(first.scopes) == set(ALL_PROJECT)
    assert first.title == f"{DEMO_PROJECT} - admin key"


def test_create_and_list_dataset_keys(stub: pb_grpc.ApiKeyServiceStub) -> None:
    created = stub.CreateDatasetApiKey(
        pb.CreateDatasetApiKeyRequest(
            dataset_hash=DEMO_DATASET,
            title="Full Access API Key",
            scopes=[pb.DATASET_SCOPE_READ, pb.DATASET_SCOPE_WRITE],
        ),
        timeout=10,
    )
    assert created.api_key
    assert created.key_hash
    assert created.dataset_hash == DEMO_DATASET
    assert set(created.scopes) == {pb.DATASET_SCOPE_READ, pb.DATASET_SCOPE_WRITE}
    assert created.fingerprint == fingerprint(created.api_key)

    listed = stub.ListDatasetApiKeys(pb.ListDatasetApiKeysRequest(dataset_hash=DEMO_DATASET), timeout=10)
    mine = [k for k in listed.api_keys if k.key_hash == created.key_hash]
    assert len(mine) == 1
    assert mine[0].api_key == created.api_key
    assert mine[0].title == "Full Access API Key"


def test_get_or_create_dataset_key_reuses_a_full_key(stub: pb_grpc.ApiKeyServiceStub) -> None:
    request = pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=DEMO_DATASET)
    first = stub.GetOrCreateDatasetApiKey(request, timeout=10)
    second = stub.GetOrCreateDatasetApiKey(request, timeout=10)
    assert first.api_key == second.api_key
    assert set(first.scopes) == {pb.DATASET_SCOPE_READ, pb.DATASET_SCOPE_WRITE}


@pytest.mark.parametrize(
    ("call", "resource"),
    [
        (
            lambda stub: stub.GetOrCreateProjectApiKey(
                pb.GetOrCreateProjectApiKeyRequest(project_hash=FRESH_PROJECT), timeout=30
            ),
            FRESH_PROJECT,
        ),
        (
            lambda stub: stub.GetOrCreateDatasetApiKey(
                pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=FRESH_DATASET), timeout=30
            ),
            FRESH_DATASET,
        ),
    ],
    ids=["project", "dataset"],
)
def test_simultaneous_get_or_create_mints_one_key(
    stub: pb_grpc.ApiKeyServiceStub, stack: Stack, call: object, resource: str
) -> None:
    admin = EmulatorAdmin(stack.emulator.address)
    assert admin.key_count(resource) == 0
    # Latency widens the window in which two calls could both miss the master key.
    admin.faults(latency_ms=50)
    start = threading.Barrier(8)
    keys: list[str] = []

    def worker() -> None:
        start.wait()
        keys.append(call(stub).api_key)  # type: ignore[operator]

    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        admin.clear_faults()
    assert len(keys) == 8
    assert len(set(keys)) == 1
    assert admin.key_count(resource) == 1


def test_trace_id_comes_back_and_goes_upstream(stub: pb_grpc.ApiKeyServiceStub) -> None:
    trace = "0123456789abcdef0123456789abcdef"
    _, call = stub.ListProjectApiKeys.with_call(
        pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT),
        metadata=(("x-cloud-trace-context", f"{trace}/7;o=1"),),
        timeout=10,
    )
    trailing = dict(call.trailing_metadata())
    echoed = trailing["x-cloud-trace-context"]
    assert isinstance(echoed, str)
    assert echoed.startswith(trace + "/")


def test_a_trace_id_is_made_when_the_caller_sends_none(stub: pb_grpc.ApiKeyServiceStub) -> None:
    _, first = stub.ListProjectApiKeys.with_call(
        pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=10
    )
    _, second = stub.ListProjectApiKeys.with_call(
        pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=10
    )
    one, two = (dict(c.trailing_metadata())["x-cloud-trace-context"] for c in (first, second))
    assert isinstance(one, str)
    assert len(one.split("/")[0]) == 32
    assert one != two


def test_unknown_project_is_not_found(stub: pb_grpc.ApiKeyServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListProjectApiKeys(
            pb.ListProjectApiKeysRequest(project_hash="99999999-9999-4999-8999-999999999999"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
