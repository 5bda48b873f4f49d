"""What one call carries through the layers: its deadline, trace id, caller, upstream outcomes and record."""

from __future__ import annotations

import contextvars
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc

TRACE_METADATA = "x-cloud-trace-context"
_TRACE_RE = re.compile(r"^([0-9a-fA-F]{32})(?:/\d+)?(?:;o=[01])?$")
# The authenticated caller's name, set by the auth interceptor while the call runs.
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("encord_gateway_caller", default="")


def new_trace_id() -> str:
    """32 random hex digits, the form of Google's trace ids."""
    return secrets.token_hex(16)


def trace_header(trace_id: str) -> str:
    """Google's `X-Cloud-Trace-Context` form, as the SDK sends it."""
    return f"{trace_id}/1;o=1"


def incoming_trace_id(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """The caller's trace id from `x-cloud-trace-context`, else a new one."""
    for key, value in metadata:
        if key == TRACE_METADATA and isinstance(value, str):
            match = _TRACE_RE.match(value.strip())
            if match:
                return match.group(1).lower()
    return new_trace_id()


@dataclass(frozen=True)
class Deadline:
    """An absolute point in time (monotonic clock) by which the caller wants its answer."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()


@dataclass
class CallOutcome:
    """What one upstream call did, for the call log and metrics."""

    attempts: int = 0
    http_status: int = 0
    encord_code: str = ""
    retries: int = 0


@dataclass
class CallContext:
    """Per-RPC context handed to the operations: deadline, trace id, and what upstream did."""

    deadline: Deadline
    trace_id: str
    upstream: list[CallOutcome] = field(default_factory=list)


@dataclass
class AuditFacts:
    """What the gatekeeper (or the interceptor, for a refused caller) knows that a CallRecord does not."""

    caller: str
    auth: str
    kind: str
    title: str = ""
    scopes_asked: tuple[str, ...] = ()
    scopes_granted: tuple[str, ...] = ()
    fingerprint: str = ""
    # Every key a list revealed, by fingerprint: a reveal is recorded like a mint.
    fingerprints: tuple[str, ...] = ()
    key_returned: bool = False
    created: bool | None = None
    # A create answered from its request id's record: the same key again, or one adopted after a loss.
    replayed: bool = False
    validate_only: bool = False
    identity: str = ""
    detail: str = ""
    written: bool = False


@dataclass
class CallRecord:
    """What one RPC did: what the log line, the audit trail and the metrics see."""

    method: str
    trace_id: str
    started: float
    resource_hash: str = ""
    caller: str = ""
    peer: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: str = ""
    context: CallContext | None = None
    # Set once the call reached authentication or policy: what its audit line records.
    audit: AuditFacts | None = None
    # Trailing metadata the handler adds to a successful answer (the frame adds the trace id).
    trailers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def upstream_status(self) -> str:
        """The last upstream answer: Encord's code, else the HTTP status, else nothing."""
        if not self.context or not self.context.upstream:
            return ""
        last = self.context.upstream[-1]
        return last.encord_code or (str(last.http_status) if last.http_status else "")


class CallObserver(Protocol):
    def call_finished(self, record: CallRecord) -> None: ...
