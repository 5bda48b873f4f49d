"""Load: thousands of mixed calls at 64 in flight against a healthy emulator; nothing lost, nothing leaks."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.reliability import (
    Ledger,
    Outcome,
    ProcFigures,
    ReliabilityStack,
    forbidden,
    invoke,
    proc_figures,
    reliability_stack,
    report,
    tally,
)

IN_FLIGHT = 64
TIMEOUT_S = 30.0
# (kind, weight): creates dominate, as they write; every kind of answer but an error is expected.
MIX = (
    ("create_project", 30),
    ("create_dataset", 15),
    ("list_project", 25),
    ("list_dataset", 15),
    ("get_or_create_project", 5),
    ("get_or_create_dataset", 5),
    ("invalid", 3),
    ("not_found", 2),
)
EXPECTED = {"invalid": "INVALID_ARGUMENT", "not_found": "NOT_FOUND"}
MISSING = "99999999-9999-4999-8999-999999999999"
SCHEDULE = [kind for kind, weight in MIX for _ in range(weight)]


RESOURCES = 8  # of each kind: half receive the creates, half are read (lists and get-or-creates)
PREFILL = 10  # keys in each read resource before the load


def one_call(stub: pb_grpc.ApiKeyServiceStub, stack: ReliabilityStack, n: int) -> Outcome:
    """Creates go to the write half of the resources and reads to the other half, so the answers do not
    grow as the run goes on: the workload is the same in the first and the last calls, and any growth of
    the gateway between them is the gateway's."""
    kind = SCHEDULE[(n * 37) % len(SCHEDULE)]  # a fixed, well-mixed order
    half = RESOURCES // 2
    writes = kind.startswith("create")
    project = stack.projects[(n % half) + (0 if writes else half)]
    dataset = stack.datasets[(n % half) + (0 if writes else half)]
    title = f"load {n}"
    if kind == "create_project":
        request: Any = pb.CreateProjectApiKeyRequest(
            project_hash=project, title=title, scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        return invoke(kind, stub.CreateProjectApiKey, request, timeout=TIMEOUT_S)
    if kind == "create_dataset":
        request = pb.CreateDatasetApiKeyRequest(
            dataset_hash=dataset, title=title, scopes=[pb.DATASET_SCOPE_READ]
        )
        return invoke(kind, stub.CreateDatasetApiKey, request, timeout=TIMEOUT_S)
    if kind == "list_project":
        return invoke(
            kind,
            stub.ListProjectApiKeys,
            pb.ListProjectApiKeysRequest(project_hash=project),
            timeout=TIMEOUT_S,
        )
    if kind == "list_dataset":
        return invoke(
            kind,
            stub.ListDatasetApiKeys,
            pb.ListDatasetApiKeysRequest(dataset_hash=dataset),
            timeout=TIMEOUT_S,
        )
    if kind == "get_or_create_project":
        request = pb.GetOrCreateProjectApiKeyRequest(project_hash=project)
        return invoke(kind, stub.GetOrCreateProjectApiKey, request, timeout=TIMEOUT_S)
    if kind == "get_or_create_dataset":
        request = pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=dataset)
        return invoke(kind, stub.GetOrCreateDatasetApiKey, request, timeout=TIMEOUT_S)
    if kind == "invalid":
        request = pb.CreateProjectApiKeyRequest(project_hash=project, title=" ", scopes=[])
        return invoke(kind, stub.CreateProjectApiKey, request, timeout=TIMEOUT_S)
    return invoke(
        kind, stub.ListProjectApiKeys, pb.ListProjectApiKeysRequest(project_hash=MISSING), timeout=TIMEOUT_S
    )


def run_load(ledger: Ledger, name: str, calls: int, window: int) -> None:
    """`calls` mixed calls at 64 in flight; /proc figures after the first and the last `window` calls."""
    with reliability_stack(
        ledger, name, projects=RESOURCES, datasets=RESOURCES, emulator_args=["--quiet"]
    ) as stack:
        pid, upstream_port = stack.gateway.process.pid, int(stack.emulator.address.rsplit(":", 1)[1])
        done = 0
        lock = threading.Lock()
        marks = {window, calls // 2, calls - window}
        with stack.channel() as channel:
            stub = stack.stub(channel)
            prefill = []
            for index in range(RESOURCES // 2, RESOURCES):
                project, dataset = stack.projects[index], stack.datasets[index]
                for n in range(PREFILL):
                    create_project = pb.CreateProjectApiKeyRequest(
                        project_hash=project, title=f"prefill {n}", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
                    )
                    create_dataset = pb.CreateDatasetApiKeyRequest(
                        dataset_hash=dataset, title=f"prefill {n}", scopes=[pb.DATASET_SCOPE_READ]
                    )
                    prefill.append(
                        invoke("create_project", stub.CreateProjectApiKey, create_project, timeout=30)
                    )
                    prefill.append(
                        invoke("create_dataset", stub.CreateDatasetApiKey, create_dataset, timeout=30)
                    )
            assert all(o.ok for o in prefill), tally(prefill)
            figures: dict[str, ProcFigures] = {"start": proc_figures(pid, upstream_port)}

            def call(n: int) -> Outcome:
                nonlocal done
                outcome = one_call(stub, stack, n)
                with lock:
                    done += 1
                    if done in marks:
                        figures[f"after {done}"] = proc_figures(pid, upstream_port)
                return outcome

            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                outcomes = list(pool.map(call, range(calls)))
            figures["end"] = proc_figures(pid, upstream_port)
            outcomes = prefill + outcomes
            ledger.saw(outcomes)

            # Every key created is listed afterwards, and the emulator holds exactly those (plus one
            # master key per resource that a get-or-create touched): nothing lost, nothing extra.
            created: dict[str, set[str]] = {}
            for outcome in outcomes:
                if outcome.ok and outcome.kind.startswith(("create", "get_or_create")):
                    resource = getattr(outcome.request, "project_hash", None) or outcome.request.dataset_hash
                    created.setdefault(resource, set()).add(outcome.response.api_key)
            listed: dict[str, set[str]] = {}
            for project in stack.projects:
                answer = stub.ListProjectApiKeys(
                    pb.ListProjectApiKeysRequest(project_hash=project), timeout=60
                )
                listed[project] = {k.api_key for k in answer.api_keys}
            for dataset in stack.datasets:
                dataset_answer = stub.ListDatasetApiKeys(
                    pb.ListDatasetApiKeysRequest(dataset_hash=dataset), timeout=60
                )
                listed[dataset] = {k.api_key for k in dataset_answer.api_keys}
        stored = stack.emulator_stats()["keys"]

    counts = tally(outcomes[len(prefill) :])
    first, last = figures[f"after {window}"], figures["end"]
    report(
        name,
        calls=calls,
        in_flight=IN_FLIGHT,
        answers=counts,
        kinds=dict(Counter(o.kind for o in outcomes)),
        figures={k: str(v) for k, v in figures.items()},
        seconds=round(max(o.ended for o in outcomes) - min(o.started for o in outcomes), 1),
    )
    assert not forbidden(outcomes), counts
    wrong = [o for o in outcomes if o.code != EXPECTED.get(o.kind, "OK")]
    assert not wrong, f"{len(wrong)} unexpected answers: {tally(wrong)}"
    for resource, keys in created.items():
        assert keys <= listed[resource], (
            f"{len(keys - listed[resource])} created keys not listed for {resource}"
        )
        assert stored[resource] == len(listed[resource]) == len(keys), (resource, stored[resource], len(keys))
    # Bounded growth: what the first `window` calls needed (worker threads, caches) is all the rest
    # need. The keep-alive pool to Encord grows to the most upstream calls ever made at once, which is
    # bounded by --workers and --upstream-pool-size (both 64), not by the number of calls; every other fd
    # must stay put. The RSS bound allows for allocator noise, not for anything kept per call.
    # grpc's worker pool grows lazily up to --workers (64): bounded by configuration, whatever the calls.
    start = figures["start"]
    assert last.threads <= start.threads + IN_FLIGHT + 4, (str(start), str(last))
    if first.threads >= start.threads + IN_FLIGHT:  # the pool was full after the first window: no more
        assert last.threads - first.threads <= 4, (str(first), str(last))
    assert (last.fds - last.upstream_sockets) - (first.fds - first.upstream_sockets) <= 8, (
        str(first),
        str(last),
    )
    assert max(f.upstream_sockets for f in figures.values()) <= IN_FLIGHT, {
        k: str(v) for k, v in figures.items()
    }
    assert last.rss_kib - first.rss_kib <= 16 * 1024, (str(first), str(last))


def test_load_short(ledger: Ledger) -> None:
    run_load(ledger, "load-short", calls=600, window=150)


@pytest.mark.slow
def test_load_10000_calls(ledger: Ledger) -> None:
    run_load(ledger, "load-10000", calls=10_000, window=2000)
