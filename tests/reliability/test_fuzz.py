"""Fuzzing through a real channel: whatever a caller sends, the answer is a deliberate status, never a crash.

Hypothesis builds request messages (arbitrary unicode titles, huge strings, unknown enum numbers, empty
and repeated fields) and raw byte strings sent with identity serializers. Allowed answers:

- OK, INVALID_ARGUMENT, and NOT_FOUND for a well-formed hash that names no resource;
- PERMISSION_DENIED when a [[callers]] policy forbids the call;
- RESOURCE_EXHAUSTED only for a message bigger than max_message_bytes (64 KiB by default): grpc refuses
  it before the gateway sees it (the gRPC spec's code for a message over the limit).

Never INTERNAL or UNKNOWN, and the gateway stays up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import tomli_w
from encord_gateway_client.v1 import api_keys_pb2 as pb
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.reliability import (
    Ledger,
    Outcome,
    ReliabilityStack,
    invoke,
    new_hashes,
    reliability_stack,
    report,
    tally,
)

SERVICE = "/encord_gateway.v1.ApiKeyService/"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TITLE = 255
TOKEN = "fuzz-caller-token-0123456789"
SHORT = {"typed": 60, "raw": 60, "policy": 40}
LONG = {"typed": 1500, "raw": 1000, "policy": 500}
METHODS: dict[str, type[Message]] = {
    "CreateProjectApiKey": pb.CreateProjectApiKeyRequest,
    "ListProjectApiKeys": pb.ListProjectApiKeysRequest,
    "GetOrCreateProjectApiKey": pb.GetOrCreateProjectApiKeyRequest,
    "CreateDatasetApiKey": pb.CreateDatasetApiKeyRequest,
    "ListDatasetApiKeys": pb.ListDatasetApiKeysRequest,
    "GetOrCreateDatasetApiKey": pb.GetOrCreateDatasetApiKeyRequest,
}
RESPONSES: dict[str, type[Message]] = {
    "CreateProjectApiKey": pb.ProjectApiKey,
    "ListProjectApiKeys": pb.ListProjectApiKeysResponse,
    "GetOrCreateProjectApiKey": pb.ProjectApiKey,
    "CreateDatasetApiKey": pb.DatasetApiKey,
    "ListDatasetApiKeys": pb.ListDatasetApiKeysResponse,
    "GetOrCreateDatasetApiKey": pb.DatasetApiKey,
}
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


class FuzzTarget:
    """A running stack and what the strategies need to know about it."""

    def __init__(
        self, stack: ReliabilityStack, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]
    ) -> None:
        self.stack, self.channel, self.metadata = stack, channel, metadata
        self.known = {*stack.projects, *stack.datasets}
        self.outcomes: list[Outcome] = []

    def call(self, method: str, request: Any) -> Outcome:
        callable_ = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=METHODS[method].SerializeToString,
            response_deserializer=RESPONSES[method].FromString,
        )
        outcome = invoke(method, callable_, request, timeout=30, metadata=self.metadata)
        self.outcomes.append(outcome)
        return outcome

    def call_raw(self, method: str, data: bytes) -> Outcome:
        callable_ = self.channel.unary_unary(
            SERVICE + method, request_serializer=None, response_deserializer=None
        )
        outcome = invoke(method, callable_, data, timeout=30, metadata=self.metadata)
        self.outcomes.append(outcome)
        return outcome

    def assert_still_up(self) -> None:
        assert self.stack.gateway.process.poll() is None, "the gateway died"
        health = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        answer = self.call(
            "ListProjectApiKeys", pb.ListProjectApiKeysRequest(project_hash=self.stack.projects[0])
        )
        assert answer.ok, (answer.code, answer.message)


def well_formed_unknown(value: str, known: set[str]) -> bool:
    import uuid

    try:
        return str(uuid.UUID(value)) == value.lower() and value.lower() not in known
    except ValueError:
        return False


def check(target: FuzzTarget, outcome: Outcome, size: int, resource: str | None, *, policy: bool) -> None:
    allowed = {"OK", "INVALID_ARGUMENT"}
    if policy:
        allowed.add("PERMISSION_DENIED")
    if size > MAX_MESSAGE_BYTES:
        allowed.add("RESOURCE_EXHAUSTED")
    if outcome.code == "NOT_FOUND":
        # Only for a well-formed hash of nothing: Encord's RESOURCE_NOT_FOUND_ERROR.
        assert resource is not None, outcome.message
        assert well_formed_unknown(resource, target.known), (resource, outcome.message)
        return
    assert outcome.code in allowed, (outcome.code, outcome.reason, outcome.message, size)
    if outcome.code == "INVALID_ARGUMENT" and outcome.message:
        assert "internal" not in outcome.message.lower()


# Strategies ---------------------------------------------------------------------------------------


def hashes(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known).map(str.upper),
        st.uuids().map(str),
        st.just(""),
        st.text(max_size=80),
        st.sampled_from(known).map(lambda h: h + "\x00"),
        st.sampled_from(known).map(lambda h: "{" + h + "}"),
    )


TITLES = st.one_of(
    st.text(max_size=40),
    st.text(min_size=MAX_TITLE - 3, max_size=MAX_TITLE + 3),
    st.text(
        alphabet=st.characters(codec="utf-8", categories=("Cc", "Cf", "Zs", "Zl", "Mn", "So")), max_size=40
    ),
    st.integers(min_value=1000, max_value=200_000).map(lambda n: "é" * n),  # huge: past the message limit too
    st.sampled_from(["", " ", "\t\n", "a" * MAX_TITLE, "a" * (MAX_TITLE + 1), " " + "b" * MAX_TITLE + " "]),
)
PROJECT_SCOPES = st.lists(st.one_of(st.integers(min_value=0, max_value=8), INT32), max_size=12)
DATASET_SCOPES = st.lists(st.one_of(st.integers(min_value=0, max_value=4), INT32), max_size=12)


@st.composite
def typed_requests(draw: st.DrawFn, projects: list[str], datasets: list[str]) -> tuple[str, Any, str]:
    method = draw(st.sampled_from(sorted(METHODS)))
    known = projects if "Project" in method else datasets
    resource = draw(hashes(known))
    validate_only = draw(st.booleans())
    if method == "CreateProjectApiKey":
        request: Any = pb.CreateProjectApiKeyRequest(
            project_hash=resource,
            title=draw(TITLES),
            # Any int32 on purpose: the stub's enum type cannot say so, protobuf sends it as it is.
            scopes=draw(PROJECT_SCOPES),  # type: ignore[arg-type]
            validate_only=validate_only,
        )
    elif method == "CreateDatasetApiKey":
        request = pb.CreateDatasetApiKeyRequest(
            dataset_hash=resource,
            title=draw(TITLES),
            scopes=draw(DATASET_SCOPES),  # type: ignore[arg-type]
            validate_only=validate_only,
        )
    else:
        # Message's stub takes no field keywords; the fields are set on the message instead.
        request = METHODS[method]()
        setattr(request, _field(method), resource)
        if method.startswith("GetOrCreate"):
            request.validate_only = validate_only
    return method, request, resource


def _field(method: str) -> str:
    return "project_hash" if "Project" in method else "dataset_hash"


def repeated_fields(request: Any) -> bytes:
    """The message's bytes with every field repeated: proto3 keeps the last scalar and merges the rest."""
    data = request.SerializeToString()
    return data + data


# The stacks ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(ledger: Ledger) -> Iterator[FuzzTarget]:
    with reliability_stack(ledger, "fuzz") as stack, stack.channel() as channel:
        fuzz = FuzzTarget(stack, channel, ())
        yield fuzz
        fuzz.assert_still_up()
        ledger.saw(fuzz.outcomes)
        report("fuzz", answers=tally(fuzz.outcomes), calls=len(fuzz.outcomes))


@pytest.fixture(scope="module")
def policy_target(ledger: Ledger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """A gateway whose one caller may list and create project keys (label.read only) on one project."""
    projects, datasets = new_hashes(2), new_hashes(2)
    config = tmp_path_factory.mktemp("fuzz-policy") / "gateway.toml"
    config.write_text(_policy(projects[0], hashlib.sha256(TOKEN.encode()).hexdigest()))
    with (
        reliability_stack(
            ledger,
            "fuzz-policy",
            project_hashes=projects,
            dataset_hashes=datasets,
            gateway_args=["--config", str(config)],
        ) as stack,
        stack.channel() as channel,
    ):
        fuzz = FuzzTarget(stack, channel, (("authorization", f"Bearer {TOKEN}"),))
        yield fuzz
        fuzz.assert_still_up()
        ledger.saw(fuzz.outcomes)
        report("fuzz-policy", answers=tally(fuzz.outcomes), calls=len(fuzz.outcomes))


def _policy(project: str, digest: str) -> str:
    fuzzer = {
        "name": "fuzzer",
        "tokens": [{"sha256": digest}],
        "methods": ["CreateProjectApiKey", "ListProjectApiKeys", "ListDatasetApiKeys"],
        "projects": [project],
        "project_scopes": ["label.read"],
    }
    return tomli_w.dumps({"callers": [fuzzer]})


def run_typed(target: FuzzTarget, examples: int, *, policy: bool = False) -> None:
    stack = target.stack

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(typed_requests(stack.projects, stack.datasets), st.booleans())
    def fuzz(case: tuple[str, Any, str], repeat: bool) -> None:
        method, request, resource = case
        if repeat:
            data = repeated_fields(request)
            check(target, target.call_raw(method, data), len(data), resource, policy=policy)
        else:
            check(target, target.call(method, request), request.ByteSize(), resource, policy=policy)

    first = len(target.outcomes)
    fuzz()
    answers = {o.code for o in target.outcomes[first:]}
    # Both sides were exercised: validation refused some calls, and some got past it (to Encord, or
    # to the policy, which lets few through).
    assert {"INVALID_ARGUMENT", "PERMISSION_DENIED" if policy else "OK"} <= answers, tally(
        target.outcomes[first:]
    )
    target.assert_still_up()


def run_raw(target: FuzzTarget, examples: int) -> None:
    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(st.sampled_from(sorted(METHODS)), st.one_of(st.binary(max_size=2048), st.just(b"")))
    def fuzz(method: str, data: bytes) -> None:
        check(target, target.call_raw(method, data), len(data), None, policy=False)

    fuzz()
    target.assert_still_up()


def test_fuzz_typed_requests_short(target: FuzzTarget) -> None:
    run_typed(target, SHORT["typed"])


def test_fuzz_raw_bytes_short(target: FuzzTarget) -> None:
    run_raw(target, SHORT["raw"])


@pytest.mark.slow
def test_fuzz_typed_requests_long(target: FuzzTarget) -> None:
    run_typed(target, LONG["typed"])


@pytest.mark.slow
def test_fuzz_raw_bytes_long(target: FuzzTarget) -> None:
    run_raw(target, LONG["raw"])


def test_limits_are_explicit(target: FuzzTarget) -> None:
    """The documented limits, at their edges: a 255-character title is fine, 256 is INVALID_ARGUMENT,
    and a message over 64 KiB is RESOURCE_EXHAUSTED from grpc itself (no google.rpc.Status details)."""
    project = target.stack.projects[0]

    def create(title: str) -> Outcome:
        request = pb.CreateProjectApiKeyRequest(
            project_hash=project, title=title, scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        return target.call("CreateProjectApiKey", request)

    assert create("t" * MAX_TITLE).ok
    too_long = create("t" * (MAX_TITLE + 1))
    assert (too_long.code, too_long.reason) == ("INVALID_ARGUMENT", "INVALID_REQUEST")
    huge = create("t" * (MAX_MESSAGE_BYTES + 1))
    assert (huge.code, huge.reason) == ("RESOURCE_EXHAUSTED", ""), huge.message
    just_under = create("t" * (MAX_MESSAGE_BYTES - 200))
    assert (just_under.code, just_under.reason) == ("INVALID_ARGUMENT", "INVALID_REQUEST")


def test_fuzz_under_a_policy_short(policy_target: FuzzTarget) -> None:
    run_typed(policy_target, SHORT["policy"], policy=True)


@pytest.mark.slow
def test_fuzz_under_a_policy_long(policy_target: FuzzTarget) -> None:
    run_typed(policy_target, LONG["policy"], policy=True)
