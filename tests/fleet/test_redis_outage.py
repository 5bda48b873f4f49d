"""Redis down: what needs it fails closed with STATE_UNAVAILABLE and sends nothing; the rest goes on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from encord_gateway_client.v1 import api_keys_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families
from support.fleet import Fleet, create_request, outcome, running_fleet, wait_for
from support.reliability import metrics_address, scrape

STATE = "encord_gateway.state"


def metric(fleet: Fleet, name: str, **labels: str) -> float | None:
    address = metrics_address(fleet.gateways[0])
    assert address is not None
    for family in text_string_to_metric_families(scrape(address)):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with running_fleet(tmp_path, replicas=1) as running:
        yield running


def test_a_redis_outage_fails_closed_and_the_gateway_recovers_by_itself(fleet: Fleet) -> None:
    project = fleet.fresh_project()
    stub = fleet.replica_stubs()[0]
    limited = fleet.replica_stubs(fleet.callers.limited)[0]
    stub.CreateProjectApiKey(create_request(project, "before", str(uuid.uuid4())), timeout=20)
    assert fleet.health(0, STATE) == "SERVING"
    assert metric(fleet, "encord_gateway_state_store_up", kind="redis") == 1
    assert metric(fleet, "encord_gateway_rate_limit_fallbacks_total") == 0
    fleet.redis.stop()

    sent = fleet.proxy.forwarded
    untouched = fleet.fresh_project()
    needs_the_store = {
        "create with a request id": outcome(
            lambda: stub.CreateProjectApiKey(create_request(project, "during", str(uuid.uuid4())), timeout=20)
        ),
        "get-or-create": outcome(
            lambda: stub.GetOrCreateProjectApiKey(
                pb.GetOrCreateProjectApiKeyRequest(project_hash=untouched), timeout=20
            )
        ),
    }
    assert needs_the_store == dict.fromkeys(needs_the_store, "UNAVAILABLE/STATE_UNAVAILABLE")
    assert fleet.proxy.forwarded == sent, "a call that needed the store reached Encord"
    assert fleet.stored_titles()["during"] == 0
    assert fleet.master_keys(untouched) == []

    goes_on = {
        "list": outcome(
            lambda: stub.ListProjectApiKeys(pb.ListProjectApiKeysRequest(project_hash=project), timeout=20)
        ),
        "create without a request id": outcome(
            lambda: stub.CreateProjectApiKey(create_request(project, "no id"), timeout=20)
        ),
        "a rate-limited caller's list": outcome(
            lambda: limited.ListProjectApiKeys(pb.ListProjectApiKeysRequest(project_hash=project), timeout=20)
        ),
    }
    assert goes_on == dict.fromkeys(goes_on, "OK")
    # Its bucket is this replica's own until Redis is back.
    assert "shared rate-limit buckets unavailable" in "".join(fleet.gateways[0].output)
    # An orchestrator must not pull every replica because Redis blinked; the store's own service and
    # the metrics say what is wrong.
    assert fleet.health(0) == "SERVING"
    assert fleet.health(0, "encord_gateway.v1.ApiKeyService") == "SERVING"
    assert fleet.health(0, STATE) == "NOT_SERVING"
    assert metric(fleet, "encord_gateway_state_store_up", kind="redis") == 0
    assert metric(fleet, "encord_gateway_rate_limit_fallbacks_total") == 1
    assert metric(fleet, "encord_gateway_request_id_store_errors_total") == 1

    fleet.redis.start()  # the same port and append-only file; the gateway is not restarted
    # The ping notices, before any call needs the store.
    assert wait_for(lambda: fleet.health(0, STATE) == "SERVING")
    assert metric(fleet, "encord_gateway_state_store_up", kind="redis") == 1
    again = str(uuid.uuid4())
    first = stub.CreateProjectApiKey(create_request(project, "after", again), timeout=20)
    replayed = stub.CreateProjectApiKey(create_request(project, "after", again), timeout=20)
    master = stub.GetOrCreateProjectApiKey(
        pb.GetOrCreateProjectApiKeyRequest(project_hash=untouched), timeout=20
    )
    assert replayed.api_key == first.api_key
    assert fleet.stored_titles()["after"] == 1
    assert fleet.master_keys(untouched) == [master.api_key]
    log = "".join(fleet.gateways[0].output)
    assert "STATE_UNAVAILABLE" in log
    assert fleet.gateways[0].process.poll() is None
