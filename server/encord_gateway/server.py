"""The gRPC server: the servicer, health, reflection, graceful stop, all built from Settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent import futures

import grpc
import requests
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from encord_gateway.calls import CallObserver, RpcFrame
from encord_gateway.config import Settings, split_host_port
from encord_gateway.keys import KeyOperations
from encord_gateway.policy import Gatekeeper
from encord_gateway.service import SERVICE_NAME, ApiKeyServicer
from encord_gateway.signing import SigningKey
from encord_gateway.upstream import EncordClient, RetryPolicy

log = logging.getLogger(__name__)


class GatewayServer:
    """Owns the grpc.Server, the Encord client and the health status; start() binds, stop() drains."""

    def __init__(
        self,
        settings: Settings,
        key: SigningKey,
        *,
        gatekeeper: Gatekeeper | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        observers: Sequence[CallObserver] = (),
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.settings = settings
        verify: bool | str = settings.encord_ca_file or True
        self.client = EncordClient(
            settings.encord_domain,
            key,
            pool_size=settings.upstream_pool_size,
            connect_timeout_s=settings.upstream_connect_timeout,
            retry=RetryPolicy(attempts=settings.upstream_retries),
            verify=verify,
        )
        self.frame = RpcFrame(settings.default_deadline, observers)
        self.servicer = ApiKeyServicer(KeyOperations(self.client), self.frame, gatekeeper or Gatekeeper())
        self.health = health.HealthServicer()
        self._stopping = threading.Event()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="rpc"),
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                # Two gateways must not silently share one port.
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_ApiKeyServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._server,
        )
        self._credentials = credentials
        self.address = ""

    def start(self) -> str:
        """Binds, starts serving and returns the bound HOST:PORT."""
        host, _ = split_host_port(self.settings.listen, "listen")
        if self._credentials is not None:
            port = self._server.add_secure_port(self.settings.listen, self._credentials)
        else:
            port = self._server.add_insecure_port(self.settings.listen)
        if not port:
            raise OSError(f"cannot listen on {self.settings.listen}")
        self._server.start()
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.settings.readiness_probe_interval > 0:
            self._set_serving(False)
            threading.Thread(target=self._probe_upstream, name="readiness-probe", daemon=True).start()
        else:
            # The signing key is loaded before the server is built, so it is ready.
            self._set_serving(True)
        return self.address

    def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE_NAME):
            self.health.set(service, status)

    def _probe_upstream(self) -> None:
        """Any HTTP answer from the Encord domain means it is reachable; no answer means not ready."""
        interval = self.settings.readiness_probe_interval
        with requests.Session() as session:
            while not self._stopping.is_set():
                try:
                    session.get(self.settings.encord_domain, timeout=min(interval, 5.0), verify=self.client._verify)
                    up = True
                except requests.RequestException:
                    up = False
                if not self._stopping.is_set():
                    self._set_serving(up)
                self._stopping.wait(interval)

    def stop(self, grace_s: float | None = None) -> None:
        """Refuses new calls, lets in-flight ones finish within the grace period, then closes."""
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        grace = self.settings.grace_period if grace_s is None else grace_s
        self._server.stop(grace).wait(grace + 1)
        self.client.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)
