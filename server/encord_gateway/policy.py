"""Who may ask for what: the [[callers]] policy, and the gatekeeper every RPC passes after validation."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import logging
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from encord_gateway_client.v1 import api_keys_pb2 as pb

from encord_gateway import errors
from encord_gateway.audit import AUDIT_FACTS, AuditFacts, AuditTrail
from encord_gateway.calls import CallRecord
from encord_gateway.config import ConfigError
from encord_gateway.ratelimit import Rate, RateLimits
from encord_gateway.redaction import fingerprint
from encord_gateway.scopes import DATASET_SCOPES, PROJECT_SCOPES

log = logging.getLogger(__name__)

METHODS = tuple(pb.DESCRIPTOR.services_by_name["ApiKeyService"].methods_by_name)
WILDCARD = "*"


# The request --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyIntent:
    """What a call wants to touch or mint, in Encord's terms."""

    kind: str  # "project" or "dataset"
    resource_hash: str
    title: str = ""
    scopes: tuple[str, ...] = ()

    @classmethod
    def project(cls, resource_hash: str, title: str = "", scopes: tuple[str, ...] = ()) -> KeyIntent:
        return cls("project", resource_hash, title, scopes)

    @classmethod
    def dataset(cls, resource_hash: str, title: str = "", scopes: tuple[str, ...] = ()) -> KeyIntent:
        return cls("dataset", resource_hash, title, scopes)


@dataclass(frozen=True)
class Access:
    """What an allowed read may see."""

    reveal_keys: bool = True


@dataclass
class Minting:
    """Filled in by the servicer once Encord has minted (or found) a key."""

    api_key: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ()
    created: bool = True
    done: bool = field(default=False)

    def key(self, api_key: str, scopes: tuple[str, ...], *, created: bool = True) -> None:
        self.api_key, self.scopes, self.created, self.done = api_key, scopes, created, True


# The policy -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """A set of resource hashes, or every resource."""

    everything: bool = False
    hashes: frozenset[str] = frozenset()

    def permits(self, resource_hash: str) -> bool:
        return self.everything or resource_hash in self.hashes


@dataclass(frozen=True)
class TokenRule:
    digest: bytes = field(repr=False)
    require_mtls: bool = False


@dataclass(frozen=True)
class CallerRule:
    """One [[callers]] entry: how the caller is recognised and what it may do."""

    name: str
    certificates: frozenset[str] = frozenset()
    tokens: tuple[TokenRule, ...] = ()
    methods: frozenset[str] = frozenset()
    projects: Grant = Grant()
    datasets: Grant = Grant()
    project_scopes: frozenset[str] = frozenset()
    dataset_scopes: frozenset[str] = frozenset()
    reveal_keys: bool = False
    rate: Rate | None = None

    def resources(self, kind: str) -> Grant:
        return self.projects if kind == "project" else self.datasets

    def ceiling(self, kind: str) -> frozenset[str]:
        return self.project_scopes if kind == "project" else self.dataset_scopes


@dataclass(frozen=True)
class Policy:
    """Every caller; with none, the gateway is open (anyone who reaches the port may do anything)."""

    callers: tuple[CallerRule, ...] = ()

    @property
    def open(self) -> bool:
        return not self.callers

    def by_token(self, token: str) -> tuple[CallerRule, TokenRule] | None:
        """The token's SHA-256 against every configured digest, in constant time, never stopping early."""
        digest = hashlib.sha256(token.encode()).digest()
        found: tuple[CallerRule, TokenRule] | None = None
        for caller in self.callers:
            for rule in caller.tokens:
                if hmac.compare_digest(digest, rule.digest) and found is None:
                    found = (caller, rule)
        return found

    def by_certificate(self, identities: Iterable[str]) -> list[CallerRule]:
        wanted = set(identities)
        return [c for c in self.callers if c.certificates & wanted]


class PolicyHolder:
    """The policy in force: a reload replaces `.current` at once; calls keep the one they began with."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the authentication interceptor established it; `rule` None means the open policy."""

    name: str
    rule: CallerRule | None = None
    auth: str = "none"  # "none", "mtls", "token" or "mtls+token"


# Set by the authentication interceptor while a call runs (auth.py).
PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "encord_gateway_principal", default=None
)
ANONYMOUS = Principal("anonymous")


# Parsing [[callers]] --------------------------------------------------------------------------------

_CALLER_KEYS = {
    "name", "certificates", "tokens", "methods", "projects", "datasets",
    "project_scopes", "dataset_scopes", "reveal_keys", "rate_limit",
}  # fmt: skip


def load_policy(document: Mapping[str, Any]) -> Policy:
    """The [[callers]] array of the config document as a Policy; a ConfigError names the first problem."""
    entries = document.get("callers", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError("callers must be an array of tables ([[callers]])")
    callers = tuple(_caller(entry, n) for n, entry in enumerate(entries, 1))
    _unique([c.name for c in callers], "caller name")
    _unique([i for c in callers for i in c.certificates], "certificate identity")
    _unique([t.digest.hex() for c in callers for t in c.tokens], "token sha256")
    return Policy(callers)


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"callers: {what} {value!r} appears more than once")
        seen.add(value)


def _strings(entry: dict[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} must be a list of non-empty strings")
    return list(value)


def _caller(entry: dict[str, Any], n: int) -> CallerRule:
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"callers entry {n}: name is required")
    where = f"caller {name!r}"
    unknown = sorted(set(entry) - _CALLER_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(_CALLER_KEYS))})"
        )
    certificates = frozenset(_strings(entry, "certificates", where))
    tokens = _tokens(entry.get("tokens", []), where)
    if not certificates and not tokens:
        raise ConfigError(f"{where}: needs certificates or tokens, or nobody can be this caller")
    methods = _strings(entry, "methods", where)
    unknown_methods = sorted(set(methods) - {*METHODS, WILDCARD})
    if unknown_methods:
        raise ConfigError(
            f"{where}: unknown methods {', '.join(unknown_methods)} (known: {', '.join(METHODS)})"
        )
    reveal = entry.get("reveal_keys", False)
    if not isinstance(reveal, bool):
        raise ConfigError(f"{where}: reveal_keys must be true or false")
    return CallerRule(
        name=name,
        certificates=certificates,
        tokens=tokens,
        methods=frozenset(METHODS) if WILDCARD in methods else frozenset(methods),
        projects=_grant(_strings(entry, "projects", where), f"{where}: projects"),
        datasets=_grant(_strings(entry, "datasets", where), f"{where}: datasets"),
        project_scopes=_ceiling(
            _strings(entry, "project_scopes", where), PROJECT_SCOPES, f"{where}: project_scopes"
        ),
        dataset_scopes=_ceiling(
            _strings(entry, "dataset_scopes", where), DATASET_SCOPES, f"{where}: dataset_scopes"
        ),
        reveal_keys=reveal,
        rate=_rate(entry.get("rate_limit"), where),
    )


def _tokens(value: Any, where: str) -> tuple[TokenRule, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f'{where}: tokens must be a list of tables such as {{ sha256 = "<64 hex>" }}')
    rules = []
    for item in value:
        unknown = sorted(set(item) - {"sha256", "require_mtls"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown token keys {', '.join(unknown)} (allowed: sha256, require_mtls)"
            )
        digest, require_mtls = item.get("sha256"), item.get("require_mtls", False)
        # The config holds digests only; a raw token here would be a secret in a config file.
        if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
            raise ConfigError(f"{where}: token sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)")
        if not isinstance(require_mtls, bool):
            raise ConfigError(f"{where}: token require_mtls must be true or false")
        rules.append(TokenRule(bytes.fromhex(digest), require_mtls))
    return tuple(rules)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _grant(values: list[str], where: str) -> Grant:
    if WILDCARD in values:
        return Grant(everything=True)
    hashes = set()
    for value in values:
        try:
            hashes.add(str(uuid.UUID(value)))
        except ValueError:
            raise ConfigError(f'{where}: {value!r} is neither "*" nor a UUID hash') from None
    return Grant(hashes=frozenset(hashes))


def _ceiling(values: list[str], known: Mapping[Any, str], where: str) -> frozenset[str]:
    """Encord's scope strings ("label.read") or the proto enum names; "*" is every scope."""
    if WILDCARD in values:
        return frozenset(known.values())
    by_enum = {
        (pb.ApiKeyScope if known is PROJECT_SCOPES else pb.DatasetScope).Name(n): s for n, s in known.items()
    }
    scopes = set()
    for value in values:
        scope = by_enum.get(value, value)
        if scope not in known.values():
            raise ConfigError(f"{where}: unknown scope {value!r} (known: {', '.join(known.values())})")
        scopes.add(scope)
    return frozenset(scopes)


def _rate(value: Any, where: str) -> Rate | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"per_second", "burst"}:
        raise ConfigError(f"{where}: rate_limit must be a table {{ per_second = N, burst = N }}")
    per_second = value.get("per_second")
    if isinstance(per_second, bool) or not isinstance(per_second, int | float) or not per_second > 0:
        raise ConfigError(f"{where}: rate_limit.per_second must be a number above 0")
    burst = value.get("burst", max(1, math.ceil(per_second)))
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"{where}: rate_limit.burst must be a whole number of at least 1")
    return Rate(float(per_second), burst)


# The gatekeeper -------------------------------------------------------------------------------------


class RuleDenied(errors.PolicyDenied):
    """PERMISSION_DENIED whose ErrorInfo also names the caller and the rule's particulars."""

    def __init__(self, message: str, *, reason: str, caller: str, **extra: str) -> None:
        super().__init__(message, reason=reason)
        self.extra = {"caller": caller, **extra}

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), **self.extra}


class Gatekeeper:
    """Admits or refuses each call by the caller's rule, and audits what was minted before it is returned.

    Without a holder it is the open gatekeeper: every request allowed and every key revealed.
    """

    def __init__(
        self,
        holder: PolicyHolder | None = None,
        audit: AuditTrail | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        self._holder = holder
        self._audit = audit
        self._limits = limits or RateLimits()

    def read(self, record: CallRecord, intent: KeyIntent) -> Access:
        principal, _ = self._admit(record, intent, minting=False)
        return Access(reveal_keys=principal.rule is None or principal.rule.reveal_keys)

    @contextlib.contextmanager
    def mint(self, record: CallRecord, intent: KeyIntent) -> Iterator[Minting]:
        _, facts = self._admit(record, intent, minting=True)
        minting = Minting()
        yield minting
        if not minting.done:
            facts.validate_only = True  # nothing minted; the call-end audit line says so
            return
        facts.key_returned, facts.created = True, minting.created
        facts.scopes_granted, facts.fingerprint = minting.scopes, fingerprint(minting.api_key)
        if self._audit is not None:
            # Fail closed: no audit line, no key. Raised here, the key never reaches the response.
            self._audit.commit(record, facts)

    def _admit(self, record: CallRecord, intent: KeyIntent, *, minting: bool) -> tuple[Principal, AuditFacts]:
        principal = PRINCIPAL.get()
        if principal is None:
            if self._holder is not None and not self._holder.current.open:
                # Callers are configured but no interceptor vouched for this one: refuse, never open up.
                raise errors.Unauthenticated("no caller identity", reason="NO_CREDENTIALS")
            principal = ANONYMOUS
        record.caller = principal.name
        facts = AuditFacts(
            caller=principal.name,
            auth=principal.auth,
            kind=intent.kind,
            title=intent.title,
            scopes_asked=intent.scopes if minting else (),
        )
        record.extra[AUDIT_FACTS] = facts
        if principal.rule is not None:
            self._check(principal.rule, record.method, intent, minting=minting)
        return principal, facts

    def _check(self, rule: CallerRule, method: str, intent: KeyIntent, *, minting: bool) -> None:
        # The bucket comes first: refused calls cost a token too, so hammering denials is throttled.
        wait = self._limits.take(rule.name, rule.rate)
        if wait > 0:
            raise errors.RateLimited(
                f"caller {rule.name!r} is over its rate limit; retry in {wait:.2f}s", retry_after_s=wait
            )
        if method not in rule.methods:
            raise RuleDenied(
                f"caller {rule.name!r} may not call {method}",
                reason="METHOD_NOT_ALLOWED_FOR_CALLER", caller=rule.name, method=method,
            )  # fmt: skip
        if not rule.resources(intent.kind).permits(intent.resource_hash):
            raise RuleDenied(
                f"caller {rule.name!r} may not touch {intent.kind} {intent.resource_hash}",
                reason="RESOURCE_NOT_ALLOWED", caller=rule.name, resource_hash=intent.resource_hash,
            )  # fmt: skip
        if minting:
            over = [s for s in intent.scopes if s not in rule.ceiling(intent.kind)]
            if over:
                # GetOrCreate always asks for the master key, which carries every scope.
                why = "a master key has every scope, and " if method.startswith("GetOrCreate") else ""
                raise RuleDenied(
                    f"{why}caller {rule.name!r} may not put {', '.join(over)} on a {intent.kind} key "
                    f"(its ceiling: {', '.join(sorted(rule.ceiling(intent.kind))) or 'none'})",
                    reason="SCOPE_ABOVE_CEILING", caller=rule.name, scopes_over_ceiling=",".join(over),
                )  # fmt: skip
