"""The OpenTelemetry side of tracing: exporters, the server interceptor, attempt spans, the trace id.

Imported only by `tracing.start()`, when the environment asks for tracing: it needs the `tracing` extra.
Span attributes are chosen here, one by one, from closed sets (methods, codes, reasons, statuses) and
resource hashes; no body, header, key or token is ever given to a span.
"""

from __future__ import annotations

import importlib.metadata
import re
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import filters, server_interceptor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from encord_gateway.api.servicer import SERVICE_NAME
from encord_gateway.api.tracing import TracingConfig
from encord_gateway.context import TRACE_METADATA, CallRecord, incoming_trace_id
from encord_gateway.upstream.client import USER_PATH, UpstreamCall

__all__ = ["CloudTraceFallback", "Tracing"]

INSTRUMENTATION = "encord_gateway"
DEFAULT_SERVICE_NAME = "encord-gateway"
# Google's form: TRACE_ID[/SPAN_ID (decimal)][;o=0|1].
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")
_MAX_SPAN_ID = 2**64 - 1


class CloudTraceFallback(TextMapPropagator):
    """A caller's `x-cloud-trace-context` as the remote parent, when no other propagator found one.

    Callers that send only Google's header (as the Encord SDK does) keep their trace id with tracing
    on, as they do with it off: the gateway's trace id is the span's, and the span is in their trace.
    """

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        context = context if context is not None else Context()
        if trace.get_current_span(context).get_span_context().is_valid:
            return context  # a traceparent came first
        values = getter.get(carrier, TRACE_METADATA)
        match = _CLOUD_TRACE.match(values[0].strip()) if values else None
        if match is None or int(match.group(1), 16) == 0:
            return context
        span_id = int(match.group(2) or 0)
        if not 0 < span_id <= _MAX_SPAN_ID:
            span_id = secrets.randbits(63) + 1  # "/0" or none: a parent of its own, in the caller's trace
        sampled = match.group(3) != "0"  # o=1, or no option: the caller traces this call
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)
        parent = trace.SpanContext(int(match.group(1), 16), span_id, is_remote=True, trace_flags=flags)
        return trace.set_span_in_context(trace.NonRecordingSpan(parent), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        """Nothing: the upstream client writes X-Cloud-Trace-Context itself."""

    @property
    def fields(self) -> set[str]:
        return set()


def _exporter(name: str, config: TracingConfig) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    # The rest of OTEL_EXPORTER_OTLP_* (headers, certificates, timeout, compression) the exporter reads.
    return OTLPSpanExporter(endpoint=config.endpoint)


def _resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as the SDK reads them, else encord-gateway."""
    try:
        version = importlib.metadata.version("encord-gateway")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    resource = Resource.create({"service.version": version})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    return resource


class Tracing:
    """One process's tracing: server spans for ApiKeyService calls, a child span per upstream attempt.

    Health and reflection calls get no span. The gateway's trace id (its logs, audit records, error
    details and the X-Cloud-Trace-Context sent to Encord) is the span's trace id.
    """

    def __init__(self, config: TracingConfig, *, exporters: Sequence[SpanExporter] | None = None) -> None:
        self.config = config
        self.provider = TracerProvider(resource=_resource())
        if exporters is None:
            exporters = [_exporter(name, config) for name in config.exporters]
        for exporter in exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer(INSTRUMENTATION)
        # The propagators OTEL_PROPAGATORS names (W3C tracecontext and baggage by default), then Google's.
        current = propagate.get_global_textmap()
        if not isinstance(current, CompositePropagator) or not any(
            isinstance(p, CloudTraceFallback) for p in getattr(current, "_propagators", ())
        ):
            propagate.set_global_textmap(CompositePropagator([current, CloudTraceFallback()]))

    def interceptor(self) -> grpc.ServerInterceptor[Any, Any]:
        """The instrumentation's server interceptor, for ApiKeyService only; outermost, so it spans auth."""
        return cast(
            "grpc.ServerInterceptor[Any, Any]",
            server_interceptor(  # type: ignore[no-untyped-call]
                tracer_provider=self.provider, filter_=filters.service_name(SERVICE_NAME)
            ),
        )

    @staticmethod
    def trace_id(metadata: Sequence[tuple[str, str | bytes]]) -> str:
        """The current span's trace id; outside a span (not for a traced call) the caller's or a new one."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return format(context.trace_id, "032x")
        return incoming_trace_id(metadata)

    def call_finished(self, record: CallRecord) -> None:
        """A frame observer: the call's outcome on its server span (grpc's abort_with_status sets none)."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attribute("rpc.grpc.status_code", record.code.value[0])
        if record.resource_hash:
            span.set_attribute("encord_gateway.resource_hash", record.resource_hash)
        if record.caller:
            span.set_attribute("encord_gateway.caller", record.caller)
        if record.reason:
            span.set_attribute("encord_gateway.reason", record.reason)
        if record.code != grpc.StatusCode.OK:
            described = f"{record.code.name} {record.reason}".strip()
            span.set_status(trace.Status(trace.StatusCode.ERROR, described))

    def upstream_attempt(self, call: UpstreamCall, elapsed_s: float, outcome: str) -> None:
        """EncordClient's on_attempt: a child of the call's span, timed as the attempt was."""
        end = time.time_ns()
        attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "url.path": USER_PATH,
            "encord.query_type": call.query_type,
            "encord.query_method": call.query_method,
            "encord_gateway.attempt": call.outcome.attempts,
            "encord_gateway.outcome": outcome,
        }
        if call.outcome.http_status:
            attributes["http.response.status_code"] = call.outcome.http_status
        if call.outcome.encord_code:
            attributes["encord.code"] = call.outcome.encord_code
        span = self._tracer.start_span(
            f"encord {call.query_type} {call.query_method}",
            kind=trace.SpanKind.CLIENT,
            start_time=end - int(elapsed_s * 1e9),
            attributes=attributes,
        )
        if outcome != "ok":
            span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))
        span.end(end_time=end)

    def shutdown(self) -> None:
        """Exports what is still queued (within the exporter's timeout) and stops the exporters."""
        self.provider.shutdown()
