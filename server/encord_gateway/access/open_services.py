"""Health and reflection, open to strangers: a bounded share of the workers, each message on a deadline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from encord_gateway import errors
from encord_gateway.access.inflight import InFlight
from encord_gateway.access.message_deadline import MessageDeadline
from encord_gateway.config import DEFAULTS
from encord_gateway.context import incoming_trace_id

if TYPE_CHECKING:  # the access layer's interceptors and handlers, typed once
    Interceptor = grpc.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # generic only in the type stubs
    Interceptor = grpc.ServerInterceptor
    Handler = grpc.RpcMethodHandler

# Strangers reach these, and each of their calls holds a worker while it waits for its messages: at most
# this many of them run at once with the default 64 workers, and the same share of a smaller pool (at
# least one each); the rest are refused at once. Together they never take more than 3/8 of the workers.
HEALTH_PREFIX = "/grpc.health.v1.Health/"
OPEN_SERVICE_CEILINGS = {HEALTH_PREFIX: 16, "/grpc.reflection.": 8}
_AT_WORKERS = DEFAULTS["workers"]


def open_service_ceilings(workers: int) -> dict[str, int]:
    """OPEN_SERVICE_CEILINGS for a pool of `workers` threads."""
    return {prefix: max(1, min(n, n * workers // _AT_WORKERS)) for prefix, n in OPEN_SERVICE_CEILINGS.items()}


def bounded(
    handler: Handler, in_flight: InFlight, service: str, ceiling: int, deadline: MessageDeadline | None
) -> Handler:
    """The open service's handler, run only while one of its `ceiling` slots is free, its messages read
    under `deadline` after that: a stream that sends nothing is cancelled and gives its slot back."""

    def refuse(context: grpc.ServicerContext) -> None:
        busy = errors.TooManyInFlight(f"{service} already has {ceiling} calls running; retry shortly")
        context.abort_with_status(busy.to_status(incoming_trace_id(context.invocation_metadata())))

    def slot(context: grpc.ServicerContext) -> contextlib.ExitStack:
        held = contextlib.ExitStack()
        try:
            held.enter_context(in_flight.slot(f"open:{service}", ceiling, service))
        except errors.TooManyInFlight:
            refuse(context)  # aborts the call
        return held

    def messages(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        return deadline.stream(requests, context, service) if deadline is not None else requests

    def only(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        for request in messages(requests, context):
            return request
        if not context.is_active():
            # Cancelled while it waited (its deadline, or the client): nobody is left to answer.
            context.abort(grpc.StatusCode.CANCELLED, "no request message")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call ended without its request message")

    options = {"request_deserializer": handler.request_deserializer}
    options["response_serializer"] = handler.response_serializer
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        def unary_call(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            with slot(context):
                return unary(only(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(unary_call, **options)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        def unary_to_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            with slot(context):
                yield from unary_stream(only(requests, context), context)

        return grpc.stream_stream_rpc_method_handler(unary_to_stream, **options)
    if handler.stream_stream is not None:
        streaming = handler.stream_stream

        def stream_call(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            with slot(context):
                yield from streaming(messages(requests, context), context)

        return grpc.stream_stream_rpc_method_handler(stream_call, **options)
    return handler


class OpenServiceGuard(Interceptor):
    """The bound and the deadline alone, for a server that serves no ApiKeyService: the probe port."""

    def __init__(self, ceilings: dict[str, int], deadline: MessageDeadline | None) -> None:
        self._ceilings = ceilings
        self._deadline = deadline
        self.in_flight = InFlight()
        self._guarded: dict[str, tuple[Handler, Handler]] = {}

    def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        return guard_open_service(
            continuation(handler_call_details),
            handler_call_details.method,
            self._ceilings,
            self.in_flight,
            self._deadline,
            self._guarded,
        )


def guard_open_service(
    handler: Handler | None,
    full_method: str,
    ceilings: dict[str, int],
    in_flight: InFlight,
    deadline: MessageDeadline | None,
    built: dict[str, tuple[Handler, Handler]],
) -> Handler | None:
    """`handler` bounded if `full_method` is an open service's; built once per method (grpc asks per call)."""
    if handler is None:
        return None
    cached = built.get(full_method)
    if cached is not None and cached[0] is handler:
        return cached[1]
    found = next(((prefix, n) for prefix, n in ceilings.items() if full_method.startswith(prefix)), None)
    if found is None:
        return handler
    prefix, ceiling = found
    # One count per prefix, not per service: reflection's v1 and v1alpha share their ceiling.
    wrapped = bounded(handler, in_flight, prefix.strip("/."), ceiling, deadline)
    built[full_method] = (handler, wrapped)
    return wrapped
