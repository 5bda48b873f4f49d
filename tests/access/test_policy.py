"""The [[callers]] policy, authentication and the gatekeeper, in process: tables of cases, no network."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import grpc
import pytest
from encord_gateway import errors
from encord_gateway.access.auth import AuthFailure, _WithoutCredentials, authenticate, certificate_identities
from encord_gateway.access.gatekeeper import Access, Gatekeeper, KeyIntent
from encord_gateway.access.inflight import InFlight
from encord_gateway.access.policy import PRINCIPAL, Policy, PolicyHolder, Principal
from encord_gateway.access.policy_toml import load_policy
from encord_gateway.access.ratelimit import Rate, RateLimits, TokenBucket
from encord_gateway.config import ConfigError
from encord_gateway.context import AuditFacts, CallRecord
from encord_gateway.scopes import ALL_DATASET_SCOPES, ALL_PROJECT_SCOPES

PROJECT = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"
OTHER_PROJECT = "11111111-2222-4333-8444-555555555555"
DATASET = "0c2f1f0e-7f37-4a0e-8c47-1d2e9a6b5f21"
VENDOR_TOKEN = "vendor-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
MTLS_TOKEN = "mtls-token-0123456789"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


DOCUMENT: dict[str, Any] = {
    "callers": [
        {
            "name": "vendor",
            "tokens": [{"sha256": sha(VENDOR_TOKEN)}],
            "methods": ["ListProjectApiKeys", "CreateProjectApiKey"],
            "projects": [PROJECT.upper()],  # hashes are matched in lower case, as requests are
            "project_scopes": ["label.read", "API_KEY_SCOPE_LABEL_LOGS_READ"],
            "rate_limit": {"per_second": 1.0, "burst": 2},
        },
        {
            "name": "admin",
            "tokens": [{"sha256": sha(ADMIN_TOKEN)}],
            "certificates": ["spiffe://example.org/admin"],
            "methods": ["*"],
            "projects": ["*"],
            "datasets": ["*"],
            "project_scopes": ["*"],
            "dataset_scopes": ["*"],
            "reveal_keys": True,
        },
        {
            "name": "sidecar",
            "tokens": [{"sha256": sha(MTLS_TOKEN), "require_mtls": True}],
            "certificates": ["sidecar.internal"],
            "methods": ["ListDatasetApiKeys"],
            "datasets": [DATASET],
        },
    ]
}
POLICY = load_policy(DOCUMENT)


def caller(name: str) -> Any:
    return next(c for c in POLICY.callers if c.name == name)


# Parsing ---------------------------------------------------------------------------------------------


def test_a_policy_document_is_parsed() -> None:
    vendor = caller("vendor")
    assert vendor.projects.permits(PROJECT)
    assert not vendor.projects.permits(OTHER_PROJECT)
    assert vendor.project_scopes == {"label.read", "label_logs.read"}
    assert vendor.dataset_scopes == frozenset()
    assert vendor.rate == Rate(1.0, 2)
    assert not vendor.reveal_keys
    admin = caller("admin")
    assert admin.project_scopes == set(ALL_PROJECT_SCOPES)
    assert admin.dataset_scopes == set(ALL_DATASET_SCOPES)
    assert admin.datasets.permits(DATASET)
    assert admin.reveal_keys
    assert len(admin.methods) == 6
    assert Policy().open
    assert not POLICY.open


def _with(**changes: Any) -> dict[str, Any]:
    entry = {"name": "x", "tokens": [{"sha256": "a" * 64}], **changes}
    return {"callers": [{k: v for k, v in entry.items() if v is not None}]}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"callers": {"name": "x"}}, "array of tables"),
        ({"callers": [{"tokens": [{"sha256": "a" * 64}]}]}, "name is required"),
        (_with(tokens=None), "needs certificates or tokens"),
        (_with(tokens=[{"sha256": "not-hex"}]), "64 hex digits"),
        (_with(tokens=[{"sha256": "a" * 64, "token": "raw"}]), "unknown token keys token"),
        (_with(tokens=[{"sha256": "a" * 64, "require_mtls": "yes"}]), "require_mtls must be true or false"),
        (_with(methods=["DeleteEverything"]), "unknown methods DeleteEverything"),
        (_with(projects=["not-a-uuid"]), 'neither "*" nor a UUID'),
        (_with(project_scopes=["label.delete"]), "unknown scope 'label.delete'"),
        (_with(dataset_scopes=["label.read"]), "unknown scope 'label.read'"),
        (_with(reveal_keys="true"), "reveal_keys must be true or false"),
        (_with(max_in_flight=0), "max_in_flight must be a whole number from 1 to 10000"),
        (_with(max_in_flight=10_001), "max_in_flight must be a whole number from 1 to 10000"),
        (_with(max_in_flight=2.5), "max_in_flight must be a whole number from 1 to 10000"),
        (_with(max_in_flight=True), "max_in_flight must be a whole number from 1 to 10000"),
        (_with(rate_limit={"per_second": 0}), "per_second must be a number above 0"),
        (_with(rate_limit={"per_second": 1, "burst": 0}), "burst must be a whole number"),
        (_with(rate_limit={"per_second": 1, "every": 2}), "rate_limit must be a table"),
        # Not finite, or beyond any real rate: inf crashed the bucket's ceil(), 1e300 overflowed it.
        (_with(rate_limit={"per_second": math.inf}), "per_second must be a number above 0 and at most"),
        (_with(rate_limit={"per_second": math.nan}), "per_second must be a number above 0 and at most"),
        (_with(rate_limit={"per_second": 1e300}), "per_second must be a number above 0 and at most"),
        (_with(rate_limit={"per_second": True}), "per_second must be a number above 0 and at most"),
        (_with(rate_limit={"per_second": 1, "burst": 2**200}), "burst must be a whole number from 1 to"),
        (_with(admin=True), "unknown keys admin"),
        (_with(methods="*"), "methods must be a list"),
        ({"callers": [_with()["callers"][0], {**_with()["callers"][0], "name": "y"}]}, "token sha256"),
        ({"callers": [_with()["callers"][0], {**_with()["callers"][0]}]}, "caller name 'x' appears more"),
        (
            {
                "callers": [
                    {"name": "a", "certificates": ["same"]},
                    {"name": "b", "certificates": ["same"]},
                ]
            },
            "certificate identity 'same'",
        ),
    ],
)
def test_a_broken_policy_is_refused_with_a_reason(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        load_policy(document)


def test_no_callers_is_the_open_policy() -> None:
    assert load_policy({}).open


# Authentication --------------------------------------------------------------------------------------

NO_CERT: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}


def cert(*, uris: tuple[str, ...] = (), dns: tuple[str, ...] = (), cn: str = "") -> dict[str, list[bytes]]:
    context = {"x509_pem_cert": [b"-----BEGIN CERTIFICATE-----"], "x509_common_name": [cn.encode()]}
    if uris:
        context["peer_uri"] = [u.encode() for u in uris]
    if dns:
        context["peer_dns"] = [d.encode() for d in dns]
    return context


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.mark.parametrize(
    ("context", "metadata", "name", "how"),
    [
        (NO_CERT, bearer(VENDOR_TOKEN), "vendor", "token"),
        (NO_CERT, [("authorization", f"bearer   {ADMIN_TOKEN} ")], "admin", "token"),
        (cert(uris=("spiffe://example.org/admin",), cn="ignored"), [], "admin", "mtls"),
        (cert(dns=("sidecar.internal",)), [], "sidecar", "mtls"),
        (cert(cn="sidecar.internal"), [], "sidecar", "mtls"),
        (cert(dns=("sidecar.internal",)), bearer(MTLS_TOKEN), "sidecar", "mtls+token"),
        (cert(uris=("spiffe://example.org/admin",)), bearer(ADMIN_TOKEN), "admin", "mtls+token"),
    ],
)
def test_callers_are_recognised(
    context: dict[str, list[bytes]], metadata: list[tuple[str, str]], name: str, how: str
) -> None:
    principal = authenticate(POLICY, context, metadata, mtls=True)
    assert (principal.name, principal.auth) == (name, how)
    assert principal.rule is caller(name)


@pytest.mark.parametrize(
    ("context", "metadata", "reason", "detail"),
    [
        (NO_CERT, [], "NO_CREDENTIALS", "no client certificate and no bearer token"),
        (NO_CERT, bearer("guessed-token"), "INVALID_CREDENTIALS", "unknown bearer token"),
        (NO_CERT, [("authorization", f"Basic {VENDOR_TOKEN}")], "INVALID_CREDENTIALS", "not one 'Bearer"),
        (NO_CERT, [("authorization", "Bearer ")], "INVALID_CREDENTIALS", "not one 'Bearer"),
        (NO_CERT, bearer(VENDOR_TOKEN) + bearer(ADMIN_TOKEN), "INVALID_CREDENTIALS", "not one 'Bearer"),
        (NO_CERT, bearer(MTLS_TOKEN), "INVALID_CREDENTIALS", "valid only with mutual TLS"),
        # require_mtls wants a certificate of the same caller, not any certificate of the client CA.
        (
            cert(dns=("unknown.internal",)),
            bearer(MTLS_TOKEN),
            "INVALID_CREDENTIALS",
            "valid only with a certificate of caller 'sidecar'",
        ),
        (cert(cn="stranger"), [], "INVALID_CREDENTIALS", "'stranger' is not a configured caller"),
        # The URI SAN is the identity; a matching DNS SAN or CN behind it does not count.
        (cert(uris=("spiffe://x/y",), dns=("sidecar.internal",)), [], "INVALID_CREDENTIALS", "spiffe://x/y"),
        (
            cert(uris=("spiffe://example.org/admin",)),
            bearer(VENDOR_TOKEN),
            "INVALID_CREDENTIALS",
            "different",
        ),
    ],
)
def test_strangers_are_refused(
    context: dict[str, list[bytes]], metadata: list[tuple[str, str]], reason: str, detail: str
) -> None:
    with pytest.raises(AuthFailure) as refused:
        authenticate(POLICY, context, metadata, mtls=True)
    assert refused.value.reason == reason
    assert detail.replace("different", "but the token is") in refused.value.detail
    for token in (VENDOR_TOKEN, ADMIN_TOKEN, MTLS_TOKEN, "guessed-token"):
        assert token not in refused.value.detail


def test_certificate_identities_are_ignored_without_mutual_tls() -> None:
    with pytest.raises(AuthFailure, match="no client certificate"):
        authenticate(POLICY, cert(uris=("spiffe://example.org/admin",)), [], mtls=False)


def test_certificate_identity_prefers_uri_then_dns_then_cn() -> None:
    assert certificate_identities(cert(uris=("u1", "u2"), dns=("d",), cn="c")) == ("u1", "u2")
    assert certificate_identities(cert(dns=("d",), cn="c")) == ("d",)
    assert certificate_identities(cert(cn="c")) == ("c",)
    assert certificate_identities(NO_CERT) == ()


def test_the_open_policy_lets_anyone_in_and_names_certified_callers() -> None:
    assert authenticate(Policy(), NO_CERT, [], mtls=False).name == "anonymous"
    principal = authenticate(Policy(), cert(uris=("spiffe://a/b",)), bearer("whatever"), mtls=True)
    assert (principal.name, principal.rule, principal.auth) == ("spiffe://a/b", None, "mtls")


class _Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer secret"), ("x-cloud-trace-context", "abc"))

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def test_the_servicer_never_sees_the_authorization_metadata() -> None:
    context = _WithoutCredentials(_Context())  # type: ignore[arg-type]
    assert context.invocation_metadata() == (("x-cloud-trace-context", "abc"),)
    assert context.peer() == "ipv4:127.0.0.1:1"


# The gatekeeper --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(method: str) -> CallRecord:
    return CallRecord(method=method, trace_id="t" * 32, started=0.0)


def admitted(gatekeeper: Gatekeeper, name: str, method: str, intent: KeyIntent) -> CallRecord:
    return admitted_with_access(gatekeeper, name, method, intent)[0]


def admitted_with_access(
    gatekeeper: Gatekeeper, name: str, method: str, intent: KeyIntent
) -> tuple[CallRecord, Access | None]:
    """Runs the gatekeeper as the servicer would, as caller `name`; raises what the gatekeeper raises."""
    rec = record(method)
    access = None
    token = PRINCIPAL.set(Principal(name, caller(name), "token"))
    try:
        if method.startswith("List"):
            access = gatekeeper.read(rec, intent)
        else:
            with gatekeeper.mint(rec, intent, validate_only=False) as minting:
                minting.key("the-minted-key", intent.scopes, created=True)
    finally:
        PRINCIPAL.reset(token)
    return rec, access


GATEKEEPER_CASES = [
    # (caller, method, intent, reason or "" if allowed)
    ("vendor", "ListProjectApiKeys", KeyIntent.project(PROJECT), ""),
    ("vendor", "GetOrCreateProjectApiKey", KeyIntent.project(PROJECT, "t", ALL_PROJECT_SCOPES),
     "METHOD_NOT_ALLOWED_FOR_CALLER"),
    ("vendor", "ListProjectApiKeys", KeyIntent.project(OTHER_PROJECT), "RESOURCE_NOT_ALLOWED"),
    ("vendor", "CreateProjectApiKey", KeyIntent.project(PROJECT, "t", ("label.read",)), ""),
    ("vendor", "CreateProjectApiKey", KeyIntent.project(PROJECT, "t", ("label.read", "label.write")),
     "SCOPE_ABOVE_CEILING"),
    ("admin", "GetOrCreateDatasetApiKey", KeyIntent.dataset(DATASET, "t", ALL_DATASET_SCOPES), ""),
    ("sidecar", "ListDatasetApiKeys", KeyIntent.dataset(DATASET), ""),
    ("sidecar", "ListProjectApiKeys", KeyIntent.project(PROJECT), "METHOD_NOT_ALLOWED_FOR_CALLER"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "intent", "reason"), GATEKEEPER_CASES)
def test_each_rule_allows_and_denies(name: str, method: str, intent: KeyIntent, reason: str) -> None:
    gatekeeper = Gatekeeper(PolicyHolder(POLICY))
    if not reason:
        rec = admitted(gatekeeper, name, method, intent)
        assert rec.caller == name
        return
    with pytest.raises(errors.PolicyDenied) as denied:
        admitted(gatekeeper, name, method, intent)
    assert denied.value.reason == reason
    assert denied.value.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.extra_metadata["caller"] == name


def test_a_scope_above_the_ceiling_is_named() -> None:
    gatekeeper = Gatekeeper(PolicyHolder(POLICY))
    intent = KeyIntent.project(PROJECT, "t", ("label.read", "label.write", "model.train"))
    with pytest.raises(errors.PolicyDenied) as denied:
        admitted(gatekeeper, "vendor", "CreateProjectApiKey", intent)
    assert "label.write, model.train" in denied.value.message
    assert denied.value.extra_metadata["scopes_over_ceiling"] == "label.write,model.train"


def test_a_master_key_needs_the_whole_ceiling() -> None:
    document = {"callers": [{**DOCUMENT["callers"][1], "project_scopes": list(ALL_PROJECT_SCOPES[:-1])}]}
    policy = load_policy(document)
    gatekeeper = Gatekeeper(PolicyHolder(policy))
    rec = record("GetOrCreateProjectApiKey")
    token = PRINCIPAL.set(Principal("admin", policy.callers[0], "token"))
    master = gatekeeper.mint(rec, KeyIntent.project(PROJECT, "t", ALL_PROJECT_SCOPES), validate_only=False)
    try:
        gatekeeper.read(rec, KeyIntent.project(PROJECT))  # reading is fine; minting a master key is not
        with pytest.raises(
            errors.PolicyDenied, match=f"a master key has every scope.*{ALL_PROJECT_SCOPES[-1]}"
        ):
            master.__enter__()
    finally:
        PRINCIPAL.reset(token)


def test_reveal_follows_the_grant() -> None:
    gatekeeper = Gatekeeper(PolicyHolder(POLICY))
    _, vendor = admitted_with_access(gatekeeper, "vendor", "ListProjectApiKeys", KeyIntent.project(PROJECT))
    _, admin = admitted_with_access(gatekeeper, "admin", "ListProjectApiKeys", KeyIntent.project(PROJECT))
    assert vendor is not None
    assert not vendor.reveal_keys
    assert admin is not None
    assert admin.reveal_keys


def test_without_an_authenticated_caller_a_configured_gatekeeper_refuses() -> None:
    with pytest.raises(errors.Unauthenticated):
        Gatekeeper(PolicyHolder(POLICY)).read(record("ListProjectApiKeys"), KeyIntent.project(PROJECT))
    # The open gatekeeper (no callers) lets the anonymous caller in and reveals keys.
    assert (
        Gatekeeper(PolicyHolder(Policy()))
        .read(record("ListProjectApiKeys"), KeyIntent.project(PROJECT))
        .reveal_keys
    )


def test_the_rate_limit_answers_with_a_retry_delay() -> None:
    clock = Clock()
    gatekeeper = Gatekeeper(PolicyHolder(POLICY), limits=RateLimits(clock))
    intent = KeyIntent.project(PROJECT)
    admitted(gatekeeper, "vendor", "ListProjectApiKeys", intent)
    admitted(gatekeeper, "vendor", "ListProjectApiKeys", intent)
    with pytest.raises(errors.RateLimited) as limited:
        admitted(gatekeeper, "vendor", "ListProjectApiKeys", intent)
    assert limited.value.retry_after_s == pytest.approx(1.0)
    assert limited.value.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    admitted(gatekeeper, "admin", "ListProjectApiKeys", intent)  # another caller's bucket is its own
    clock.now += 1.0
    admitted(gatekeeper, "vendor", "ListProjectApiKeys", intent)


def test_a_token_bucket_refills_at_its_rate_and_a_retune_is_no_free_refill() -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(2.0, 3), clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0
    bucket.retune(Rate(10.0, 30))
    assert bucket.take() == pytest.approx(0.1)


def test_a_minted_key_is_audited_by_fingerprint_before_it_is_returned() -> None:
    class Trail:
        def __init__(self) -> None:
            self.lines: list[AuditFacts] = []

        def commit(self, rec: CallRecord, facts: AuditFacts) -> None:
            self.lines.append(facts)

    trail = Trail()
    gatekeeper = Gatekeeper(PolicyHolder(POLICY), audit=trail)  # type: ignore[arg-type]
    rec = admitted(
        gatekeeper, "admin", "CreateProjectApiKey", KeyIntent.project(PROJECT, "t", ("label.read",))
    )
    [facts] = trail.lines
    assert facts is rec.audit
    assert facts.fingerprint == hashlib.sha256(b"the-minted-key").hexdigest()[:16]
    assert (facts.key_returned, facts.created, facts.scopes_granted) == (True, True, ("label.read",))
    assert "the-minted-key" not in repr(facts)


def test_validate_only_mints_nothing_and_is_marked() -> None:
    gatekeeper = Gatekeeper(PolicyHolder(POLICY))
    rec = record("CreateProjectApiKey")
    token = PRINCIPAL.set(Principal("admin", caller("admin"), "token"))
    try:
        with gatekeeper.mint(rec, KeyIntent.project(PROJECT, "t", ("label.read",)), validate_only=True):
            pass  # the servicer lists instead of creating
    finally:
        PRINCIPAL.reset(token)
    facts = rec.audit
    assert facts is not None
    assert facts.validate_only
    assert not facts.key_returned
    assert facts.fingerprint == ""


@pytest.mark.parametrize("validate_only", [True, False], ids=["key-on-a-dry-run", "no-key-on-a-mint"])
def test_a_mint_that_contradicts_validate_only_is_a_bug_not_an_audit_line(validate_only: bool) -> None:
    class Trail:
        def __init__(self) -> None:
            self.lines: list[AuditFacts] = []

        def commit(self, rec: CallRecord, facts: AuditFacts) -> None:
            self.lines.append(facts)

    trail = Trail()
    gatekeeper = Gatekeeper(PolicyHolder(POLICY), audit=trail)  # type: ignore[arg-type]
    rec = record("CreateProjectApiKey")
    token = PRINCIPAL.set(Principal("admin", caller("admin"), "token"))
    try:
        minting = gatekeeper.mint(
            rec, KeyIntent.project(PROJECT, "t", ("label.read",)), validate_only=validate_only
        )
        with pytest.raises(RuntimeError, match=f"validate_only={validate_only}"), minting as filled:
            filled.key("the-minted-key", ("label.read",)) if validate_only else None
    finally:
        PRINCIPAL.reset(token)
    assert trail.lines == []
    assert rec.audit is not None
    assert not rec.audit.validate_only
    assert not rec.audit.key_returned


def test_a_call_keeps_the_rule_it_was_authenticated_under_across_a_reload() -> None:
    holder = PolicyHolder(POLICY)
    gatekeeper = Gatekeeper(holder)
    principal = authenticate(holder.current, NO_CERT, bearer(VENDOR_TOKEN), mtls=False)
    # A reload removes the vendor while its call is in flight...
    holder.current = load_policy({"callers": [DOCUMENT["callers"][1]]})
    token = PRINCIPAL.set(principal)
    try:
        # ...and the call still finishes under the rule it began with.
        assert not gatekeeper.read(record("ListProjectApiKeys"), KeyIntent.project(PROJECT)).reveal_keys
    finally:
        PRINCIPAL.reset(token)
    with pytest.raises(AuthFailure):
        authenticate(holder.current, NO_CERT, bearer(VENDOR_TOKEN), mtls=False)  # the next call does not


def test_max_in_flight_defaults_to_16_and_is_read() -> None:
    assert load_policy(_with()).callers[0].max_in_flight == 16
    assert load_policy(_with(max_in_flight=3)).callers[0].max_in_flight == 3


def test_the_in_flight_ceiling_refuses_at_once_and_frees_its_slot() -> None:
    in_flight = InFlight()
    with in_flight.slot("caller:a", 2, "this caller"), in_flight.slot("caller:a", 2, "this caller"):
        with pytest.raises(errors.TooManyInFlight), in_flight.slot("caller:a", 2, "this caller"):
            pass
        with in_flight.slot("caller:b", 2, "this caller"):  # another caller has its own slots
            assert in_flight.running("caller:b") == 1
    assert in_flight.running("caller:a") == 0
