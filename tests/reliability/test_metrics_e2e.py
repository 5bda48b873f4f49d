"""/metrics end to end: a real gateway started with --metrics-listen 127.0.0.1:0, scraped as it works."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from encord_gateway_client.v1 import api_keys_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families
from support.reliability import (
    Ledger,
    ReliabilityStack,
    invoke,
    metrics_address,
    reliability_stack,
    report,
    scrape,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MISSING = "99999999-9999-4999-8999-999999999999"


def samples(page: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def get(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def stack(ledger: Ledger) -> Iterator[ReliabilityStack]:
    with reliability_stack(ledger, "metrics-e2e") as running:
        yield running


def test_the_gateway_says_where_its_metrics_are(stack: ReliabilityStack) -> None:
    # Printed before `listening on`, so it is already in the output when the gateway is up.
    address = metrics_address(stack.gateway)
    assert address is not None, (
        "no `metrics on HOST:PORT` line: --metrics-listen is not wired into serve.py "
        "(see README.md, 'Observing the gateway')"
    )
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) > 0
    assert address != stack.gateway.address


def test_counters_move_as_calls_are_made(stack: ReliabilityStack, ledger: Ledger) -> None:
    address = metrics_address(stack.gateway)
    assert address is not None, (
        "--metrics-listen is not wired (see test_the_gateway_says_where_its_metrics_are)"
    )
    project = stack.projects[0]
    before = samples(scrape(address))
    with stack.channel() as channel:
        stub = stack.stub(channel)
        create = pb.CreateProjectApiKeyRequest(
            project_hash=project, title="metrics-e2e-title-7f3a", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        outcomes = [
            invoke("create", stub.CreateProjectApiKey, create, timeout=20),
            invoke("create", stub.CreateProjectApiKey, create, timeout=20),
            invoke(
                "list",
                stub.ListProjectApiKeys,
                pb.ListProjectApiKeysRequest(project_hash=project),
                timeout=20,
            ),
            invoke(
                "invalid",
                stub.ListProjectApiKeys,
                pb.ListProjectApiKeysRequest(project_hash="nope"),
                timeout=20,
            ),
            invoke(
                "missing",
                stub.ListProjectApiKeys,
                pb.ListProjectApiKeysRequest(project_hash=MISSING),
                timeout=20,
            ),
        ]
        stack.faults(error_rate=1.0)
        try:
            outcomes.append(
                invoke(
                    "down",
                    stub.ListDatasetApiKeys,
                    pb.ListDatasetApiKeysRequest(dataset_hash=stack.datasets[0]),
                    timeout=20,
                )
            )
        finally:
            stack.clear_faults()
    ledger.saw(outcomes)
    assert [o.code for o in outcomes] == ["OK", "OK", "OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE"]
    page = scrape(address)
    after = samples(page)

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    calls = "encord_gateway_calls_total"
    assert delta(calls, method="CreateProjectApiKey", code="OK") == 2
    assert delta(calls, method="ListProjectApiKeys", code="OK") == 1
    assert delta(calls, method="ListProjectApiKeys", code="INVALID_ARGUMENT") == 1
    assert delta(calls, method="ListProjectApiKeys", code="NOT_FOUND") == 1
    assert delta(calls, method="ListDatasetApiKeys", code="UNAVAILABLE") == 1
    errors = "encord_gateway_call_errors_total"
    assert delta(errors, method="ListProjectApiKeys", code="INVALID_ARGUMENT", reason="INVALID_REQUEST") == 1
    assert delta(errors, method="ListDatasetApiKeys", code="UNAVAILABLE", reason="UPSTREAM_HTTP_ERROR") == 1
    attempts = "encord_gateway_upstream_attempts_total"
    assert (
        delta(attempts, query_type="projectapikey", query_method="POST", http_status="200", outcome="ok") == 2
    )
    assert (
        delta(
            attempts,
            query_type="projectapikey",
            query_method="GET",
            http_status="200",
            outcome="RESOURCE_NOT_FOUND_ERROR",
        )
        == 1
    )
    # The failing list was tried --upstream-retries (4) times, each a 503.
    assert (
        delta(
            attempts,
            query_type="datasetapikey",
            query_method="GET",
            http_status="503",
            outcome="UPSTREAM_HTTP_ERROR",
        )
        == 4
    )
    assert delta("encord_gateway_call_duration_seconds_count", method="CreateProjectApiKey") == 2
    assert get(after, "encord_gateway_calls_in_flight") == 0
    assert any(name == "encord_gateway_build_info" and value == 1 for (name, _), value in after.items())
    assert get(after, "process_open_fds") > 0
    assert get(after, "process_resident_memory_bytes") > 0
    report("metrics-e2e", families=len({name for name, _ in after}), page_bytes=len(page))
    # Never a key, a hash or a title in a label.
    for secret in [o.response.api_key for o in outcomes if o.ok and o.kind == "create"] + [
        project,
        "metrics-e2e-title-7f3a",
    ]:
        assert secret not in page.replace("encord_gateway_", ""), secret
