"""The gRPC server: the servicer, health, reflection, graceful stop, all built from Settings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import TYPE_CHECKING, Any, Literal

import grpc
import requests
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from encord_gateway.access.auth import AuthInterceptor
from encord_gateway.access.gatekeeper import Gatekeeper
from encord_gateway.access.message_deadline import MessageDeadline
from encord_gateway.access.open_services import HEALTH_PREFIX, OpenServiceGuard
from encord_gateway.access.ratelimit import SharedBuckets
from encord_gateway.access.security import Security
from encord_gateway.api.exactly_once import ExactlyOnce
from encord_gateway.api.frame import RpcFrame
from encord_gateway.api.reflection import enable_reflection
from encord_gateway.api.servicer import SERVICE_NAME, ApiKeyServicer
from encord_gateway.api.store_watch import StoreWatch
from encord_gateway.config import ConfigError, Settings, split_host_port
from encord_gateway.context import CallObserver, incoming_trace_id
from encord_gateway.logs import FIELDS
from encord_gateway.state import StateConfigError, StateUnavailable, open_store
from encord_gateway.upstream.client import EncordClient, RetryPolicy, UpstreamCall
from encord_gateway.upstream.operations import KeyOperations
from encord_gateway.upstream.signing import SigningKey

if TYPE_CHECKING:  # imported only when tracing is on, by whoever built it
    from encord_gateway.api.tracing.otel import Tracing

log = logging.getLogger(__name__)
_WORKERS = "rpc"  # the handler threads' name prefix
# HTTP/2 streams one connection may have open, far above any sane client's calls in flight. grpc's
# overload protection counts a stream until the server has freed it, later than the client sees it end,
# so a client near the limit has its next calls refused (REFUSED_STREAM, UNAVAILABLE to it): at 100,
# 128 in flight on one channel failed a third of its calls. The flood defences are auth before the
# read, each caller's max_in_flight and the health and reflection caps; this only bounds a connection.
MAX_STREAMS_PER_CONNECTION = 1000
HEALTH_WORKERS = 4


class GatewayServer:
    """Owns the grpc.Server, the Encord client and the health status; start() binds, stop() drains."""

    def __init__(
        self,
        settings: Settings,
        key: SigningKey,
        *,
        gatekeeper: Gatekeeper | None = None,
        interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
        observers: Sequence[CallObserver] = (),
        credentials: grpc.ServerCredentials | None = None,
        security: Security | None = None,
        on_attempt: Callable[[UpstreamCall, float, str], None] | None = None,
        on_request_id_event: Callable[[str], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        if tracing is not None:
            on_attempt = _each(tracing.upstream_attempt, on_attempt)
            observers = [*observers, tracing]
        self.security = security
        verify: Literal[True] | str = settings.encord_ca_file or True
        self.client = EncordClient(
            settings.encord_domain,
            key,
            pool_size=settings.upstream_pool_size,
            connect_timeout_s=settings.upstream_connect_timeout,
            retry=RetryPolicy(attempts=settings.upstream_retries),
            verify=verify,
            on_attempt=on_attempt,
            proxy_env=settings.proxy_env,
        )
        audit_observers: list[CallObserver] = [security.audit] if security and security.audit else []
        # A stream that never sends its request message is cancelled after this, on either port.
        self.message_deadline = MessageDeadline(settings.request_message_timeout)
        self.frame = RpcFrame(
            settings.default_deadline,
            [*observers, *audit_observers],
            max_deadline_s=settings.max_deadline,
            trace_ids=tracing.trace_id if tracing is not None else incoming_trace_id,
        )
        if security is not None:
            # Innermost, wrapping the handler itself: the interceptors given (metrics' in-flight gauge)
            # see refused calls too, and nothing below it runs unauthenticated.
            mutual = security.tls is not None and security.tls.mutual
            interceptors = [
                *interceptors,
                AuthInterceptor(
                    security.holder,
                    mtls=mutual,
                    finish=self.frame.finish,
                    trace_ids=self.frame.trace_ids,
                    workers=settings.workers,
                    deadline=self.message_deadline,
                ),
            ]
            gatekeeper = gatekeeper or Gatekeeper(security.holder, security.audit, security.limits)
            if credentials is None and security.tls is not None:
                credentials = security.tls.credentials()
        try:
            self.store = open_store(
                settings.state_url,
                password=settings.state_password,
                ca_file=settings.state_ca_file,
                prefix=settings.state_prefix,
                timeout_s=settings.state_timeout,
            )
            self.store.ping()
        except StateConfigError as exc:
            self.client.close()
            raise ConfigError(str(exc)) from None
        except StateUnavailable as exc:
            # Not a reason to stay down: the calls that need the store fail closed until it is back.
            log.warning("state store not reachable at start-up", extra={FIELDS: {"error": str(exc)}})
        if security is not None and isinstance(self.store, SharedBuckets):
            # Each caller's rate_limit holds across the fleet: its bucket lives in the shared store.
            security.limits.share(self.store)
        exactly_once = ExactlyOnce(
            self.store,
            ttl_s=settings.request_id_ttl,
            reconcile_after_s=settings.reconcile_after,
            on_event=on_request_id_event,
        )
        self.servicer = ApiKeyServicer(
            KeyOperations(self.client, self.store.lock), self.frame, gatekeeper or Gatekeeper(), exactly_once
        )
        self.health = health.HealthServicer()
        self.store_watch = StoreWatch(self.store, self.health)
        self._stopping = threading.Event()
        self._executor = futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=_WORKERS)
        if tracing is not None:
            # Outermost: the server span covers authentication, and refused calls have one too.
            interceptors = [tracing.interceptor(), *interceptors]
        self._server = grpc.server(
            self._executor,
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                # Two gateways must not silently share one port; the workers of one --processes do.
                ("grpc.so_reuseport", int(settings.processes > 1)),
                # One connection cannot open more streams than this; the rest are refused by HTTP/2.
                ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
                # grpc's default, stated: streams a client reset still count until freed (rapid reset).
                ("grpc.http.overload_protection", 1),
            ],
        )
        # --health-listen: health alone, plaintext, on its own few threads, so that probes are answered
        # whatever holds the main port's workers.
        self._health_server: grpc.Server | None = None
        if settings.health_listen:
            self._health_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=HEALTH_WORKERS, thread_name_prefix="health"),
                # Every worker may run a probe, none wait past the deadline for a probe's message.
                interceptors=[OpenServiceGuard({HEALTH_PREFIX: HEALTH_WORKERS}, self.message_deadline)],
                options=[
                    ("grpc.so_reuseport", int(settings.processes > 1)),
                    ("grpc.max_concurrent_streams", HEALTH_WORKERS),
                ],
                maximum_concurrent_rpcs=4 * HEALTH_WORKERS,
            )
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
        self.health_address = ""
        pb_grpc.add_ApiKeyServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        enable_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), self._server
        )
        self._credentials = credentials
        self.address = ""

    def start(self) -> str:
        """Binds, starts serving and returns the bound HOST:PORT."""
        host = self.settings.listen_host
        if self._credentials is not None:
            port = self._server.add_secure_port(self.settings.listen, self._credentials)
        else:
            port = self._server.add_insecure_port(self.settings.listen)
        if not port:
            raise OSError(f"cannot listen on {self.settings.listen}")
        self._server.start()
        self.address = _joined(host, port)
        if self._health_server is not None:
            health_host, _ = split_host_port(self.settings.health_listen or "", "health_listen")
            try:
                health_port = self._health_server.add_insecure_port(self.settings.health_listen or "")
            except RuntimeError:  # grpc's way of saying the address cannot be bound
                health_port = 0
            if not health_port:
                self._server.stop(None)
                raise HealthPortError(f"cannot serve health on {self.settings.health_listen}")
            self._health_server.start()
            self.health_address = _joined(health_host, health_port)
        if self.settings.readiness_probe_interval > 0:
            self._set_serving(False)
            threading.Thread(target=self._probe_upstream, name="readiness-probe", daemon=True).start()
        else:
            # The signing key is loaded before the server is built, so it is ready.
            self._set_serving(True)
        self.store_watch.start()
        return self.address

    def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            self.health.set(service, status)

    def _probe_upstream(self) -> None:
        """Any HTTP answer from the Encord domain means it is reachable; no answer means not ready."""
        interval = self.settings.readiness_probe_interval
        with requests.Session() as session:
            while not self._stopping.is_set():
                try:
                    session.get(
                        self.settings.encord_domain, timeout=min(interval, 5.0), verify=self.client.ca_bundle
                    )
                    up = True
                except requests.RequestException:
                    up = False
                if not self._stopping.is_set():
                    self._set_serving(up)
                self._stopping.wait(interval)

    def stop(self, grace_s: float | None = None, *, refusing: Callable[[], None] | None = None) -> int:
        """Refuses new calls, lets in-flight ones finish within the grace period, then closes.

        `refusing` runs once new calls are refused, while in-flight ones drain (serve logs "stopping" then,
        so whoever reads the line can rely on new calls being refused). Returns how many calls are still
        running: stuck upstream past the grace period, their callers already cut off by gRPC.
        """
        self._stopping.set()
        self.store_watch.stop()
        self.health.enter_graceful_shutdown()
        grace = self.settings.grace_period if grace_s is None else grace_s
        drained = self._server.stop(grace)
        if refusing is not None:
            refusing()
        drained.wait(grace + 1)
        if self._health_server is not None:
            self._health_server.stop(None)  # probes read NOT_SERVING while the calls drained
        stuck = self._busy_workers(wait_s=1.0)
        self.client.close()
        self.message_deadline.close()
        # A ping runs within the store's timeouts: a connect and a command, and one retry.
        self.store_watch.join(4 * self.settings.state_timeout)
        self.store.close()
        if not stuck and self.security is not None and self.security.audit is not None:
            # Only when no handler can still write to it (a stuck one may yet finish).
            self.security.audit.close()
        return stuck

    def _busy_workers(self, wait_s: float) -> int:
        # Idle workers leave at shutdown; a worker still alive after wait_s is running a call.
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + wait_s
        workers = [t for t in threading.enumerate() if t.name.startswith(f"{_WORKERS}_")]
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return sum(worker.is_alive() for worker in workers)

    def wait(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)


class HealthPortError(OSError):
    """--health-listen could not be bound (the main port was, and is closed again)."""


def _each(
    first: Callable[[UpstreamCall, float, str], None], then: Callable[[UpstreamCall, float, str], None] | None
) -> Callable[[UpstreamCall, float, str], None]:
    """One on_attempt callback that calls both (tracing's, then metrics')."""
    if then is None:
        return first

    def both(call: UpstreamCall, elapsed_s: float, outcome: str) -> None:
        first(call, elapsed_s, outcome)
        then(call, elapsed_s, outcome)

    return both


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
