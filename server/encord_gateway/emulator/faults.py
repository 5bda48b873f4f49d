"""Fault injection (latency, HTTP 503, dropped connections, non-JSON bodies, forced Encord errors)."""

from __future__ import annotations

import enum
import json
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

QUERY_METHODS = ("GET", "POST", "PUT", "DELETE")
MAX_LATENCY_MS = 600_000
# Encord's error payloads are a level or two deep; a deeper one would only make copying, logging and
# serialising it recurse past Python's limit.
MAX_PAYLOAD_DEPTH = 32
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


class FaultKind(enum.Enum):
    """Each kind's value is the `outcome` that logs and stats report for it."""

    DROP = "fault_drop"  # close the connection without an answer
    UNAVAILABLE = "fault_503"  # HTTP 503 with a plain-text body, as a load balancer sends it
    GARBAGE = "fault_garbage"  # HTTP 200 with a body that is not JSON
    FORCED = "fault_forced"  # the forced Encord error envelope


@dataclass(frozen=True)
class FaultSettings:
    """What to inject; all off by default. `match_*` narrow every fault to matching API calls."""

    latency_ms: int = 0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    garbage_rate: float = 0.0
    force_error: str | None = None
    force_error_payload: Any = None
    force_error_status: int | None = None  # the HTTP status line of a forced error (default: as any error)
    match_query_type: str | None = None
    match_query_method: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: FaultSettings | None = None) -> FaultSettings:
        """Checked settings from a JSON object or a TOML table; keys absent from `data` keep `base`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}")
        settings = replace(base or cls(), **dict(data))
        settings.check()
        return settings

    def check(self) -> None:
        """ValueError naming the first setting out of range or of the wrong type."""
        if not _is_int(self.latency_ms) or not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise ValueError(f"latency_ms must be an integer from 0 to {MAX_LATENCY_MS}")
        for name in ("error_rate", "drop_rate", "garbage_rate"):
            value = getattr(self, name)
            if not (_is_int(value) or isinstance(value, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number from 0.0 to 1.0")
        if self.force_error is not None and (
            not isinstance(self.force_error, str) or not _CODE.match(self.force_error)
        ):
            raise ValueError(
                "force_error must be an Encord error code such as RESOURCE_EXISTS_ERROR, or null"
            )
        if _depth(self.force_error_payload) > MAX_PAYLOAD_DEPTH:
            raise ValueError(f"force_error_payload must be nested at most {MAX_PAYLOAD_DEPTH} deep")
        try:
            json.dumps(self.force_error_payload)
        except (TypeError, ValueError):
            raise ValueError("force_error_payload must be JSON (a TOML date is not)") from None
        if self.force_error_status is not None and (
            not _is_int(self.force_error_status) or not 200 <= self.force_error_status <= 599
        ):
            raise ValueError("force_error_status must be an HTTP status from 200 to 599, or null")
        if self.match_query_type is not None and not isinstance(self.match_query_type, str):
            raise ValueError("match_query_type must be a string or null")
        if self.match_query_method is not None and self.match_query_method not in QUERY_METHODS:
            raise ValueError(f"match_query_method must be one of {list(QUERY_METHODS)} or null")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, query_type: str | None, query_method: str | None) -> bool:
        return (self.match_query_type is None or self.match_query_type == query_type) and (
            self.match_query_method is None or self.match_query_method == query_method
        )


def _is_int(value: object) -> bool:
    # TOML and JSON booleans are not numbers here, although bool subclasses int.
    return isinstance(value, int) and not isinstance(value, bool)


def _depth(value: object) -> int:
    """How deeply lists and mappings nest in `value`, counted without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest


class FaultInjector:
    """The live fault settings; the admin endpoint swaps them while requests are served."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings or FaultSettings()
        self._random = random.Random()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def replace(self, settings: FaultSettings) -> None:
        with self._lock:
            self._settings = settings

    def decide(self, query_type: str | None, query_method: str | None) -> Decision:
        """What to do to one API call: added latency, and the fault to inject, if any."""
        settings = self._settings  # one consistent snapshot, even if replaced meanwhile
        if not settings.matches(query_type, query_method):
            return Decision(settings)
        latency = settings.latency_ms / 1000.0
        with self._lock:  # random.Random is not documented as thread-safe
            draws = [self._random.random() for _ in range(3)]
        kind: FaultKind | None = None
        if draws[0] < settings.drop_rate:
            kind = FaultKind.DROP
        elif draws[1] < settings.error_rate:
            kind = FaultKind.UNAVAILABLE
        elif draws[2] < settings.garbage_rate:
            kind = FaultKind.GARBAGE
        elif settings.force_error is not None:
            kind = FaultKind.FORCED
        return Decision(settings, latency, kind)


@dataclass(frozen=True)
class Decision:
    settings: FaultSettings  # the snapshot decided on, so a forced error uses the code that matched
    latency_s: float = 0.0
    kind: FaultKind | None = None
