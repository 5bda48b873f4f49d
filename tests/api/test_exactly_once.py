"""Creates with a request_id happen once: replays, reuse, concurrency and lost answers, in real processes."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from encord_gateway_client import GatewayClient
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.lossy import PROJECT, LossyStack, lossy_stack
from support.reliability import reason_of, retry_delay, stored_keys

READ = [pb.API_KEY_SCOPE_LABEL_READ]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LossyStack]:
    state_url = f"sqlite:///{tmp_path / 'gateway-state.db'}"
    with lossy_stack(tmp_path, "--state-url", state_url, "--reconcile-after", "0.2") as running:
        yield running


def create(
    stub: pb_grpc.ApiKeyServiceStub, title: str, request_id: str
) -> tuple[pb.ProjectApiKey, dict[str, str | bytes]]:
    answer, call = stub.CreateProjectApiKey.with_call(
        pb.CreateProjectApiKeyRequest(project_hash=PROJECT, title=title, scopes=READ, request_id=request_id),
        timeout=20,
    )
    return answer, dict(call.trailing_metadata() or ())


def test_a_retry_with_the_same_id_replays_the_same_key(stack: LossyStack) -> None:
    request_id = str(uuid.uuid4())
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        first, first_trailers = create(stub, "replayed key", request_id)
        second, second_trailers = create(stub, "replayed key", request_id)
    assert second.fingerprint == first.fingerprint
    assert second.api_key == first.api_key
    assert "encord-gateway-replayed" not in first_trailers
    assert second_trailers.get("encord-gateway-replayed") == "true"
    assert stack.titles()["replayed key"] == 1
    lines = [json.loads(line) for line in (stack.workdir / "audit.jsonl").read_text().splitlines()]
    creates = [line for line in lines if line["method"] == "CreateProjectApiKey"]
    assert [(c["created"], c["replayed"]) for c in creates] == [(True, False), (False, True)]
    assert {c["fingerprint"] for c in creates} == {first.fingerprint}


def test_the_same_id_with_another_request_is_refused_and_nothing_is_sent(stack: LossyStack) -> None:
    request_id = str(uuid.uuid4())
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        create(stub, "first title", request_id)
        sent = stack.proxy.forwarded
        with pytest.raises(grpc.RpcError) as refused:
            create(stub, "another title", request_id)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(refused.value) == "REQUEST_ID_REUSED"
    assert stack.proxy.forwarded == sent
    assert stack.titles()["another title"] == 0


@pytest.mark.parametrize(
    "bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", str(uuid.uuid4()).upper()]
)
def test_a_malformed_request_id_is_invalid_argument(stack: LossyStack, bad: str) -> None:
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            create(stub, "never made", bad)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in (refused.value.details() or "")
    assert stack.titles()["never made"] == 0


def test_eight_concurrent_calls_with_one_id_make_one_key(stack: LossyStack) -> None:
    request_id = str(uuid.uuid4())
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)

        def one(_: int) -> str:
            try:
                return create(stub, "contended", request_id)[0].fingerprint
            except grpc.RpcError as error:
                return f"{error.code().name}/{reason_of(error)}"

        with futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
    refused = [a for a in answers if "/" in a]
    assert set(refused) <= {"ABORTED/REQUEST_IN_PROGRESS"}
    assert len(set(answers) - set(refused)) == 1
    assert stack.titles()["contended"] == 1


def retry_until_answered(stub: pb_grpc.ApiKeyServiceStub, title: str, request_id: str) -> pb.ProjectApiKey:
    """What a well-behaved client does: retry with the same id, waiting as RetryInfo says."""
    seen = []
    for _ in range(40):
        try:
            return create(stub, title, request_id)[0]
        except grpc.RpcError as error:
            seen.append(error.code())
            assert set(seen) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}, seen
            time.sleep(retry_delay(error))
    raise AssertionError(f"{title} was never answered: {seen}")


def test_lost_answers_retried_with_their_ids_make_exactly_one_key_each(stack: LossyStack) -> None:
    stack.proxy.faults.drop_after = 0.3
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        titles = [f"lossy {n}" for n in range(40)]
        with futures.ThreadPoolExecutor(8) as pool:
            keys = list(pool.map(lambda t: retry_until_answered(stub, t, str(uuid.uuid4())), titles))
    stack.proxy.faults.drop_after = 0.0
    assert stack.proxy.injected["drop_after"] > 0
    stored = stored_keys(stack.state)
    counts = Counter(title for _, title in stored.values())
    assert all(counts[t] == 1 for t in titles), {t: counts[t] for t in titles if counts[t] != 1}
    # Each caller got its own key, the one Encord stored under its title.
    for title, key in zip(titles, keys, strict=True):
        assert stored[key.api_key][1] == title


def test_a_lost_answer_is_reconciled_after_a_gateway_restart(stack: LossyStack) -> None:
    request_id = str(uuid.uuid4())
    stack.proxy.faults.only_bodies_with = b'"query_method": "POST"'
    stack.proxy.faults.drop_after = 1.0
    with grpc.insecure_channel(stack.gateway.address) as channel, pytest.raises(grpc.RpcError) as lost:
        create(pb_grpc.ApiKeyServiceStub(channel), "across a restart", request_id)
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    stack.proxy.faults.drop_after = 0.0
    assert stack.titles()["across a restart"] == 1  # Encord made it; the answer was lost
    stack.restart_gateway()
    with grpc.insecure_channel(stack.gateway.address) as channel:
        key = retry_until_answered(pb_grpc.ApiKeyServiceStub(channel), "across a restart", request_id)
    assert stack.titles()["across a restart"] == 1
    assert stored_keys(stack.state)[key.api_key][1] == "across a restart"


def test_the_python_client_retries_lost_creates_under_one_id_to_exactly_one_key(stack: LossyStack) -> None:
    stack.proxy.faults.only_bodies_with = b'"query_method": "POST"'
    stack.proxy.faults.drop_after = 0.5
    titles = [f"client {n}" for n in range(10)]
    with GatewayClient(grpc.insecure_channel(stack.gateway.address), create_attempts=12) as client:
        # No request_id given: the client makes one per logical create and keeps it across retries.
        keys = [client.create_project_api_key(PROJECT, title, ["label.read"], timeout=30) for title in titles]
    assert stack.proxy.injected["drop_after"] > 0
    stored = stored_keys(stack.state)
    assert Counter(title for _, title in stored.values() if title in titles) == Counter(titles)
    assert [stored[key.api_key][1] for key in keys] == titles


def test_two_gateways_sharing_one_sqlite_store_make_one_key_for_one_id(stack: LossyStack) -> None:
    second = stack.another_gateway()
    request_id = str(uuid.uuid4())
    try:
        with (
            grpc.insecure_channel(stack.gateway.address) as first_channel,
            grpc.insecure_channel(second.address) as second_channel,
        ):
            stubs = [pb_grpc.ApiKeyServiceStub(first_channel), pb_grpc.ApiKeyServiceStub(second_channel)]
            with futures.ThreadPoolExecutor(8) as pool:
                keys = list(
                    pool.map(lambda n: retry_until_answered(stubs[n % 2], "shared", request_id), range(8))
                )
    finally:
        second.stop()
    assert len({key.api_key for key in keys}) == 1
    assert stack.titles()["shared"] == 1


def test_two_gateways_sharing_one_sqlite_store_mint_one_master_key(stack: LossyStack) -> None:
    second = stack.another_gateway()
    try:
        with (
            grpc.insecure_channel(stack.gateway.address) as first_channel,
            grpc.insecure_channel(second.address) as second_channel,
        ):
            stubs = [pb_grpc.ApiKeyServiceStub(first_channel), pb_grpc.ApiKeyServiceStub(second_channel)]
            request = pb.GetOrCreateProjectApiKeyRequest(project_hash=PROJECT)
            with futures.ThreadPoolExecutor(32) as pool:
                keys = list(
                    pool.map(lambda n: stubs[n % 2].GetOrCreateProjectApiKey(request, timeout=30), range(32))
                )
    finally:
        second.stop()
    assert len({key.api_key for key in keys}) == 1
    assert stack.titles()[f"{PROJECT} - admin key"] == 1


@pytest.mark.slow
def test_500_creates_with_30_percent_of_answers_lost_make_500_keys(stack: LossyStack) -> None:
    stack.proxy.faults.only_bodies_with = b'"query_method": "POST"'
    stack.proxy.faults.drop_after = 0.3
    titles = [f"bulk {n}" for n in range(500)]
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        with futures.ThreadPoolExecutor(16) as pool:
            keys = list(pool.map(lambda t: retry_until_answered(stub, t, str(uuid.uuid4())), titles))
    stack.proxy.faults.drop_after = 0.0
    lost = stack.proxy.injected["drop_after"]
    assert lost >= 100, lost  # about 30 % of at least 500 creates sent
    stored = stored_keys(stack.state)
    counts = Counter(title for _, title in stored.values() if title.startswith("bulk "))
    assert counts == Counter(titles), {t: n for t, n in counts.items() if n != 1}
    assert [stored[key.api_key][1] for key in keys] == titles
    print(f"500 creates, {lost} answers lost, {len(counts)} keys stored, each once")
