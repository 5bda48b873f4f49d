"""Faults upstream: lists get through by retrying or fail cleanly; a create is never sent twice.

Three phases on one stack (gateway -> fault proxy -> emulator), each with its own unique titles:

- before: the emulator answers 503, drops the connection or sends garbage *before* it processes a call
  (so no key is stored): no failed create may leave a key behind;
- after: the proxy drops the connection, garbles the answer or answers 504 *after* the emulator stored
  the key: the gateway cannot know the outcome, and must say so with an UNKNOWN_OUTCOME status;
- slow: the emulator sleeps longer than some callers' deadlines, then stores the key anyway.

For every create: an OK answer is exactly one stored key with the same value; a stored key whose create
was not answered OK was answered with one of UNKNOWN_OUTCOME; the gateway's own log line says it made at
most one upstream attempt; and the emulator saw exactly as many POSTs as the gateway says it sent.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.reliability import (
    UNKNOWN_OUTCOME,
    Ledger,
    Outcome,
    ProxyFaults,
    ReliabilityStack,
    call_lines,
    forbidden,
    invoke,
    reliability_stack,
    report,
    stored_keys,
    tally,
)

LIST_CODES = {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
CREATE_FAILURES = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
# Generous, so that only the `slow` phase's short deadlines run out on a busy machine.
DEADLINE_S = 20.0
SLOW_LATENCY_MS = 400
SHORT_DEADLINE_S = 0.2


@dataclass
class Phase:
    name: str
    creates: int
    lists: int
    threads: int
    emulator_faults: dict[str, Any]
    proxy_faults: ProxyFaults
    short_deadline_every: int = 0  # every n-th create gets SHORT_DEADLINE_S


def trace_metadata() -> tuple[str, tuple[tuple[str, str], ...]]:
    trace = uuid.uuid4().hex
    return trace, (("x-cloud-trace-context", f"{trace}/1;o=1"),)


def run_phase(stack: ReliabilityStack, stub: pb_grpc.ApiKeyServiceStub, phase: Phase) -> dict[str, Any]:
    """Runs one phase's calls and checks every create against the emulator's stored keys."""
    posts_before = stack.posts_answered()
    stack.faults(**phase.emulator_faults) if phase.emulator_faults else stack.clear_faults()
    assert stack.proxy is not None
    stack.proxy.faults = phase.proxy_faults
    stack.proxy.injected.clear()
    traces: dict[str, str] = {}  # title -> trace id

    def create(n: int) -> Outcome:
        title = f"{phase.name} {n} {uuid.uuid4().hex[:8]}"
        trace, metadata = trace_metadata()
        traces[title] = trace
        short = phase.short_deadline_every and n % phase.short_deadline_every == 0
        timeout = SHORT_DEADLINE_S if short else DEADLINE_S
        if n % 2:
            request: Any = pb.CreateDatasetApiKeyRequest(
                dataset_hash=stack.datasets[0], title=title, scopes=[pb.DATASET_SCOPE_READ]
            )
            return invoke("create", stub.CreateDatasetApiKey, request, timeout=timeout, metadata=metadata)
        request = pb.CreateProjectApiKeyRequest(
            project_hash=stack.projects[0], title=title, scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        return invoke("create", stub.CreateProjectApiKey, request, timeout=timeout, metadata=metadata)

    def list_keys(n: int) -> Outcome:
        if n % 2:
            request: Any = pb.ListDatasetApiKeysRequest(dataset_hash=stack.datasets[0])
            return invoke("list", stub.ListDatasetApiKeys, request, timeout=DEADLINE_S)
        return invoke(
            "list",
            stub.ListProjectApiKeys,
            pb.ListProjectApiKeysRequest(project_hash=stack.projects[0]),
            timeout=DEADLINE_S,
        )

    work: list[Callable[[], Outcome]] = [partial(create, n) for n in range(phase.creates)]
    work += [partial(list_keys, n) for n in range(phase.lists)]
    order = sorted(range(len(work)), key=lambda i: (i * 7919) % len(work))  # creates and lists interleaved
    with ThreadPoolExecutor(phase.threads) as pool:
        outcomes = list(pool.map(lambda i: work[i](), order))
    stack.clear_faults()
    stack.proxy.faults = ProxyFaults()

    creates = [o for o in outcomes if o.kind == "create"]
    lists = [o for o in outcomes if o.kind == "list"]
    # The gateway's log line for each create: how many times it sent it upstream.
    wanted = set(traces.values())
    found: dict[str, dict[str, Any]] = {}

    def all_logged(_: str) -> bool:
        for line in call_lines(stack.gateway):
            if line.get("trace_id") in wanted:
                found[line["trace_id"]] = line
        return wanted <= set(found)

    stack.gateway.wait_for_line(all_logged, timeout=30)
    attempts = {trace: int(line["upstream_attempts"]) for trace, line in found.items()}
    unlogged = [o for o in creates if traces[o.request.title] not in found]
    # A call whose deadline passed before a handler picked it up is never logged, and never sent.
    assert all(o.code == "DEADLINE_EXCEEDED" and not o.reason for o in unlogged), tally(unlogged)
    sent = sum(attempts.values())
    # Wait (on the emulator's own request log) until it has answered every POST the gateway sent:
    # a slow phase's calls are still sleeping in the emulator after the callers gave up.
    seen = 0

    def counted(line: str) -> bool:
        nonlocal seen
        if "query_method=POST" in line and "apikey" in line:
            seen += 1
        return seen >= posts_before + sent

    assert stack.emulator.wait_for_line(counted, timeout=30) is not None, (seen, posts_before, sent)
    posts = stack.posts_answered() - posts_before

    stored = {
        title: key
        for key, (_, title) in stored_keys(stack.state).items()
        if title.startswith(f"{phase.name} ")
    }
    by_title = {o.request.title: o for o in creates}
    titles_stored = Counter(title for _, (_, title) in stored_keys(stack.state).items() if title in by_title)
    unknown_stored = [by_title[t] for t in stored if not by_title[t].ok]
    figures = {
        "creates": tally(creates),
        "lists": tally(lists),
        "stored": len(stored),
        "stored_without_ok": tally(unknown_stored),
        "posts_sent": sent,
        "posts_at_emulator": posts,
        "proxy_injected": dict(stack.proxy.injected),
    }
    report(f"faults/{phase.name}", **figures)

    assert not forbidden(outcomes), tally(forbidden(outcomes))
    assert {o.code for o in lists} <= LIST_CODES, tally(lists)
    assert any(o.ok for o in lists), f"no list got through the retries: {tally(lists)}"
    assert {o.code for o in creates} <= {"OK"} | CREATE_FAILURES, tally(creates)
    # Never sent twice: the gateway says at most one attempt per create, and the emulator agrees.
    assert max(attempts.values(), default=0) <= 1, {t: a for t, a in attempts.items() if a > 1}
    assert posts == sent, (posts, sent)
    assert max(titles_stored.values(), default=0) <= 1, "a create was stored twice"
    for outcome in creates:
        title = outcome.request.title
        if outcome.ok:
            assert stored.get(title) == outcome.response.api_key, (
                f"OK create {title!r} not stored as answered"
            )
        elif title in stored:
            assert (outcome.code, outcome.reason) in UNKNOWN_OUTCOME, (
                outcome.code,
                outcome.reason,
                outcome.message,
            )
    return {"outcomes": outcomes, "stored_without_ok": unknown_stored}


def phases(scale: int) -> list[Phase]:
    return [
        Phase(
            "before",
            40 * scale,
            20 * scale,
            8 * min(scale, 4),
            {"error_rate": 0.15, "drop_rate": 0.15, "garbage_rate": 0.15},
            ProxyFaults(),
        ),
        Phase(
            "after",
            40 * scale,
            20 * scale,
            8 * min(scale, 4),
            {},
            ProxyFaults(drop_after=0.15, garbage_after=0.1, gateway_timeout_after=0.05),
        ),
        Phase(
            "slow",
            20 * scale,
            10 * scale,
            8 * min(scale, 4),
            {"latency_ms": SLOW_LATENCY_MS},
            ProxyFaults(),
            short_deadline_every=2,
        ),
    ]


def run_faults(ledger: Ledger, name: str, scale: int) -> None:
    with reliability_stack(ledger, name, proxy=True, gateway_args=["--log-level", "debug"]) as stack:
        with stack.channel() as channel:
            stub = stack.stub(channel)
            results = {phase.name: run_phase(stack, stub, phase) for phase in phases(scale)}
        for result in results.values():
            ledger.saw(result["outcomes"])
    before, after, slow = results["before"], results["after"], results["slow"]
    # The emulator's faults strike before it stores anything: a failed create there leaves no key.
    assert not before["stored_without_ok"], tally(before["stored_without_ok"])
    # The proxy's strike after the key is stored: the interesting case did happen, and was answered with
    # an unknown-outcome status (checked per call in run_phase).
    assert after["stored_without_ok"], "no create lost its answer after the key was stored"
    assert any(o.code == "DEADLINE_EXCEEDED" for o in slow["outcomes"]), tally(slow["outcomes"])


def test_faults_short(ledger: Ledger) -> None:
    run_faults(ledger, "faults-short", scale=1)


@pytest.mark.slow
def test_faults_long(ledger: Ledger) -> None:
    run_faults(ledger, "faults-long", scale=10)


def test_a_dropped_answer_after_the_key_was_stored_is_reported_as_unknown(ledger: Ledger) -> None:
    """The single interesting case, spelled out: what exactly does the caller hear?"""
    with reliability_stack(ledger, "faults-drop-after", proxy=True) as stack, stack.channel() as channel:
        assert stack.proxy is not None
        stub = stack.stub(channel)
        answers: dict[str, Outcome] = {}
        each = {
            "drop_after": ProxyFaults(drop_after=1.0),
            "garbage_after": ProxyFaults(garbage_after=1.0),
            "gateway_timeout_after": ProxyFaults(gateway_timeout_after=1.0),
        }
        for fault, faults in each.items():
            stack.proxy.faults = faults
            request = pb.CreateProjectApiKeyRequest(
                project_hash=stack.projects[0],
                title=f"lost answer {fault}",
                scopes=[pb.API_KEY_SCOPE_LABEL_READ],
            )
            answers[fault] = invoke("create", stub.CreateProjectApiKey, request, timeout=DEADLINE_S)
        stack.proxy.faults = ProxyFaults()
        stored = {title for _, (_, title) in stored_keys(stack.state).items()}
    report("faults/lost-answers", **{k: (o.code, o.reason, o.message) for k, o in answers.items()})
    for fault, outcome in answers.items():
        assert f"lost answer {fault}" in stored
        assert (outcome.code, outcome.reason) in UNKNOWN_OUTCOME, (fault, outcome.code, outcome.reason)
    assert answers["drop_after"].reason == "UPSTREAM_CONNECTION_ERROR"
    assert answers["garbage_after"].reason == "UPSTREAM_BAD_RESPONSE"
    assert answers["gateway_timeout_after"].reason == "UPSTREAM_HTTP_ERROR"


RETRIED = {"UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED"}


def create_until_answered(stub: pb_grpc.ApiKeyServiceStub, request: Any) -> tuple[Outcome, int]:
    """What a client with request ids does: the same request, id included, until it is answered."""
    method = stub.CreateDatasetApiKey if hasattr(request, "dataset_hash") else stub.CreateProjectApiKey
    for attempt in range(1, 41):
        outcome = invoke("create", method, request, timeout=DEADLINE_S)
        if outcome.code not in RETRIED:
            return outcome, attempt
        time.sleep(0.25)  # REQUEST_IN_PROGRESS's RetryInfo says about this (--reconcile-after 0.2)
    return outcome, attempt


def run_with_request_ids(ledger: Ledger, name: str, creates: int) -> None:
    args = ["--reconcile-after", "0.2"]
    with reliability_stack(ledger, name, proxy=True, gateway_args=args) as stack, stack.channel() as channel:
        stub = stack.stub(channel)
        assert stack.proxy is not None
        stack.proxy.faults = ProxyFaults(drop_after=0.15, garbage_after=0.1, gateway_timeout_after=0.05)
        requests: list[Any] = []
        for n in range(creates):
            title = f"with ids {n} {uuid.uuid4().hex[:8]}"
            if n % 2:
                requests.append(
                    pb.CreateDatasetApiKeyRequest(
                        dataset_hash=stack.datasets[0],
                        title=title,
                        scopes=[pb.DATASET_SCOPE_READ],
                        request_id=str(uuid.uuid4()),
                    )
                )
            else:
                requests.append(
                    pb.CreateProjectApiKeyRequest(
                        project_hash=stack.projects[0],
                        title=title,
                        scopes=[pb.API_KEY_SCOPE_LABEL_READ],
                        request_id=str(uuid.uuid4()),
                    )
                )
        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(lambda r: create_until_answered(stub, r), requests))
        injected = dict(stack.proxy.injected)
        stack.proxy.faults = ProxyFaults()
        outcomes = [o for o, _ in answered]
        ledger.saw(outcomes)
        stored = Counter(
            title for _, (_, title) in stored_keys(stack.state).items() if title.startswith("with ids")
        )
        report(
            f"faults/{name}",
            creates=tally(outcomes),
            attempts=sum(a for _, a in answered),
            stored=sum(stored.values()),
            proxy_injected=injected,
        )
    assert sum(injected.values()) > 0, "no answer was lost: the scenario did not happen"
    # Every create ends OK: no outcome stays unknown to a client that retries with its request id.
    assert {o.code for o in outcomes} == {"OK"}, tally(outcomes)
    assert stored == Counter(r.title for r in requests), "a create was stored twice, or not at all"
    for outcome in outcomes:
        assert outcome.response.title == outcome.request.title


def test_faults_with_request_ids_leave_no_outcome_unknown(ledger: Ledger) -> None:
    run_with_request_ids(ledger, "faults-request-ids", creates=40)


@pytest.mark.slow
def test_faults_with_request_ids_long(ledger: Ledger) -> None:
    run_with_request_ids(ledger, "faults-request-ids-long", creates=400)
