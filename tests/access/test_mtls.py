"""Mutual TLS: the certificate names the caller (URI SAN, else DNS SAN, else CN); bad ones are refused."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT
from encord_gateway_client.v1 import api_keys_pb2 as pb
from support.pki import Authority, Issued
from support.secured import Secured, assert_no_key_in, call, secured_stack, sha256

SIDECAR_TOKEN = secrets.token_urlsafe(24)
CALLERS: list[dict[str, Any]] = [
    {
        "name": "spiffe-service",
        "certificates": ["spiffe://example.org/ns/prod/sa/keys"],
        "methods": ["ListProjectApiKeys", "CreateProjectApiKey"],
        "projects": ["*"],
        "project_scopes": ["label.read"],
        "reveal_keys": True,
    },
    {"name": "dns-service", "certificates": ["keys.prod.internal"], "methods": ["ListDatasetApiKeys"],
     "datasets": ["*"]},
    {"name": "cn-service", "certificates": ["legacy-keys"], "methods": ["ListProjectApiKeys"],
     "projects": ["*"]},
    {
        "name": "sidecar",
        "certificates": ["spiffe://example.org/ns/prod/sa/sidecar"],
        "tokens": [{"sha256": sha256(SIDECAR_TOKEN), "require_mtls": True}],
        "methods": ["ListProjectApiKeys"],
        "projects": ["*"],
    },
]  # fmt: skip
CREATED: list[str] = []


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_stack(tmp_path_factory.mktemp("mtls"), CALLERS, mutual=True) as running:
        yield running


@pytest.fixture(scope="module")
def certs(gateway: Secured) -> dict[str, Issued]:
    ca = gateway.ca
    return {
        # A DNS SAN and a CN that name other callers do not count behind a URI SAN.
        "uri": ca.issue(
            "legacy-keys", uris=("spiffe://example.org/ns/prod/sa/keys",), dns=("keys.prod.internal",)
        ),
        "dns": ca.issue("legacy-keys", dns=("keys.prod.internal",)),
        "cn": ca.issue("legacy-keys"),
        "unknown": ca.issue("stranger", uris=("spiffe://example.org/ns/dev/sa/other",)),
        "sidecar": ca.issue("sidecar", uris=("spiffe://example.org/ns/prod/sa/sidecar",)),
        "expired": ca.issue("legacy-keys", expired=True),
        "untrusted": Authority("another CA").issue(
            "legacy-keys", uris=("spiffe://example.org/ns/prod/sa/keys",)
        ),
    }


PROJECT_LIST = ("ListProjectApiKeys", pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT))
DATASET_LIST = ("ListDatasetApiKeys", pb.ListDatasetApiKeysRequest(dataset_hash=DEMO_DATASET))


@pytest.mark.parametrize(
    ("cert", "caller", "allowed", "denied"),
    [
        ("uri", "spiffe-service", PROJECT_LIST, DATASET_LIST),
        ("dns", "dns-service", DATASET_LIST, PROJECT_LIST),
        ("cn", "cn-service", PROJECT_LIST, DATASET_LIST),
    ],
)
def test_the_certificate_names_the_caller(
    gateway: Secured,
    certs: dict[str, Issued],
    cert: str,
    caller: str,
    allowed: tuple[str, Any],
    denied: tuple[str, Any],
) -> None:
    stub = gateway.stub(client=certs[cert])
    ok = call(getattr(stub, allowed[0]), allowed[1])
    assert ok.code == grpc.StatusCode.OK
    line = gateway.audit_for(ok.trace_id)
    assert (line["caller"], line["auth"], line["outcome"]) == (caller, "mtls", "OK")
    refused = call(getattr(stub, denied[0]), denied[1])
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.reason == "METHOD_NOT_ALLOWED_FOR_CALLER"
    assert gateway.audit_for(refused.trace_id)["caller"] == caller


def test_a_certified_caller_mints_within_its_ceiling(gateway: Secured, certs: dict[str, Issued]) -> None:
    stub = gateway.stub(client=certs["uri"])
    outcome = call(
        stub.CreateProjectApiKey,
        pb.CreateProjectApiKeyRequest(
            project_hash=DEMO_PROJECT, title="mtls", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        ),
    )
    assert outcome.code == grpc.StatusCode.OK
    assert outcome.response.api_key
    CREATED.append(outcome.response.api_key)
    line = gateway.audit_for(outcome.trace_id)
    assert line["fingerprint"] == outcome.response.fingerprint
    assert line["caller"] == "spiffe-service"


def test_a_trusted_certificate_of_no_caller_is_unauthenticated(
    gateway: Secured, certs: dict[str, Issued]
) -> None:
    outcome = call(gateway.stub(client=certs["unknown"]).ListProjectApiKeys, PROJECT_LIST[1])
    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED
    assert outcome.reason == "INVALID_CREDENTIALS"
    line = gateway.audit_for(outcome.trace_id)
    assert line["identity"] == "spiffe://example.org/ns/dev/sa/other"
    assert "not a configured caller" in line["detail"]


@pytest.mark.parametrize("cert", ["expired", "untrusted", None])
def test_a_bad_or_missing_certificate_fails_the_handshake(
    gateway: Secured, certs: dict[str, Issued], cert: str | None
) -> None:
    audited = len(gateway.audit())
    outcome = call(gateway.stub(client=certs[cert] if cert else None).ListProjectApiKeys, PROJECT_LIST[1])
    # No TLS session, so no call: gRPC reports the refused handshake as UNAVAILABLE.
    assert outcome.code == grpc.StatusCode.UNAVAILABLE
    assert len(gateway.audit()) == audited


def test_a_token_restricted_to_mtls_works_with_its_callers_certificate(
    gateway: Secured, certs: dict[str, Issued]
) -> None:
    outcome = call(
        gateway.stub(client=certs["sidecar"], token=SIDECAR_TOKEN).ListProjectApiKeys, PROJECT_LIST[1]
    )
    assert outcome.code == grpc.StatusCode.OK
    line = gateway.audit_for(outcome.trace_id)
    assert (line["caller"], line["auth"]) == ("sidecar", "mtls+token")
    # The certificate behind an allowed call is on its record.
    assert line["identity"] == "spiffe://example.org/ns/prod/sa/sidecar"


def test_a_token_restricted_to_mtls_is_refused_with_another_certificate_of_the_ca(
    gateway: Secured, certs: dict[str, Issued]
) -> None:
    outcome = call(
        gateway.stub(client=certs["unknown"], token=SIDECAR_TOKEN).ListProjectApiKeys, PROJECT_LIST[1]
    )
    assert (outcome.code, outcome.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    line = gateway.audit_for(outcome.trace_id)
    assert "valid only with a certificate of caller 'sidecar'" in line["detail"]
    assert line["identity"] == "spiffe://example.org/ns/dev/sa/other"


def test_an_allowed_mtls_call_records_the_certificate_identity(
    gateway: Secured, certs: dict[str, Issued]
) -> None:
    outcome = call(gateway.stub(client=certs["uri"]).ListProjectApiKeys, PROJECT_LIST[1])
    assert outcome.code == grpc.StatusCode.OK
    line = gateway.audit_for(outcome.trace_id)
    assert (line["caller"], line["auth"]) == ("spiffe-service", "mtls")
    assert line["identity"] == "spiffe://example.org/ns/prod/sa/keys"


def test_a_certificate_and_a_token_of_different_callers_are_refused(
    gateway: Secured, certs: dict[str, Issued]
) -> None:
    outcome = call(gateway.stub(client=certs["uri"], token=SIDECAR_TOKEN).ListProjectApiKeys, PROJECT_LIST[1])
    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED
    assert "'spiffe-service'" in gateway.audit_for(outcome.trace_id)["detail"]


def test_no_log_or_audit_file_holds_a_key_or_a_token(gateway: Secured, certs: dict[str, Issued]) -> None:
    listed = call(gateway.stub(client=certs["uri"]).ListProjectApiKeys, PROJECT_LIST[1])
    CREATED.extend(k.api_key for k in listed.response.api_keys)
    assert_no_key_in(gateway.files_to_scan(), [*CREATED, SIDECAR_TOKEN])
