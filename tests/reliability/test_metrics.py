"""GatewayMetrics on its own: each hook against a private registry, label bounds, the /metrics server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
import requests
from encord_gateway import errors
from encord_gateway.access import auth
from encord_gateway.api.metrics import KNOWN_REASONS, OTHER, GatewayMetrics, bounded_reason
from encord_gateway.config import ConfigError
from encord_gateway.context import CallRecord, Deadline
from encord_gateway.upstream.client import UpstreamCall
from prometheus_client import CollectorRegistry

SECRET_LOOKING = "0-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-xyz"
HASH = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(CollectorRegistry(), process=False)


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def record(
    method: str, code: grpc.StatusCode = grpc.StatusCode.OK, reason: str = "", age_s: float = 0.0
) -> CallRecord:
    return CallRecord(
        method=method,
        trace_id="t",
        started=time.monotonic() - age_s,
        resource_hash=HASH,
        code=code,
        reason=reason,
    )


def upstream(
    query_type: str = "projectapikey", query_method: str = "GET", http_status: int = 0
) -> UpstreamCall:
    call = UpstreamCall(query_type, query_method, HASH, {"title": SECRET_LOOKING}, Deadline.after(5), "t")
    call.outcome.http_status = http_status
    return call


# Calls --------------------------------------------------------------------------------------------


def test_finished_calls_are_counted_by_method_and_code(metrics: GatewayMetrics) -> None:
    metrics.call_finished(record("CreateProjectApiKey", age_s=0.3))
    metrics.call_finished(record("CreateProjectApiKey"))
    metrics.call_finished(record("ListDatasetApiKeys", grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND_ERROR"))
    assert value(metrics, "encord_gateway_calls_total", method="CreateProjectApiKey", code="OK") == 2
    assert value(metrics, "encord_gateway_calls_total", method="ListDatasetApiKeys", code="NOT_FOUND") == 1
    assert (
        value(
            metrics,
            "encord_gateway_call_errors_total",
            method="ListDatasetApiKeys",
            code="NOT_FOUND",
            reason="RESOURCE_NOT_FOUND_ERROR",
        )
        == 1
    )
    # Successes are not errors.
    assert (
        value(metrics, "encord_gateway_call_errors_total", method="CreateProjectApiKey", code="OK", reason="")
        == 0
    )
    assert value(metrics, "encord_gateway_call_duration_seconds_count", method="CreateProjectApiKey") == 2
    assert value(metrics, "encord_gateway_call_duration_seconds_sum", method="CreateProjectApiKey") >= 0.3
    assert (
        value(metrics, "encord_gateway_call_duration_seconds_bucket", method="CreateProjectApiKey", le="0.1")
        == 1
    )


@pytest.mark.parametrize(
    ("method", "reason", "want_method", "want_reason"),
    [
        ("ListProjectApiKeys", "UPSTREAM_TIMEOUT", "ListProjectApiKeys", "UPSTREAM_TIMEOUT"),
        ("ListProjectApiKeys", "SOME_NEW_ENCORD_CODE", "ListProjectApiKeys", "OTHER_ENCORD_CODE"),
        (SECRET_LOOKING, SECRET_LOOKING, OTHER, "OTHER_ENCORD_CODE"),
        (HASH, HASH, OTHER, "OTHER_ENCORD_CODE"),
    ],
    ids=["known", "unknown-encord-code", "key-like-text", "resource-hash"],
)
def test_labels_come_from_closed_sets(
    metrics: GatewayMetrics, method: str, reason: str, want_method: str, want_reason: str
) -> None:
    metrics.call_finished(record(method, grpc.StatusCode.UNKNOWN, reason))
    assert (
        value(
            metrics,
            "encord_gateway_call_errors_total",
            method=want_method,
            code="UNKNOWN",
            reason=want_reason,
        )
        == 1
    )
    page = metrics.render().decode()
    assert SECRET_LOOKING not in page
    assert HASH not in page


def _error_classes(
    cls: type[errors.GatewayError] = errors.GatewayError,
) -> Iterator[type[errors.GatewayError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _error_classes(sub)


# Collected from the tree, not written out: a class added tomorrow is a case tomorrow.
DECLARED = sorted({cls.reason for cls in _error_classes() if "reason" in cls.__dict__})


def test_the_tree_declares_reasons_and_the_interceptor_uses_them() -> None:
    assert len(DECLARED) >= 20, DECLARED  # the tree was walked, not an empty list compared with itself
    assert set(DECLARED) == KNOWN_REASONS
    # What the auth interceptor refuses with are classes of the tree too.
    assert set(auth._TOLD) <= KNOWN_REASONS
    assert bounded_reason("SOME_NEW_ENCORD_CODE") == "OTHER_ENCORD_CODE"
    assert bounded_reason("") == ""


@pytest.mark.parametrize("reason", DECLARED)
def test_every_reason_the_gateway_answers_with_is_its_own_label(metrics: GatewayMetrics, reason: str) -> None:
    code = errors.REASONS[reason].grpc_code
    metrics.call_finished(record("CreateProjectApiKey", code, reason))
    labels = {"method": "CreateProjectApiKey", "code": code.name, "reason": reason}
    assert value(metrics, "encord_gateway_call_errors_total", **labels) == 1
    assert (
        value(metrics, "encord_gateway_call_errors_total", **{**labels, "reason": "OTHER_ENCORD_CODE"}) == 0
    )


def test_rate_limited_calls_are_counted_from_the_record(metrics: GatewayMetrics) -> None:
    metrics.call_finished(record("CreateProjectApiKey", grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"))
    # Encord's own 429 is RESOURCE_EXHAUSTED too, but not the caller's rate limit.
    metrics.call_finished(
        record("CreateProjectApiKey", grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED")
    )
    assert value(metrics, "encord_gateway_rate_limited_calls_total", method="CreateProjectApiKey") == 1


# Upstream attempts --------------------------------------------------------------------------------


def test_upstream_attempts_by_query_status_and_outcome(metrics: GatewayMetrics) -> None:
    metrics.upstream_attempt(upstream(http_status=200), 0.02, "ok")
    metrics.upstream_attempt(upstream(http_status=503), 0.01, "UPSTREAM_HTTP_ERROR")
    # The status of an earlier attempt lingers in the CallOutcome; a dropped connection got no answer.
    metrics.upstream_attempt(upstream(http_status=503), 0.01, "UPSTREAM_CONNECTION_ERROR")
    metrics.upstream_attempt(upstream("datasetapikey", "POST", 200), 0.05, "RESOURCE_EXISTS_ERROR")
    metrics.upstream_attempt(upstream("nonsense", "PATCH", 999), 0.05, SECRET_LOOKING)
    attempts = "encord_gateway_upstream_attempts_total"
    assert (
        value(
            metrics, attempts, query_type="projectapikey", query_method="GET", http_status="200", outcome="ok"
        )
        == 1
    )
    assert (
        value(
            metrics,
            attempts,
            query_type="projectapikey",
            query_method="GET",
            http_status="503",
            outcome="UPSTREAM_HTTP_ERROR",
        )
        == 1
    )
    assert (
        value(
            metrics,
            attempts,
            query_type="projectapikey",
            query_method="GET",
            http_status="none",
            outcome="UPSTREAM_CONNECTION_ERROR",
        )
        == 1
    )
    assert (
        value(
            metrics,
            attempts,
            query_type="datasetapikey",
            query_method="POST",
            http_status="200",
            outcome="RESOURCE_EXISTS_ERROR",
        )
        == 1
    )
    assert (
        value(
            metrics,
            attempts,
            query_type=OTHER,
            query_method=OTHER,
            http_status="none",
            outcome="OTHER_ENCORD_CODE",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "encord_gateway_upstream_attempt_duration_seconds_count",
            query_type="projectapikey",
            query_method="GET",
        )
        == 3
    )
    assert SECRET_LOOKING not in metrics.render().decode()


# In flight ----------------------------------------------------------------------------------------


def test_in_flight_context_manager(metrics: GatewayMetrics) -> None:
    with metrics.in_flight(), metrics.in_flight():
        assert value(metrics, "encord_gateway_calls_in_flight") == 2
    with pytest.raises(RuntimeError), metrics.in_flight():
        raise RuntimeError("the handler failed")
    assert value(metrics, "encord_gateway_calls_in_flight") == 0


def test_interceptor_counts_api_calls_in_flight_through_a_real_server(metrics: GatewayMetrics) -> None:
    entered, release = threading.Semaphore(0), threading.Event()

    def behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
        entered.release()
        release.wait(10)
        return request

    handler = grpc.unary_unary_rpc_method_handler(behaviour)
    generic = grpc.method_handlers_generic_handler(
        "encord_gateway.v1.ApiKeyService", {"ListProjectApiKeys": handler}
    )
    other = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[metrics.interceptor()])
    server.add_generic_rpc_handlers((generic, other))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            # No serializers: the handlers here take and give raw bytes.
            api = channel.unary_unary(
                "/encord_gateway.v1.ApiKeyService/ListProjectApiKeys",
                request_serializer=None,
                response_deserializer=None,
            )
            health = channel.unary_unary(
                "/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None
            )
            calls = [
                api.future(b"a", timeout=20),
                api.future(b"b", timeout=20),
                health.future(b"c", timeout=20),
            ]
            for _ in calls:
                assert entered.acquire(timeout=10)
            # Two API calls are parked in their handlers; the health check is not an API call.
            assert value(metrics, "encord_gateway_calls_in_flight") == 2
            release.set()
            assert [c.result() for c in calls] == [b"a", b"b", b"c"]
    finally:
        release.set()
        server.stop(None)
    assert value(metrics, "encord_gateway_calls_in_flight") == 0


# Exposition ---------------------------------------------------------------------------------------


def test_serve_on_port_0_says_where_and_answers_scrapes() -> None:
    metrics = GatewayMetrics()  # its own private registry, with the process collectors
    try:
        address = metrics.serve("127.0.0.1:0")
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        metrics.call_finished(record("ListProjectApiKeys"))
        page = requests.get(f"http://{address}/metrics", timeout=10).text
        with pytest.raises(RuntimeError):
            metrics.serve("127.0.0.1:0")
    finally:
        metrics.close()
    assert 'encord_gateway_calls_total{code="OK",method="ListProjectApiKeys"} 1.0' in page
    assert "encord_gateway_build_info{" in page
    for family in (
        "process_resident_memory_bytes",
        "process_open_fds",
        "encord_gateway_threads",
        "python_info",
    ):
        assert f"\n{family}" in page, family
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}/metrics", timeout=5)
    metrics.close()  # twice is harmless


def test_two_instances_do_not_collide() -> None:
    one, two = GatewayMetrics(), GatewayMetrics()
    one.call_finished(record("ListProjectApiKeys"))
    assert (
        two.registry.get_sample_value(
            "encord_gateway_calls_total", {"method": "ListProjectApiKeys", "code": "OK"}
        )
        is None
    )


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "127.0.0.1:"])
def test_a_bad_address_is_a_config_error(address: str) -> None:
    with pytest.raises(ConfigError):
        GatewayMetrics(process=False).serve(address)


def test_a_taken_port_is_an_os_error() -> None:
    first, second = GatewayMetrics(process=False), GatewayMetrics(process=False)
    try:
        address = first.serve("127.0.0.1:0")
        with pytest.raises(OSError, match="in use"):
            second.serve(address)
    finally:
        first.close()
        second.close()
