"""Parsing the [[callers]] array of the config document into a Policy; errors name the first problem."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

from encord_gateway_client.v1 import api_keys_pb2 as pb

from encord_gateway.access.policy import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_CEILING,
    CallerRule,
    Grant,
    Policy,
    TokenRule,
)
from encord_gateway.access.ratelimit import Rate
from encord_gateway.config import ConfigError
from encord_gateway.scopes import DATASET_SCOPES, PROJECT_SCOPES

log = logging.getLogger(__name__)

METHODS = tuple(pb.DESCRIPTOR.services_by_name["ApiKeyService"].methods_by_name)
WILDCARD = "*"


# Parsing [[callers]] --------------------------------------------------------------------------------

_CALLER_KEYS = {
    "name", "certificates", "tokens", "methods", "projects", "datasets",
    "project_scopes", "dataset_scopes", "reveal_keys", "rate_limit", "max_in_flight",
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
    in_flight = entry.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT)
    whole = isinstance(in_flight, int) and not isinstance(in_flight, bool)
    if not whole or not 1 <= in_flight <= MAX_IN_FLIGHT_CEILING:
        raise ConfigError(f"{where}: max_in_flight must be a whole number from 1 to {MAX_IN_FLIGHT_CEILING}")
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
        max_in_flight=in_flight,
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


# A million calls a second, or a burst of a million: far above any gateway's, still exact in a float.
MAX_RATE = 1_000_000


def _rate(value: Any, where: str) -> Rate | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"per_second", "burst"}:
        raise ConfigError(f"{where}: rate_limit must be a table {{ per_second = N, burst = N }}")
    per_second = value.get("per_second")
    # `not 0 < x <= MAX` also refuses NaN; inf and 1e300 would overflow the bucket's arithmetic.
    if (
        not isinstance(per_second, int | float)
        or isinstance(per_second, bool)
        or not 0 < per_second <= MAX_RATE
    ):
        raise ConfigError(f"{where}: rate_limit.per_second must be a number above 0 and at most {MAX_RATE:g}")
    burst = value.get("burst", max(1, math.ceil(per_second)))
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_RATE:
        raise ConfigError(f"{where}: rate_limit.burst must be a whole number from 1 to {MAX_RATE:g}")
    return Rate(float(per_second), burst)
