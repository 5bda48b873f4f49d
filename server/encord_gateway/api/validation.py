"""Request validation, done before any upstream call; every problem is reported at once."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from encord_gateway.errors import FieldViolation, InvalidRequest
from encord_gateway.resources import KeyRequest, ResourceKind

# Encord titles are free text; 255 matches the usual database column and keeps
# audit lines bounded. Longer titles are refused rather than cut.
MAX_TITLE_LENGTH = 255


def resource_hash(value: str, field: str, violations: list[FieldViolation]) -> str:
    """A project or dataset hash: Encord's hashes are UUIDs, written in lower case."""
    if not value:
        violations.append(FieldViolation(field, "is required"))
        return value
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        violations.append(
            FieldViolation(field, "must be a UUID such as 6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10")
        )
        return value
    if str(parsed) != value.lower():
        violations.append(FieldViolation(field, "must be a UUID in its 8-4-4-4-12 hex form"))
    return value.lower()


def title(value: str, violations: list[FieldViolation]) -> str:
    stripped = value.strip()
    if not stripped:
        violations.append(FieldViolation("title", "is required and may not be blank"))
    elif len(stripped) > MAX_TITLE_LENGTH:
        violations.append(
            FieldViolation(
                "title", f"is {len(stripped)} characters long; at most {MAX_TITLE_LENGTH} are allowed"
            )
        )
    elif any(_unprintable(c) for c in stripped):
        violations.append(
            FieldViolation(
                "title",
                "may not contain control characters (C0, DEL, C1), line or paragraph separators, "
                "or bidirectional formatting characters",
            )
        )
    return stripped


# Characters that rewrite what a terminal or a log viewer shows (bidi overrides, isolates and marks).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unprintable(char: str) -> bool:
    """Controls (Cc: C0, DEL, C1 such as U+0085 and U+009B), U+2028/U+2029, and bidi controls."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def scopes(
    values: Iterable[int], names: Mapping[Any, str], violations: list[FieldViolation]
) -> tuple[str, ...]:
    """Encord scope strings for the enum numbers, duplicates removed, in first-seen order."""
    chosen: dict[str, None] = {}
    bad = False
    for index, value in enumerate(values):
        name = names.get(value)
        if name is None:
            what = "UNSPECIFIED is not a scope" if value == 0 else f"{value} is not a known scope"
            violations.append(FieldViolation(f"scopes[{index}]", what))
            bad = True
        else:
            chosen[name] = None
    if not chosen and not bad:
        violations.append(FieldViolation("scopes", "at least one scope is required"))
    return tuple(chosen)


def request_id(value: str, violations: list[FieldViolation]) -> str:
    """Optional; when set, a UUID in its canonical (lower-case 8-4-4-4-12) form, not all zeros (AIP-155)."""
    if not value:
        return value
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value:
        violations.append(
            FieldViolation("request_id", "must be a UUID in canonical form, such as a UUID4's str()")
        )
    elif parsed.int == 0:
        violations.append(FieldViolation("request_id", "may not be the all-zeros UUID"))
    return value


@dataclass(frozen=True)
class Checked:
    """A request that passed validation: all a handler reads of it."""

    key: KeyRequest  # the resource; for a create the title and scopes, for a get-or-create the master's
    validate_only: bool = False
    request_id: str = ""

    @property
    def resource_hash(self) -> str:
        return self.key.resource_hash


# A validator for one RPC: its request message in, a Checked out, or InvalidRequest with every violation.
Validator = Callable[[Any], Checked]


def create(kind: ResourceKind[Any, Any]) -> Validator:
    """Create{Project,Dataset}ApiKeyRequest: the hash, the title, the scopes and the request id."""

    def check(request: Any) -> Checked:
        violations: list[FieldViolation] = []
        request_id(request.request_id, violations)
        key = KeyRequest(
            resource_hash(getattr(request, kind.hash_field), kind.hash_field, violations),
            title(request.title, violations),
            scopes(request.scopes, kind.scopes, violations),
        )
        _refuse(violations)
        return Checked(key, request.validate_only, request.request_id)

    return check


def listing(kind: ResourceKind[Any, Any]) -> Validator:
    """List{Project,Dataset}ApiKeysRequest: the hash alone."""

    def check(request: Any) -> Checked:
        return Checked(KeyRequest(_hash_only(getattr(request, kind.hash_field), kind.hash_field)))

    return check


def master(kind: ResourceKind[Any, Any]) -> Validator:
    """GetOrCreate{Project,Dataset}ApiKeyRequest: the hash; the key asked for is the master key."""

    def check(request: Any) -> Checked:
        checked = _hash_only(getattr(request, kind.hash_field), kind.hash_field)
        return Checked(kind.master(checked), request.validate_only)

    return check


def _refuse(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidRequest(violations)


def _hash_only(hash_value: str, hash_field: str) -> str:
    violations: list[FieldViolation] = []
    checked = resource_hash(hash_value, hash_field, violations)
    _refuse(violations)
    return checked
