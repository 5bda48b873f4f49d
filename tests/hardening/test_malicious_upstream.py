"""Every RPC against every hostile upstream answer: never INTERNAL or UNKNOWN, a truthful audit, bounded cost.

A gateway process signs its calls to a malicious stand-in for Encord (malicious_upstream.py) that answers
each call in the mode the test chose for its trace id. For every mode and each of the six ApiKeyService
methods: the caller gets the status the mode allows (UNAVAILABLE / UPSTREAM_BAD_RESPONSE for an answer
that is not Encord's), the call has exactly one audit line and it tells the truth (its outcome and
reason, no key returned, no fingerprint), no output line is unbounded, nothing key-shaped from an error
is echoed, and the gateway stays up. A second gateway's resident memory is measured while it is sent
answers built to cost the most memory per byte, as a ratio to its own resident memory before.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import Service, start_gateway, write_caller_config, write_ssh_key
from encord_gateway.redaction import fingerprint
from encord_gateway.upstream.operations import MAX_KEYS
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hardening.malicious_upstream import KEY_AS_ERROR, MODES, MaliciousUpstream, Mode, modes_by_name
from support.status import decode

TOKEN = secrets.token_urlsafe(24)
PROJECT = str(uuid.uuid4())
DATASET = str(uuid.uuid4())
# A call that meets a slow answer is given this long; every other call far longer than it needs.
SLOW_TIMEOUT_S = 1.5
TIMEOUT_S = 20.0
# No line the gateway writes (its log or its audit trail) may be longer than this.
MAX_LINE_BYTES = 16 * 1024
# An audit line may be longer by the fingerprints a list reveals ("0123456789abcdef", 19 bytes each).
MAX_AUDIT_LINE_BYTES = MAX_LINE_BYTES + MAX_KEYS * 19
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def _rpcs(stub: pb_grpc.ApiKeyServiceStub) -> dict[str, tuple[Callable[..., Any], Any]]:
    return {
        "CreateProjectApiKey": (
            stub.CreateProjectApiKey,
            pb.CreateProjectApiKeyRequest(
                project_hash=PROJECT, title="t", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
            ),
        ),
        "ListProjectApiKeys": (stub.ListProjectApiKeys, pb.ListProjectApiKeysRequest(project_hash=PROJECT)),
        "GetOrCreateProjectApiKey": (
            stub.GetOrCreateProjectApiKey,
            pb.GetOrCreateProjectApiKeyRequest(project_hash=PROJECT),
        ),
        "CreateDatasetApiKey": (
            stub.CreateDatasetApiKey,
            pb.CreateDatasetApiKeyRequest(dataset_hash=DATASET, title="t", scopes=[pb.DATASET_SCOPE_READ]),
        ),
        "ListDatasetApiKeys": (stub.ListDatasetApiKeys, pb.ListDatasetApiKeysRequest(dataset_hash=DATASET)),
        "GetOrCreateDatasetApiKey": (
            stub.GetOrCreateDatasetApiKey,
            pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=DATASET),
        ),
    }


@dataclass
class Gateway:
    service: Service
    audit_log: Path
    channel: grpc.Channel

    @property
    def stub(self) -> pb_grpc.ApiKeyServiceStub:
        return pb_grpc.ApiKeyServiceStub(self.channel)

    def audit_lines(self, trace_id: str, *, wait_s: float = 5.0) -> list[dict[str, Any]]:
        """The audit lines of one call; they are written as the call ends, so wait a moment for one."""
        until = time.monotonic() + wait_s
        while True:
            lines = [json.loads(line) for line in self.audit_log.read_text().splitlines() if trace_id in line]
            if lines or time.monotonic() > until:
                return [line for line in lines if line["trace_id"] == trace_id]
            time.sleep(0.05)

    def alive(self) -> bool:
        if self.service.process.poll() is not None:
            return False
        answer = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@contextlib.contextmanager
def running_gateway(workdir: Path, upstream: MaliciousUpstream, *args: str) -> Iterator[Gateway]:
    """A gateway with one caller (allowed everything, reveal_keys) and an audit log, before `upstream`."""
    key_file = workdir / "gateway_ed25519"
    write_ssh_key(key_file)
    config = workdir / "gateway.toml"
    write_caller_config(config, TOKEN)
    audit = workdir / "audit.jsonl"
    service = start_gateway(
        f"http://{upstream.address}",
        key_file,
        "--config",
        str(config),
        "--audit-log",
        str(audit),
        *args,
        log_path=workdir / "gateway.log",
    )
    try:
        with grpc.insecure_channel(service.address) as channel:
            yield Gateway(service, audit, channel)
    finally:
        service.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[MaliciousUpstream]:
    server = MaliciousUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: MaliciousUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("malicious"), upstream) as running:
        yield running


@dataclass
class Outcome:
    method: str
    trace_id: str
    code: grpc.StatusCode
    reason: str = ""
    message: str = ""
    metadata: dict[str, str] | None = None
    answer: Any = None


def call(gateway: Gateway, upstream: MaliciousUpstream, method: str, mode: Mode | None) -> Outcome:
    trace_id = secrets.token_hex(16)
    if mode is not None:
        upstream.modes[trace_id] = mode
    rpc, request = _rpcs(gateway.stub)[method]
    metadata = (("authorization", f"Bearer {TOKEN}"), ("x-cloud-trace-context", f"{trace_id}/1;o=1"))
    timeout = SLOW_TIMEOUT_S if mode is not None and mode.slow else TIMEOUT_S
    try:
        answer = rpc(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not exc.trailing_metadata():
            return Outcome(method, trace_id, code)  # the caller's own deadline: no status from the gateway
        error = decode(exc)
        return Outcome(method, trace_id, code, error.reason, error.message, error.metadata)
    return Outcome(method, trace_id, grpc.StatusCode.OK, answer=answer)


def call_every_rpc(gateway: Gateway, upstream: MaliciousUpstream, mode: Mode | None) -> list[Outcome]:
    methods = list(_rpcs(gateway.stub))
    with ThreadPoolExecutor(len(methods)) as pool:
        return list(pool.map(lambda method: call(gateway, upstream, method, mode), methods))


def returned_keys(outcome: Outcome) -> list[str]:
    answer = outcome.answer
    if answer is None:
        return []
    return [k.api_key for k in answer.api_keys] if hasattr(answer, "api_keys") else [answer.api_key]


def check(gateway: Gateway, upstream: MaliciousUpstream, mode: Mode, outcome: Outcome) -> list[str]:
    """What is wrong with one call's answer and its audit line; empty when nothing is."""
    where = f"{mode.name} / {outcome.method}"
    problems = []
    hostile = upstream.hostile_for(outcome.trace_id)
    if outcome.code in NEVER:
        problems.append(f"{where}: {outcome.code.name} {outcome.reason} {outcome.message[:200]!r}")
    elif any(hostile):
        if outcome.code.name not in mode.expect.codes:
            problems.append(
                f"{where}: {outcome.code.name} {outcome.reason}, not one of {sorted(mode.expect.codes)}"
            )
        elif mode.expect.reasons is not None and outcome.reason and outcome.reason not in mode.expect.reasons:
            problems.append(f"{where}: reason {outcome.reason}, not one of {sorted(mode.expect.reasons)}")
    elif outcome.code != grpc.StatusCode.OK:
        problems.append(f"{where}: {outcome.code.name} {outcome.reason} though every answer was honest")
    if KEY_AS_ERROR in f"{outcome.message} {outcome.metadata}":
        problems.append(f"{where}: a key-shaped string from an error envelope reached the caller")
    lines = gateway.audit_lines(outcome.trace_id)
    if len(lines) != 1:
        return [*problems, f"{where}: {len(lines)} audit lines, not one"]
    (line,) = lines
    if len(json.dumps(line)) > MAX_AUDIT_LINE_BYTES:
        problems.append(f"{where}: an audit line of {len(json.dumps(line))} bytes")
    # Without a reason the caller's own deadline ended the call first, and the gateway may say either.
    answered = (outcome.code.name, outcome.reason)
    if (outcome.reason or outcome.code == grpc.StatusCode.OK) and (
        line["outcome"],
        line["reason"],
    ) != answered:
        problems.append(f"{where}: audited {line['outcome']} {line['reason']}, answered {answered}")
    if outcome.code != grpc.StatusCode.OK:
        if line["key_returned"] or line["fingerprint"] or line["fingerprints"]:
            problems.append(f"{where}: the audit says a key was returned by a call that failed")
    elif "Create" in outcome.method and line["fingerprint"] != fingerprint(returned_keys(outcome)[0]):
        problems.append(f"{where}: the audit names another key than the one returned")
    return problems


@pytest.mark.parametrize("mode", MODES, ids=[mode.name for mode in MODES])
def test_no_hostile_answer_becomes_internal_or_unknown(
    gateway: Gateway, upstream: MaliciousUpstream, mode: Mode
) -> None:
    output_before = len(gateway.service.output)
    outcomes = call_every_rpc(gateway, upstream, mode)
    assert any(any(upstream.hostile_for(o.trace_id)) for o in outcomes), "the mode answered nothing hostile"
    problems = [problem for outcome in outcomes for problem in check(gateway, upstream, mode, outcome)]
    assert gateway.alive(), f"the gateway stopped serving after {mode.name}"
    for line in gateway.service.output[output_before:]:
        if len(line.encode()) > MAX_LINE_BYTES:
            problems.append(f"{mode.name}: a log line of {len(line.encode())} bytes: {line[:200]!r}")
        if KEY_AS_ERROR in line:
            problems.append(f"{mode.name}: a key-shaped string from an error envelope reached the log")
    assert not problems, "\n".join(problems)


def test_honest_answers_still_work_after_every_mode(gateway: Gateway, upstream: MaliciousUpstream) -> None:
    outcomes = call_every_rpc(gateway, upstream, None)
    assert [o.code for o in outcomes] == [grpc.StatusCode.OK] * len(outcomes)
    for outcome in outcomes:
        assert not any(upstream.hostile_for(outcome.trace_id))
    # The audit trail as a whole: no line unbounded, nothing key-shaped from an error envelope.
    for line in gateway.audit_log.read_text().splitlines():
        assert len(line.encode()) <= MAX_AUDIT_LINE_BYTES, line[:300]
        assert KEY_AS_ERROR not in line


def test_unknown_scopes_are_logged_once_per_answer_and_bounded(
    gateway: Gateway, upstream: MaliciousUpstream
) -> None:
    # 1,000 keys with 40 new scopes each, one of them an escape sequence with a line break.
    output_before = len(gateway.service.output)
    outcome = call(gateway, upstream, "ListProjectApiKeys", modes_by_name()["unknown-scopes"])
    assert outcome.code == grpc.StatusCode.OK
    assert [set(k.scopes) for k in outcome.answer.api_keys] == [{pb.API_KEY_SCOPE_LABEL_READ}] * 1000
    warnings = [line for line in gateway.service.output[output_before:] if "unknown to this gateway" in line]
    assert len(warnings) == 1, warnings[:3]
    message = json.loads(warnings[0])["message"]
    assert message.endswith(" and 39992 more")  # 40,002 names, 10 of them shown
    assert len(message) < 1024
    assert message.isprintable()  # the escape sequence is shown escaped


# Memory ----------------------------------------------------------------------------------------------


def resident_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak so far) of a process, in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# The answers that cost the most memory per byte: as many objects as the bound on values lets through
# (parsed, then refused), just under the body limit, and far over it (decoded or not).
MEMORY_MODES = [
    "lists-at-the-bound",
    "strings-at-the-bound",
    "lists-900k",
    "strings-900k",
    "many-values",
    "lists-32mib",
    "lists-32mib-chunked",
    "gzip-bomb",
]
# Peak resident memory while those answers arrive, four at a time (each list tried up to four times),
# over the resident memory before them. Unbounded, the 32 MiB answers of empty lists took a gateway of
# 64 MB to 360 MB (ratio 5.6); one of them took the gateway from 251 to 988 MB.
MAX_PEAK_RATIO = 1.5
CONCURRENT = 4


def hostile_pass(gateway: Gateway, upstream: MaliciousUpstream, modes: dict[str, Any]) -> None:
    """Each memory mode's answers, to CONCURRENT lists at once; every one refused as Encord's fault."""
    for name in MEMORY_MODES:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            calls = [
                pool.submit(call, gateway, upstream, "ListProjectApiKeys", modes[name])
                for _ in range(CONCURRENT)
            ]
            outcomes = [c.result() for c in calls]
        for outcome in outcomes:
            assert outcome.code == grpc.StatusCode.UNAVAILABLE, (name, outcome.code, outcome.reason)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc/PID/status")
def test_hostile_answers_cost_bounded_memory(upstream: MaliciousUpstream, tmp_path: Path) -> None:
    modes = modes_by_name()
    with running_gateway(tmp_path, upstream) as gateway:
        pid = gateway.service.process.pid
        for _ in range(3):  # warm up: connections, imports and the caches an honest call fills
            assert all(o.code == grpc.StatusCode.OK for o in call_every_rpc(gateway, upstream, None))
        # One hostile pass first: the error paths' first run (imports, caches, a coverage tracer's
        # records) is paid once and is not what the bound is about; the measured pass starts from its RSS.
        hostile_pass(gateway, upstream, modes)
        before = resident_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from the current RSS
        hostile_pass(gateway, upstream, modes)
        peak = resident_kib(pid, "VmHWM")
        assert gateway.alive()
        ratio = peak / before
        print(f"gateway RSS before {before} KiB, peak under hostile answers {peak} KiB: ratio {ratio:.2f}")
        assert ratio <= MAX_PEAK_RATIO, f"peak RSS {peak} KiB is {ratio:.2f} x the {before} KiB before"
