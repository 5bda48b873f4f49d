"""The per-RPC frame: trace id, deadline, error mapping to gRPC statuses, the call log line, observers."""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

import grpc

from encord_gateway import errors
from encord_gateway.keys import CallScope
from encord_gateway.logs import FIELDS
from encord_gateway.upstream import Deadline, new_trace_id, trace_header

log = logging.getLogger("encord_gateway.calls")

TRACE_METADATA = "x-cloud-trace-context"
_TRACE_RE = re.compile(r"^([0-9a-fA-F]{32})(?:/\d+)?(?:;o=[01])?$")
# The authenticated caller's name, set by the auth interceptor while the call runs.
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("encord_gateway_caller", default="")


class _Status(NamedTuple):
    """A grpc.Status: code, details and trailing metadata (the details and the trace id)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


class _StatusAdapter(_Status, grpc.Status):
    pass


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
    scope: CallScope | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def upstream_status(self) -> str:
        """The last upstream answer: Encord's code, else the HTTP status, else nothing."""
        if not self.scope or not self.scope.upstream:
            return ""
        last = self.scope.upstream[-1]
        return last.encord_code or (str(last.http_status) if last.http_status else "")


class CallObserver(Protocol):
    def call_finished(self, record: CallRecord) -> None: ...


def incoming_trace_id(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """The caller's trace id from `x-cloud-trace-context`, else a new one."""
    for key, value in metadata:
        if key == TRACE_METADATA and isinstance(value, str):
            match = _TRACE_RE.match(value.strip())
            if match:
                return match.group(1).lower()
    return new_trace_id()


class RpcFrame:
    """Wraps servicer methods: each gets a CallRecord, and every GatewayError becomes a status."""

    def __init__(
        self,
        default_deadline_s: float,
        observers: Sequence[CallObserver] = (),
        *,
        max_deadline_s: float | None = None,
    ) -> None:
        self.default_deadline_s = default_deadline_s
        # A caller's hour-long deadline must not pin a worker thread to a hung upstream for an hour.
        self.max_deadline_s = max(max_deadline_s or default_deadline_s, default_deadline_s)
        self.observers = list(observers)

    def begin(self, method: str, context: grpc.ServicerContext) -> CallRecord:
        trace_id = incoming_trace_id(context.invocation_metadata())
        remaining = context.time_remaining()
        # grpc reports no deadline as None (or, on some versions, as a huge number).
        seconds = self.default_deadline_s if remaining is None or remaining > 1e8 else remaining
        seconds = min(seconds, self.max_deadline_s)
        record = CallRecord(method=method, trace_id=trace_id, started=time.monotonic(), peer=context.peer())
        record.caller = CALLER.get()
        record.scope = CallScope(Deadline.after(seconds), trace_id)
        return record

    def finish(self, record: CallRecord) -> None:
        fields = {
            "method": record.method,
            "resource_hash": record.resource_hash,
            "caller": record.caller,
            "code": record.code.name,
            "reason": record.reason,
            "upstream_status": record.upstream_status,
            "upstream_attempts": sum(o.attempts for o in record.scope.upstream) if record.scope else 0,
            "duration_ms": round(record.duration_s * 1000, 2),
            "trace_id": record.trace_id,
        }
        log.info("call", extra={FIELDS: fields})
        for observer in self.observers:
            try:
                observer.call_finished(record)
            except Exception:
                log.exception("observer %s failed", type(observer).__name__)


Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Servicer, Request, CallRecord], Response]
GrpcMethod = Callable[[Servicer, Request, grpc.ServicerContext], Response]


def rpc(
    method: str,
) -> Callable[[Handler[Servicer, Request, Response]], GrpcMethod[Servicer, Request, Response]]:
    """Turns `(self, request, record) -> response` into a gRPC method `(self, request, context)`.

    The servicer needs an `RpcFrame` as `self.frame`. Handlers raise GatewayError
    subclasses and hold no try/except: this is the one place they become statuses.
    """

    def decorate(handler: Handler[Servicer, Request, Response]) -> GrpcMethod[Servicer, Request, Response]:
        @functools.wraps(handler)
        def wrapper(self: Servicer, request: Request, context: grpc.ServicerContext) -> Response:
            frame: RpcFrame = self.frame  # type: ignore[attr-defined]
            record = frame.begin(method, context)
            trace = ((TRACE_METADATA, trace_header(record.trace_id)),)
            try:
                response = handler(self, request, record)
                context.set_trailing_metadata(trace)
                return response
            except errors.GatewayError as exc:
                record.code, record.reason = exc.grpc_code, exc.reason
                exc.trace_id = exc.trace_id or record.trace_id
                status = exc.to_status()
                context.abort_with_status(
                    _StatusAdapter(status.code, status.details, (*status.trailing_metadata, *trace))
                )
                raise  # abort_with_status raises; this keeps the type checker informed
            except Exception:
                record.code, record.reason = grpc.StatusCode.INTERNAL, "INTERNAL"
                log.exception("bug: unhandled error in %s (trace %s)", method, record.trace_id)
                context.abort_with_status(
                    _StatusAdapter(
                        grpc.StatusCode.INTERNAL, f"internal error; trace id {record.trace_id}", trace
                    )
                )
                raise
            finally:
                frame.finish(record)

        return wrapper

    return decorate
