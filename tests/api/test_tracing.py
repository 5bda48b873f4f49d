"""Opt-in tracing: a real gateway exporting to a loopback OTLP collector, and nothing of it when off."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from encord_gateway.api.tracing import TracingConfig
from encord_gateway.config import ConfigError
from encord_gateway.dev.devstack import (
    DEMO_PROJECT,
    Service,
    cli_argv,
    start_gateway,
    start_service,
    write_caller_config,
    write_ssh_key,
)
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.otlp_collector import Collector, Received, otlp_collector, value_of
from support.recorder import Recorded, envelope, recording_server
from support.status import decode

SERVICE = "encord_gateway.v1.ApiKeyService"
TOKEN = "tracing-test-token-" + secrets.token_hex(8)
MINTED = "minted-key-" + secrets.token_hex(12)
LIST = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
CREATE = pb.CreateProjectApiKeyRequest(
    project_hash=DEMO_PROJECT, title="traced", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
)


def otel_env(endpoint: str, exporter: str = "otlp") -> dict[str, str]:
    # A short batch delay keeps the test quick; the shutdown at SIGTERM flushes whatever is left.
    return {
        "OTEL_TRACES_EXPORTER": exporter,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "gateway-under-test",
    }


def clean_env() -> dict[str, str]:
    """This process's environment without any OTEL_* setting of its own, nor a gateway's."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ENCORD_SSH", "ENCORD_GATEWAY"))
    }


def answer(query: dict[str, Any]) -> tuple[int, bytes]:
    """Encord as a recorder: each list's first attempt meets a 503, so it has two attempts."""
    if query["query_method"] == "POST":
        return 200, envelope(MINTED)
    answer.lists += 1  # type: ignore[attr-defined]
    if answer.lists % 2 == 1:  # type: ignore[attr-defined]
        return 503, b"busy"
    return 200, envelope([])


answer.lists = 0  # type: ignore[attr-defined]


@dataclass
class Run:
    """What one traced gateway did, once it has stopped (and so flushed every span)."""

    collector: Collector
    seen: list[Recorded]
    traces: dict[str, str]
    key_file: Path
    output: str
    trailers: dict[str, str] = field(default_factory=dict)
    refused_trace_id: str = ""

    def spans_of(self, trace_id: str) -> list[Received]:
        return [s for s in self.collector.spans() if s.trace_id == trace_id]


def caller(trace: tuple[str, str] | None, *, token: bool = True) -> tuple[tuple[str, str], ...]:
    metadata = (("authorization", f"Bearer {TOKEN}"),) if token else ()
    return (*metadata, trace) if trace else metadata


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("tracing")
    key_file, config = workdir / "id_ed25519", workdir / "gateway.toml"
    write_ssh_key(key_file)
    write_caller_config(config, TOKEN, name="tracer")
    traces = {name: secrets.token_hex(16) for name in ("list", "create", "google", "refused")}
    with otlp_collector() as (endpoint, collector), recording_server(answer) as (url, seen):
        gateway = start_gateway(
            url, key_file, "--config", str(config), env={**clean_env(), **otel_env(endpoint)}
        )
        result = Run(collector, seen, traces, key_file, "")
        try:
            with grpc.insecure_channel(gateway.address) as channel:
                stub = pb_grpc.ApiKeyServiceStub(channel)
                parent = f"00-{traces['list']}-{'ab' * 8}-01"
                _, call = stub.ListProjectApiKeys.with_call(
                    LIST, metadata=caller(("traceparent", parent)), timeout=20
                )
                result.trailers = {k: str(v) for k, v in call.trailing_metadata()}
                created = stub.CreateProjectApiKey(
                    CREATE,
                    metadata=caller(("traceparent", f"00-{traces['create']}-{'cd' * 8}-01")),
                    timeout=20,
                )
                assert created.api_key == MINTED
                google = ("x-cloud-trace-context", f"{traces['google']}/4242;o=1")
                stub.ListProjectApiKeys(LIST, metadata=caller(google), timeout=20)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.ListProjectApiKeys(
                        LIST,
                        metadata=caller(
                            ("traceparent", f"00-{traces['refused']}-{'ef' * 8}-01"), token=False
                        ),
                        timeout=20,
                    )
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                result.refused_trace_id = decode(refused.value).metadata["trace_id"]
                health = health_pb2_grpc.HealthStub(channel)
                for service in ("", SERVICE):
                    health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                list(
                    reflection.ServerReflectionInfo(
                        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                    )
                )
        finally:
            assert gateway.stop() == 0
        result.output = "".join(gateway.output)
        yield result


def server_spans(run: Run) -> list[Received]:
    return [s for s in run.collector.spans() if s.span.kind == s.span.SPAN_KIND_SERVER]


def test_each_call_has_one_server_span_whose_parent_is_the_callers(run: Run) -> None:
    (span,) = [s for s in run.spans_of(run.traces["list"]) if s.span.kind == s.span.SPAN_KIND_SERVER]
    assert span.parent_id == "ab" * 8
    assert span.span.name == f"/{SERVICE}/ListProjectApiKeys"
    assert span.service_name == "gateway-under-test"
    attributes = span.attributes
    assert attributes["rpc.service"] == SERVICE
    assert attributes["rpc.method"] == "ListProjectApiKeys"
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["encord_gateway.caller"] == "tracer"
    assert attributes["encord_gateway.resource_hash"] == DEMO_PROJECT
    # Four API calls, four server spans: health and reflection made none.
    assert len(server_spans(run)) == 4


def test_each_upstream_attempt_is_a_child_span_timed_within_the_call(run: Run) -> None:
    spans = run.spans_of(run.traces["list"])
    (server,) = [s for s in spans if s.span.kind == s.span.SPAN_KIND_SERVER]
    attempts = sorted(
        (s for s in spans if s.span.kind == s.span.SPAN_KIND_CLIENT),
        key=lambda s: s.span.start_time_unix_nano,
    )
    assert [a.attributes["encord_gateway.attempt"] for a in attempts] == [1, 2]
    assert [a.attributes.get("http.response.status_code") for a in attempts] == [503, 200]
    assert [a.attributes["encord_gateway.outcome"] for a in attempts] == ["UPSTREAM_HTTP_ERROR", "ok"]
    assert attempts[0].span.status.code == attempts[0].span.status.STATUS_CODE_ERROR
    for attempt in attempts:
        assert attempt.parent_id == server.span_id
        assert attempt.span.name == "encord projectapikey GET"
        assert attempt.attributes["http.request.method"] == "POST"
        assert attempt.attributes["encord.query_type"] == "projectapikey"
        assert server.span.start_time_unix_nano <= attempt.span.start_time_unix_nano
        assert attempt.span.start_time_unix_nano < attempt.span.end_time_unix_nano
        assert attempt.span.end_time_unix_nano <= server.span.end_time_unix_nano
    # The second attempt started after the first had ended (and the backoff passed).
    assert attempts[0].span.end_time_unix_nano <= attempts[1].span.start_time_unix_nano


def test_encord_receives_the_trace_id_in_x_cloud_trace_context(run: Run) -> None:
    sent = [r.header("X-Cloud-Trace-Context").split("/")[0] for r in run.seen]
    # The list's two attempts, the create's one, the Google-traced list's two; the refused call sent nothing.
    assert sent == [run.traces["list"]] * 2 + [run.traces["create"]] + [run.traces["google"]] * 2
    assert run.trailers["x-cloud-trace-context"].startswith(run.traces["list"] + "/")


def test_a_callers_x_cloud_trace_context_is_the_parent_when_it_sends_no_traceparent(run: Run) -> None:
    (span,) = [s for s in run.spans_of(run.traces["google"]) if s.span.kind == s.span.SPAN_KIND_SERVER]
    assert int(span.parent_id, 16) == 4242


def test_a_refused_call_is_traced_with_its_code_and_the_trace_id_it_was_told(run: Run) -> None:
    (span,) = run.spans_of(run.traces["refused"])
    assert run.refused_trace_id == run.traces["refused"]
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert span.attributes["encord_gateway.reason"] == "NO_CREDENTIALS"
    assert span.span.status.code == span.span.status.STATUS_CODE_ERROR


def test_log_lines_and_audit_records_carry_the_span_trace_id(run: Run) -> None:
    records = [json.loads(line) for line in run.output.splitlines() if line.startswith("{")]
    create = [r for r in records if r.get("method") == "CreateProjectApiKey"]
    assert create, run.output[-2000:]
    assert all(r.get("trace_id") == run.traces["create"] for r in create)


def test_no_span_holds_a_key_a_token_or_the_signing_key(run: Run) -> None:
    private = serialization.load_ssh_private_key(run.key_file.read_bytes(), password=None)
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    body = b"".join(run.key_file.read_bytes().splitlines()[1:-1])
    secrets_ = [MINTED.encode(), TOKEN.encode(), seed, seed.hex().encode(), body[:40], b"Bearer"]
    raw = run.collector.raw()
    assert raw  # something was exported at all
    for secret_bytes in secrets_:
        assert secret_bytes not in raw
    for received in run.collector.spans():
        values = [value_of(kv.value) for kv in received.span.attributes]
        values += [value_of(kv.value) for event in received.span.events for kv in event.attributes]
        values += [received.span.name, received.span.status.message]
        for value in values:
            for secret in (MINTED, TOKEN, seed.hex()):
                assert secret not in str(value)


# Off: no OpenTelemetry in the process, nothing exported ------------------------------------------------

REPORT_MODULES = """
import atexit, sys
def report():
    with open({path!r}, "w") as f:
        f.write("\\n".join(sorted(m for m in sys.modules if m.startswith("opentelemetry"))) or "-")
atexit.register(report)
from encord_gateway.cli import main
sys.exit(main())
"""


def served_with(argv: list[str], env: dict[str, str]) -> Service:
    return start_service("gateway", argv, env=env)


@pytest.mark.parametrize("exporter", [None, "none"], ids=["unset", "none"])
def test_off_imports_nothing_of_opentelemetry_and_exports_nothing(
    tmp_path: Path, exporter: str | None
) -> None:
    key_file, report = tmp_path / "id_ed25519", tmp_path / "modules.txt"
    write_ssh_key(key_file)
    with (
        otlp_collector() as (endpoint, collector),
        recording_server(lambda q: (200, envelope([]))) as (url, _),
    ):
        env = {**clean_env(), **otel_env(endpoint)}
        if exporter is None:
            del env["OTEL_TRACES_EXPORTER"]
        else:
            env["OTEL_TRACES_EXPORTER"] = exporter
        serve = cli_argv(
            "serve", "--listen", "127.0.0.1:0", "--encord-domain", url, "--ssh-key-file", str(key_file)
        )
        argv = [sys.executable, "-c", REPORT_MODULES.format(path=str(report)), *serve[3:]]
        gateway = served_with(argv, env)
        try:
            with grpc.insecure_channel(gateway.address) as channel:
                pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(
                    LIST, metadata=(("traceparent", f"00-{'1' * 32}-{'2' * 16}-01"),), timeout=20
                )
        finally:
            assert gateway.stop() == 0
        assert report.read_text() == "-"
        assert collector.requests == []


def test_asked_for_without_the_extra_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    key_file = tmp_path / "id_ed25519"
    write_ssh_key(key_file)
    # The extra, as good as uninstalled: None in sys.modules makes every opentelemetry import fail.
    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from encord_gateway.cli import main\nsys.exit(main())"
    )
    serve = cli_argv("serve", "--listen", "127.0.0.1:0", "--encord-domain", "http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-c", script, *serve[3:], "--ssh-key-file", str(key_file)],
        env={**clean_env(), "OTEL_TRACES_EXPORTER": "otlp"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "not installed" in lines[0]
    assert "encord-gateway[tracing]" in lines[0]
    assert "listening on" not in result.stdout


def test_serve_check_says_where_traces_go(tmp_path: Path) -> None:
    key_file = tmp_path / "id_ed25519"
    write_ssh_key(key_file)
    argv = cli_argv("serve", "--check", "--ssh-key-file", str(key_file))
    env = {**clean_env(), **otel_env("http://127.0.0.1:4317")}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "tracing: otlp to http://127.0.0.1:4317" in result.stdout
    env.pop("OTEL_TRACES_EXPORTER")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert "tracing: off" in result.stdout


# Which environment turns tracing on -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, None),
        ({"OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_TRACES_EXPORTER": " "}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, TracingConfig(exporters=("otlp",))),
        ({"OTEL_TRACES_EXPORTER": "console,otlp,console"}, TracingConfig(exporters=("console", "otlp"))),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317"},
            TracingConfig(exporters=("otlp",), endpoint="http://a:4317"),
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "OTLP",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            TracingConfig(exporters=("otlp",), endpoint="http://b:4317"),
        ),
    ],
)
def test_which_environment_turns_tracing_on(env: dict[str, str], want: TracingConfig | None) -> None:
    assert TracingConfig.from_env(env) == want


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "names zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "'http/protobuf'"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "'http/json'"),
    ],
)
def test_tracing_that_cannot_be_had_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TracingConfig.from_env(env)
