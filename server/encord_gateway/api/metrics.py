"""Prometheus metrics: calls by method and code, upstream attempts by outcome, calls in flight, the store.

One `GatewayMetrics` per process, fed by four hooks that already exist:

- `call_finished(record)`: an RpcFrame observer; every finished RPC, including those refused by
  authentication, policy or the rate limiter;
- `upstream_attempt(call, elapsed_s, outcome)`: EncordClient's `on_attempt` callback, once per HTTP attempt;
- `interceptor()`: a server interceptor that keeps the calls-in-flight gauge;
- `request_id_event(event)`: ExactlyOnce's `on_event` callback: replays, reconciliations, conflicts and
  store errors of creates with a request_id;

and `watch(store, limits)` follows the state store's reachability and the rate limits' fallbacks.
Under `serve --processes N` each worker's values live in files that the supervisor sums into one page
(api/metrics_fleet.py); every gauge says how (`multiprocess_mode`), the counters are summed.

Every label value comes from a small closed set (method names, gRPC code names, the gateway's and
Encord's error codes, HTTP statuses); anything else is counted as "other", so a label can never hold a
resource hash, a title, an API key, or any other caller-chosen text, and cardinality stays bounded.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from encord_gateway_client.v1 import api_keys_pb2 as pb
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from encord_gateway import errors
from encord_gateway.access.ratelimit import RateLimits
from encord_gateway.api.metrics_http import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, MetricsHttpServer
from encord_gateway.config import split_host_port
from encord_gateway.context import CallRecord
from encord_gateway.state import StateStore
from encord_gateway.upstream.client import UpstreamCall

__all__ = ["KNOWN_REASONS", "OTHER", "GatewayMetrics", "MetricsEndpoint", "bounded_reason"]

PREFIX = "encord_gateway"
OTHER = "other"
SERVICE = pb.DESCRIPTOR.services_by_name["ApiKeyService"]
SERVICE_PREFIX = f"/{SERVICE.full_name}/"
METHODS = frozenset(SERVICE.methods_by_name)
QUERY_TYPES = frozenset({"projectapikey", "datasetapikey"})
QUERY_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})
CODES = frozenset(code.name for code in grpc.StatusCode)
STORE_KINDS = frozenset({"memory", "sqlite", "redis"})
# The `reason` of every status the gateway answers with: the error tree's, which holds Encord's known
# codes too; an unknown Encord code is counted as "OTHER_ENCORD_CODE".
KNOWN_REASONS = frozenset(errors.REASONS)
OTHER_REASON = "OTHER_ENCORD_CODE"
# An attempt that ended with one of these never got an HTTP answer, whatever an earlier attempt got.
_NO_RESPONSE = frozenset(
    cls.reason
    for cls in (
        errors.UpstreamConnectionLost,
        errors.UpstreamUnreachable,
        errors.UpstreamTimeout,
        errors.UpstreamUnavailable,
        errors.UpstreamDeadlineExceeded,
    )
)
# ExactlyOnce's events (exactly_once.EVENTS) that are an `outcome` label; the other two have counters.
RECONCILE_OUTCOMES = ("adopted", "resent", "ambiguous")
CONFLICT_OUTCOMES = ("reused", "in_progress")
# Calls take from milliseconds (a refusal) to the default 30 s deadline.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _known(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


def bounded_reason(reason: str) -> str:
    """The reason as a label value: a known code as it is, "" for none, anything else OTHER_ENCORD_CODE."""
    if not reason or reason in KNOWN_REASONS:
        return reason
    return OTHER_REASON


def _http_status(call: UpstreamCall, outcome: str) -> str:
    status = call.outcome.http_status
    if outcome in _NO_RESPONSE or not 100 <= status <= 599:
        return "none"
    return str(status)


def _version() -> str:
    try:
        return importlib.metadata.version("encord-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


if TYPE_CHECKING:
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:  # generic only in the type stubs
    _ServerInterceptor = grpc.ServerInterceptor


class _InFlightInterceptor(_ServerInterceptor):
    """Counts ApiKeyService calls from the moment a handler runs until it returns or aborts."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if (
            handler is None
            or handler.unary_unary is None
            or not handler_call_details.method.startswith(SERVICE_PREFIX)
        ):
            return handler  # health, reflection: not calls of the API
        inner = handler.unary_unary
        metrics = self._metrics

        def counted(request: Any, context: grpc.ServicerContext) -> Any:
            with metrics.in_flight():
                return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class MetricsEndpoint:
    """A registry and the /metrics page that shows it: one process's, or the sum of a supervisor's workers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._http: MetricsHttpServer | None = None
        self.address = ""

    def render(self) -> bytes:
        """The page a scrape gets, in the Prometheus text format."""
        return generate_latest(self.registry)

    def page(self, accept: str) -> tuple[bytes, str]:
        """The page and its content type for a scrape's Accept header (OpenMetrics when asked for)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def serve(
        self,
        address: str,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> str:
        """Serves /metrics on HOST:PORT (port 0: any free port) and returns the bound HOST:PORT.

        At most `max_connections` are held, on one thread; one that has not sent a complete request
        within `idle_timeout_s` is closed, and at the cap a new connection evicts the longest-idle one.
        Raises ConfigError for a malformed address and OSError if it cannot be bound.
        """
        if self._http is not None:
            raise RuntimeError(f"metrics are already served on {self.address}")
        host, port = split_host_port(address, "metrics_listen")
        self._http = MetricsHttpServer(
            host, port, self.page, max_connections=max_connections, idle_timeout_s=idle_timeout_s
        )
        self._http.start()
        self.address = f"[{host}]:{self._http.port}" if ":" in host else f"{host}:{self._http.port}"
        return self.address

    def close(self) -> None:
        """Stops serving /metrics; the counters stay readable through render()."""
        if self._http is not None:
            self._http.close()
            self._http = None


class GatewayMetrics(MetricsEndpoint):
    """The gateway's metrics in one registry (by default a private one, so instances never collide).

    `process=False` leaves out the collectors that read this process itself (process_*, GC, threads):
    a worker of `serve --processes` whose supervisor reports those for every worker.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        super().__init__(registry if registry is not None else CollectorRegistry(auto_describe=True))
        reg = self.registry
        self.calls = Counter(
            f"{PREFIX}_calls",
            "Finished ApiKeyService calls, by method and gRPC status code.",
            ("method", "code"),
            registry=reg,
        )
        self.call_errors = Counter(
            f"{PREFIX}_call_errors",
            "Failed calls by method, gRPC code and reason (the ErrorInfo reason: a gateway or Encord code).",
            ("method", "code", "reason"),
            registry=reg,
        )
        self.call_duration = Histogram(
            f"{PREFIX}_call_duration_seconds",
            "Time from the handler's start to the answer, by method.",
            ("method",),
            buckets=CALL_BUCKETS,
            registry=reg,
        )
        self.calls_in_flight = Gauge(
            f"{PREFIX}_calls_in_flight",
            "ApiKeyService calls being handled now.",
            registry=reg,
            multiprocess_mode="livesum",  # the workers' calls add up; a dead worker's are gone
        )
        self.rate_limited_calls = Counter(
            f"{PREFIX}_rate_limited_calls",
            "Calls refused because the caller was over its rate limit.",
            ("method",),
            registry=reg,
        )
        self.upstream_attempts = Counter(
            f"{PREFIX}_upstream_attempts",
            "HTTP attempts at Encord, by query, HTTP status ('none': no answer) and outcome "
            "('ok', or the error's reason).",
            ("query_type", "query_method", "http_status", "outcome"),
            registry=reg,
        )
        self.upstream_duration = Histogram(
            f"{PREFIX}_upstream_attempt_duration_seconds",
            "Time of one HTTP attempt at Encord.",
            ("query_type", "query_method"),
            buckets=CALL_BUCKETS,
            registry=reg,
        )
        self.request_id_replays = Counter(
            f"{PREFIX}_request_id_replays",
            "Creates with a request_id answered with the key an earlier call with that id made.",
            registry=reg,
        )
        self.request_id_reconciliations = Counter(
            f"{PREFIX}_request_id_reconciliations",
            "Retries after a lost answer, by outcome: the one new key 'adopted', none landed and the create "
            "'resent', or several identical new keys, 'ambiguous'.",
            ("outcome",),
            registry=reg,
        )
        self.request_id_conflicts = Counter(
            f"{PREFIX}_request_id_conflicts",
            "Creates refused for their request_id: 'reused' for another request, or 'in_progress' "
            "(running or settling).",
            ("outcome",),
            registry=reg,
        )
        self.request_id_store_errors = Counter(
            f"{PREFIX}_request_id_store_errors",
            "Creates with a request_id failed because the state store could not be used.",
            registry=reg,
        )
        self.rate_limit_fallbacks = Counter(
            f"{PREFIX}_rate_limit_fallbacks",
            "Rate-limit checks answered by this process's own bucket because the shared store (Redis) "
            "could not be reached.",
            registry=reg,
        )
        self.state_store_up = Gauge(
            f"{PREFIX}_state_store_up",
            "1 while the state store answers the gateway's calls, 0 while it cannot be reached.",
            ("kind",),
            registry=reg,
            multiprocess_mode="livemin",  # 0 as soon as one live worker cannot reach it
        )
        # Every series from the start, so that rate() and absent() see zeros, not gaps.
        for outcome in RECONCILE_OUTCOMES:
            self.request_id_reconciliations.labels(outcome)
        for outcome in CONFLICT_OUTCOMES:
            self.request_id_conflicts.labels(outcome)
        build = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the labels say what is running.",
            ("version", "python_version", "grpc_version"),
            registry=reg,
            multiprocess_mode="max",  # every worker runs the same build: one series, not one per pid
        )
        build.labels(_version(), platform.python_version(), grpc.__version__).set(1)
        if process:
            # Resident memory, open fds, CPU and start time (process_*), python_info and GC counts:
            # what a leak or a stuck thread shows up in first.
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
            threads = Gauge(f"{PREFIX}_threads", "Live threads in the gateway process.", registry=reg)
            threads.set_function(lambda: float(threading.active_count()))

    # The hooks -------------------------------------------------------------------------------------------

    def call_finished(self, record: CallRecord) -> None:
        """RpcFrame observer: one finished call."""
        method = _known(record.method, METHODS)
        code = record.code.name
        self.calls.labels(method, code).inc()
        self.call_duration.labels(method).observe(max(0.0, record.duration_s))
        if record.code != grpc.StatusCode.OK:
            self.call_errors.labels(method, code, bounded_reason(record.reason)).inc()
        if record.reason == errors.RateLimited.reason:  # the class names its code and reason once
            self.rate_limited(record.method)

    def rate_limited(self, method: str) -> None:
        """A call refused by the caller's rate limit; call_finished() counts those already, so don't."""
        self.rate_limited_calls.labels(_known(method, METHODS)).inc()

    def upstream_attempt(self, call: UpstreamCall, elapsed_s: float, outcome: str) -> None:
        """EncordClient's on_attempt callback: one HTTP attempt and how it ended."""
        query_type = _known(call.query_type, QUERY_TYPES)
        query_method = _known(call.query_method, QUERY_METHODS)
        label = outcome if outcome == "ok" else bounded_reason(outcome)
        self.upstream_attempts.labels(query_type, query_method, _http_status(call, outcome), label).inc()
        self.upstream_duration.labels(query_type, query_method).observe(max(0.0, elapsed_s))

    def request_id_event(self, event: str) -> None:
        """ExactlyOnce's on_event callback: one of its EVENTS; anything else is not counted."""
        if event == "replayed":
            self.request_id_replays.inc()
        elif event in RECONCILE_OUTCOMES:
            self.request_id_reconciliations.labels(event).inc()
        elif event in CONFLICT_OUTCOMES:
            self.request_id_conflicts.labels(event).inc()
        elif event == "store_error":
            self.request_id_store_errors.inc()

    def watch(self, store: StateStore, limits: RateLimits | None) -> None:
        """Follows the store's reachability (state_store_up) and counts the rate limits' fallbacks."""
        up = self.state_store_up.labels(_known(store.kind, STORE_KINDS))
        store.reachability.listen(lambda reached: up.set(1.0 if reached else 0.0))
        if limits is not None:
            limits.on_fallback = self.rate_limit_fallbacks.inc

    def call_started(self) -> None:
        self.calls_in_flight.inc()

    def call_ended(self) -> None:
        self.calls_in_flight.dec()

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        self.call_started()
        try:
            yield
        finally:
            self.call_ended()

    def interceptor(self) -> grpc.ServerInterceptor[Any, Any]:
        """Keeps calls_in_flight; put it first, so that calls refused by authentication count too."""
        return _InFlightInterceptor(self)
