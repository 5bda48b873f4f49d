"""The [[callers]] policy model: who each caller is, what it may do, and the policy in force."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from encord_gateway_client.v1 import api_keys_pb2 as pb

from encord_gateway.access.ratelimit import Rate

log = logging.getLogger(__name__)

METHODS = tuple(pb.DESCRIPTOR.services_by_name["ApiKeyService"].methods_by_name)
WILDCARD = "*"


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


DEFAULT_MAX_IN_FLIGHT = 16
MAX_IN_FLIGHT_CEILING = 10_000


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
    # Calls of this caller running at once: one caller whose calls hang cannot take every worker.
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

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
    identity: str = ""  # the client certificate's identity, when one was presented


# Set by the authentication interceptor while a call runs (auth.py).
PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "encord_gateway_principal", default=None
)
ANONYMOUS = Principal("anonymous")
