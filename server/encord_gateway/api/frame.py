"""The per-RPC frame: trace id, deadline, error mapping to gRPC statuses, the call log line, observers."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import grpc

from encord_gateway import errors, logs
from encord_gateway.context import (
    CALLER,
    TRACE_METADATA,
    CallContext,
    CallObserver,
    CallRecord,
    Deadline,
    incoming_trace_id,
    trace_header,
)

log = logging.getLogger("encord_gateway.api.frame")


class RpcFrame:
    """Wraps servicer methods: each gets a CallRecord, and every GatewayError becomes a status."""

    def __init__(
        self,
        default_deadline_s: float,
        observers: Sequence[CallObserver] = (),
        *,
        max_deadline_s: float | None = None,
        trace_ids: Callable[[Sequence[tuple[str, str | bytes]]], str] = incoming_trace_id,
    ) -> None:
        self.default_deadline_s = default_deadline_s
        # A caller's hour-long deadline must not pin a worker thread to a hung upstream for an hour.
        self.max_deadline_s = max(max_deadline_s or default_deadline_s, default_deadline_s)
        self.observers = list(observers)
        # The call's trace id from its metadata; with tracing on, its span's (tracing.otel.Tracing.trace_id).
        self.trace_ids = trace_ids

    def begin(self, method: str, context: grpc.ServicerContext) -> CallRecord:
        trace_id = self.trace_ids(context.invocation_metadata())
        remaining = context.time_remaining()
        # grpc reports no deadline as None (or, on some versions, as a huge number).
        seconds = self.default_deadline_s if remaining is None or remaining > 1e8 else remaining
        seconds = min(seconds, self.max_deadline_s)
        record = CallRecord(method=method, trace_id=trace_id, started=time.monotonic(), peer=context.peer())
        record.caller = CALLER.get()
        record.context = CallContext(Deadline.after(seconds), trace_id)
        return record

    def finish(self, record: CallRecord) -> None:
        if log.isEnabledFor(logging.INFO):
            self._log_call(record)
        for observer in self.observers:
            try:
                observer.call_finished(record)
            except Exception:
                log.exception("observer %s failed", type(observer).__name__)

    def _log_call(self, record: CallRecord) -> None:
        """The call's log line; its fields are built only when INFO is on (--log-level warning: never)."""
        fields = {
            "method": record.method,
            "resource_hash": record.resource_hash,
            "caller": record.caller,
            "code": record.code.name,
            "reason": record.reason,
            "upstream_status": record.upstream_status,
            "upstream_attempts": sum(o.attempts for o in record.context.upstream) if record.context else 0,
            "duration_ms": round(record.duration_s * 1000, 2),
            "trace_id": record.trace_id,
        }
        logs.info(log, "call", fields)


class Validated(Protocol):
    """What a validator hands the handler: at least the resource hash it checked."""

    @property
    def resource_hash(self) -> str: ...


Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Checked = TypeVar("Checked", bound=Validated)
Response = TypeVar("Response")
Handler = Callable[[Servicer, Checked, CallRecord], Response]
GrpcMethod = Callable[[Servicer, Request, grpc.ServicerContext], Response]


def rpc(
    method: str, validate: Callable[[Request], Checked]
) -> Callable[[Handler[Servicer, Checked, Response]], GrpcMethod[Servicer, Request, Response]]:
    """Turns `(self, checked, record) -> response` into a gRPC method `(self, request, context)`.

    `validate` turns the request into what the handler reads, or raises InvalidRequest; the record then
    names the resource (once, and only a hash that passed: a log line never holds unchecked input).
    The servicer needs an `RpcFrame` as `self.frame`. Handlers raise GatewayError subclasses and
    hold no try/except: this is the one place they become statuses.
    """

    def decorate(handler: Handler[Servicer, Checked, Response]) -> GrpcMethod[Servicer, Request, Response]:
        @functools.wraps(handler)
        def wrapper(self: Servicer, request: Request, context: grpc.ServicerContext) -> Response:
            frame: RpcFrame = self.frame  # type: ignore[attr-defined]
            record = frame.begin(method, context)
            try:
                checked = validate(request)
                record.resource_hash = checked.resource_hash
                response = handler(self, checked, record)
                context.set_trailing_metadata(
                    ((TRACE_METADATA, trace_header(record.trace_id)), *record.trailers)
                )
                return response
            except errors.GatewayError as exc:
                record.code, record.reason = exc.grpc_code, exc.reason
                context.abort_with_status(exc.to_status(record.trace_id))
                raise  # abort_with_status raises; this keeps the type checker informed
            except Exception:
                bug = errors.Internal(f"internal error; trace id {record.trace_id}")
                record.code, record.reason = bug.grpc_code, bug.reason
                log.exception("bug: unhandled error in %s (trace %s)", method, record.trace_id)
                context.abort_with_status(bug.to_status(record.trace_id))
                raise
            finally:
                frame.finish(record)

        return wrapper

    return decorate
