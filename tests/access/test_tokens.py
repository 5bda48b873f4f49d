"""Bearer-token callers over real TLS: authentication, every policy rule both ways, reveal, rate, audit."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, cli_argv
from encord_gateway_client.v1 import api_keys_pb2 as pb
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.secured import Outcome, Secured, assert_no_key_in, call, secured_stack, sha256

OTHER = str(uuid.uuid4())
TOKENS = {
    name: secrets.token_urlsafe(24) for name in ("vendor", "trainer", "onboarding", "throttled", "sidecar")
}
CALLERS: list[dict[str, Any]] = [
    {
        "name": "vendor",
        "tokens": [{"sha256": sha256(TOKENS["vendor"])}],
        "methods": ["ListProjectApiKeys", "CreateProjectApiKey"],
        "projects": [DEMO_PROJECT],
        "project_scopes": ["label.read"],
    },
    {
        "name": "trainer",
        "tokens": [{"sha256": sha256(TOKENS["trainer"])}],
        "methods": ["ListDatasetApiKeys", "CreateDatasetApiKey", "GetOrCreateDatasetApiKey"],
        "datasets": [DEMO_DATASET],
        "dataset_scopes": ["dataset.read"],
    },
    {
        "name": "onboarding",
        "tokens": [{"sha256": sha256(TOKENS["onboarding"])}],
        "methods": ["*"],
        "projects": ["*"],
        "datasets": ["*"],
        "project_scopes": ["*"],
        "dataset_scopes": ["*"],
        "reveal_keys": True,
    },
    {
        "name": "throttled",
        "tokens": [{"sha256": sha256(TOKENS["throttled"])}],
        "methods": ["ListProjectApiKeys"],
        "projects": ["*"],
        "rate_limit": {"per_second": 0.05, "burst": 2},
    },
    {
        "name": "sidecar",
        "tokens": [{"sha256": sha256(TOKENS["sidecar"]), "require_mtls": True}],
        "methods": ["*"],
        "projects": ["*"],
    },
]
CREATED: list[str] = []  # every key any test here was handed, for the final scan


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_stack(tmp_path_factory.mktemp("tokens"), CALLERS, mutual=False) as running:
        yield running


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def as_caller(gateway: Secured, name: str | None, method: str) -> Callable[..., Any]:
    stub = gateway.stub(token=TOKENS[name] if name else None)
    return getattr(stub, method)


def keep(outcome: Outcome) -> Outcome:
    if outcome.response is not None and getattr(outcome.response, "api_key", None):
        CREATED.append(outcome.response.api_key)
    return outcome


# Authentication --------------------------------------------------------------------------------------


def test_health_answers_without_credentials(gateway: Secured) -> None:
    health = health_pb2_grpc.HealthStub(gateway.channel())
    answer = health.Check(
        health_pb2.HealthCheckRequest(service="encord_gateway.v1.ApiKeyService"), timeout=10
    )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("metadata", "token", "reason", "detail"),
    [
        ((), None, "NO_CREDENTIALS", "no client certificate and no bearer token"),
        ((), "a-wrong-token", "INVALID_CREDENTIALS", "unknown bearer token"),
        ((("authorization", f"Basic {TOKENS['vendor']}"),), None, "INVALID_CREDENTIALS", "not one 'Bearer"),
        ((), TOKENS["sidecar"], "INVALID_CREDENTIALS", "valid only with mutual TLS"),
    ],
    ids=["no-credentials", "wrong-token", "not-bearer", "mtls-only-token-without-mtls"],
)
def test_strangers_are_unauthenticated_and_audited(
    gateway: Secured, metadata: tuple[tuple[str, str], ...], token: str | None, reason: str, detail: str
) -> None:
    before = gateway.key_counts()
    stub = gateway.stub(token=token)
    request = pb.CreateProjectApiKeyRequest(
        project_hash=DEMO_PROJECT, title="t", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
    )
    outcome = call(stub.CreateProjectApiKey, request, metadata=metadata)
    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED
    assert outcome.reason == reason
    # The caller is not told why its credentials failed (a stolen mTLS-only token stays unconfirmed).
    details = outcome.error.details() if outcome.error is not None else None
    assert details is not None
    assert "mutual" not in details
    assert gateway.key_counts() == before
    line = gateway.audit_for(outcome.trace_id)
    assert (line["outcome"], line["reason"], line["caller"]) == ("UNAUTHENTICATED", reason, "")
    assert detail in line["detail"]
    # A stranger is refused from its headers, before its request is read (so it holds no worker while
    # a message never comes): the record has the method and the peer, not the resource it named.
    assert (line["method"], line["resource_hash"]) == ("CreateProjectApiKey", "")
    assert line["peer"].startswith("ipv4:127.0.0.1:")


@pytest.mark.parametrize(("token", "code"), [(None, "UNAUTHENTICATED"), ("onboarding", "INVALID_ARGUMENT")])
def test_bytes_that_are_no_request_are_refused_after_authentication(
    gateway: Secured, token: str | None, code: str
) -> None:
    raw = gateway.channel(token=TOKENS[token] if token else None).unary_unary(
        "/encord_gateway.v1.ApiKeyService/CreateProjectApiKey",
        request_serializer=None,
        response_deserializer=None,
    )
    outcome = call(raw, b"\xff\xff\xff")  # not a protobuf message: gRPC alone would say INTERNAL
    assert outcome.code.name == code


def test_a_token_for_another_caller_gets_that_callers_rights(gateway: Secured) -> None:
    # The trainer's token on the vendor's call: the trainer may not list project keys.
    outcome = call(
        as_caller(gateway, "trainer", "ListProjectApiKeys"),
        pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT),
    )
    assert outcome.code == grpc.StatusCode.PERMISSION_DENIED
    assert outcome.reason == "METHOD_NOT_ALLOWED_FOR_CALLER"
    assert gateway.audit_for(outcome.trace_id)["caller"] == "trainer"


# Every rule, allowed and denied ------------------------------------------------------------------------

PROJECT_READ = [pb.API_KEY_SCOPE_LABEL_READ]
LABEL_READ, LABEL_WRITE = pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_LABEL_WRITE
DATASET_READ, DATASET_WRITE = pb.DATASET_SCOPE_READ, pb.DATASET_SCOPE_WRITE
OK, NOT_FOUND, DENIED = grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED


def project_list(project: str) -> pb.ListProjectApiKeysRequest:
    return pb.ListProjectApiKeysRequest(project_hash=project)


def dataset_list(dataset: str) -> pb.ListDatasetApiKeysRequest:
    return pb.ListDatasetApiKeysRequest(dataset_hash=dataset)


def project_create(project: str, *scopes: pb.ApiKeyScope, dry: bool = False) -> pb.CreateProjectApiKeyRequest:
    return pb.CreateProjectApiKeyRequest(
        project_hash=project, title="a key", scopes=scopes, validate_only=dry
    )


def dataset_create(
    dataset: str, *scopes: pb.DatasetScope, dry: bool = False
) -> pb.CreateDatasetApiKeyRequest:
    return pb.CreateDatasetApiKeyRequest(
        dataset_hash=dataset, title="a key", scopes=scopes, validate_only=dry
    )


def project_master(project: str, *, dry: bool = False) -> pb.GetOrCreateProjectApiKeyRequest:
    return pb.GetOrCreateProjectApiKeyRequest(project_hash=project, validate_only=dry)


def dataset_master(dataset: str, *, dry: bool = False) -> pb.GetOrCreateDatasetApiKeyRequest:
    return pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=dataset, validate_only=dry)


RULES = [
    # (caller, method, request, reason; "" means allowed)
    ("vendor", "ListProjectApiKeys", project_list(DEMO_PROJECT), ""),
    ("vendor", "GetOrCreateProjectApiKey", project_master(DEMO_PROJECT), "METHOD_NOT_ALLOWED_FOR_CALLER"),
    ("vendor", "ListProjectApiKeys", project_list(OTHER), "RESOURCE_NOT_ALLOWED"),
    ("vendor", "CreateProjectApiKey", project_create(DEMO_PROJECT, LABEL_READ), ""),
    ("vendor", "CreateProjectApiKey", project_create(OTHER, LABEL_READ), "RESOURCE_NOT_ALLOWED"),
    (
        "vendor",
        "CreateProjectApiKey",
        project_create(DEMO_PROJECT, LABEL_READ, LABEL_WRITE),
        "SCOPE_ABOVE_CEILING",
    ),
    ("trainer", "ListDatasetApiKeys", dataset_list(DEMO_DATASET), ""),
    ("trainer", "ListDatasetApiKeys", dataset_list(OTHER), "RESOURCE_NOT_ALLOWED"),
    ("trainer", "CreateDatasetApiKey", dataset_create(DEMO_DATASET, DATASET_READ), ""),
    (
        "trainer",
        "CreateDatasetApiKey",
        dataset_create(DEMO_DATASET, DATASET_READ, DATASET_WRITE),
        "SCOPE_ABOVE_CEILING",
    ),
    ("trainer", "GetOrCreateDatasetApiKey", dataset_master(DEMO_DATASET), "SCOPE_ABOVE_CEILING"),
    ("onboarding", "GetOrCreateProjectApiKey", project_master(DEMO_PROJECT), ""),
    ("onboarding", "GetOrCreateDatasetApiKey", dataset_master(DEMO_DATASET), ""),
]


@pytest.mark.parametrize(("name", "method", "request_", "reason"), RULES)
def test_each_rule_allows_and_denies(
    gateway: Secured, name: str, method: str, request_: Any, reason: str
) -> None:
    before = gateway.key_counts()
    outcome = keep(call(as_caller(gateway, name, method), request_))
    line = gateway.audit_for(outcome.trace_id)
    assert line["caller"] == name
    assert line["method"] == method
    assert line["auth"] == "token"
    if not reason:
        assert outcome.code == grpc.StatusCode.OK
        assert (line["outcome"], line["reason"]) == ("OK", "")
        return
    assert outcome.code == grpc.StatusCode.PERMISSION_DENIED
    info = outcome.detail(error_details_pb2.ErrorInfo)
    assert (info.reason, info.metadata["caller"], info.metadata["trace_id"]) == (
        reason,
        name,
        outcome.trace_id,
    )
    assert (line["outcome"], line["reason"]) == ("PERMISSION_DENIED", reason)
    assert gateway.key_counts() == before, "a denied call reached Encord"


def test_a_request_above_the_ceiling_names_the_scopes_over_it(gateway: Secured) -> None:
    request = pb.CreateProjectApiKeyRequest(
        project_hash=DEMO_PROJECT,
        title="too much",
        scopes=[pb.API_KEY_SCOPE_LABEL_READ, pb.API_KEY_SCOPE_LABEL_WRITE, pb.API_KEY_SCOPE_MODEL_TRAIN],
    )
    outcome = call(as_caller(gateway, "vendor", "CreateProjectApiKey"), request)
    assert outcome.code == grpc.StatusCode.PERMISSION_DENIED
    details = outcome.error.details() if outcome.error is not None else None
    assert details is not None
    assert "label.write, model.train" in details
    line = gateway.audit_for(outcome.trace_id)
    assert line["scopes_asked"] == ["label.read", "label.write", "model.train"]
    assert line["scopes_granted"] == []
    assert line["fingerprint"] == ""


def test_a_minted_key_is_audited_by_fingerprint(gateway: Secured) -> None:
    request = pb.CreateProjectApiKeyRequest(
        project_hash=DEMO_PROJECT, title="audited key", scopes=PROJECT_READ
    )
    outcome = keep(call(as_caller(gateway, "vendor", "CreateProjectApiKey"), request))
    key = outcome.response.api_key
    assert key
    assert outcome.response.fingerprint == fingerprint(key)
    line = gateway.audit_for(outcome.trace_id)
    assert line["fingerprint"] == fingerprint(key)
    assert (line["title"], line["scopes_asked"], line["scopes_granted"]) == (
        "audited key",
        ["label.read"],
        ["label.read"],
    )
    assert (line["key_returned"], line["created"], line["resource_kind"]) == (True, True, "project")
    assert line["time"].endswith("Z")
    # The question a leaked key raises, answered by the real command line.
    lookup = subprocess.run(
        cli_argv("audit", "lookup", "-", "--audit-log", str(gateway.audit_log)),
        input=key, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert lookup.returncode == 0, lookup.stderr
    assert f"caller vendor minted project key {fingerprint(key)}" in lookup.stdout
    assert outcome.trace_id in lookup.stdout
    assert key not in lookup.stdout
    by_prefix = subprocess.run(
        cli_argv("audit", "lookup", fingerprint(key)[:8], "--audit-log", str(gateway.audit_log), "--json"),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert by_prefix.returncode == 0
    assert outcome.trace_id in by_prefix.stdout


# Reveal ------------------------------------------------------------------------------------------------


def test_reveal_off_lists_fingerprints_only(gateway: Secured) -> None:
    outcome = call(
        as_caller(gateway, "vendor", "ListProjectApiKeys"),
        pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT),
    )
    keys = outcome.response.api_keys
    assert keys, "nothing listed, so nothing to hide"
    assert all(k.api_key == "" and len(k.fingerprint) == 16 for k in keys)


def test_reveal_on_lists_the_keys(gateway: Secured) -> None:
    outcome = call(
        as_caller(gateway, "onboarding", "ListProjectApiKeys"),
        pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT),
    )
    keys = outcome.response.api_keys
    assert keys
    assert all(k.api_key and k.fingerprint == fingerprint(k.api_key) for k in keys)
    CREATED.extend(k.api_key for k in keys)


# Rate limit ---------------------------------------------------------------------------------------------


def test_over_the_rate_limit_is_resource_exhausted_with_retry_info(gateway: Secured) -> None:
    method = as_caller(gateway, "throttled", "ListProjectApiKeys")
    request = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
    assert [call(method, request).code for _ in range(2)] == [grpc.StatusCode.OK] * 2
    outcome = call(method, request)
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert outcome.reason == "RATE_LIMITED"
    delay = outcome.detail(error_details_pb2.RetryInfo).retry_delay
    assert 1 <= delay.seconds <= 20
    assert gateway.audit_for(outcome.trace_id)["outcome"] == "RESOURCE_EXHAUSTED"
    # Another caller's bucket is untouched.
    other = call(as_caller(gateway, "onboarding", "ListProjectApiKeys"), request)
    assert other.code == grpc.StatusCode.OK


# validate_only --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method", "request_", "code"),
    [
        ("onboarding", "CreateProjectApiKey", project_create(DEMO_PROJECT, LABEL_READ, dry=True), OK),
        ("onboarding", "CreateDatasetApiKey", dataset_create(DEMO_DATASET, DATASET_READ, dry=True), OK),
        ("onboarding", "GetOrCreateProjectApiKey", project_master(DEMO_PROJECT, dry=True), OK),
        ("onboarding", "CreateProjectApiKey", project_create(OTHER, LABEL_READ, dry=True), NOT_FOUND),
        ("vendor", "CreateProjectApiKey", project_create(DEMO_PROJECT, LABEL_WRITE, dry=True), DENIED),
    ],
    ids=["create-project", "create-dataset", "get-or-create", "missing-project", "above-ceiling"],
)  # fmt: skip
def test_validate_only_mints_nothing(
    gateway: Secured, name: str, method: str, request_: Any, code: grpc.StatusCode
) -> None:
    before = gateway.key_counts()
    outcome = call(as_caller(gateway, name, method), request_)
    assert outcome.code == code
    assert gateway.key_counts() == before
    if code == grpc.StatusCode.OK:
        assert outcome.response.api_key == ""
        assert outcome.response.fingerprint == ""
    line = gateway.audit_for(outcome.trace_id)
    assert line["outcome"] == code.name
    assert line["fingerprint"] == ""
    assert not line["key_returned"]
    assert line["validate_only"] == (code == grpc.StatusCode.OK)


# Last: nothing the gateway wrote holds a key or a token ---------------------------------------------


def test_no_log_or_audit_file_holds_a_key_or_a_token(gateway: Secured) -> None:
    request = pb.CreateDatasetApiKeyRequest(
        dataset_hash=DEMO_DATASET, title="scan", scopes=[pb.DATASET_SCOPE_READ]
    )
    keep(call(as_caller(gateway, "onboarding", "CreateDatasetApiKey"), request))
    assert_no_key_in(gateway.files_to_scan(), [*CREATED, *TOKENS.values()])
    assert all(line["type"] == "audit" for line in gateway.audit())
