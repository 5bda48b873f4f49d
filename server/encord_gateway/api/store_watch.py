"""The state store's reachability as the health service `encord_gateway.state`, kept fresh by a cheap ping."""

from __future__ import annotations

import logging
import threading

from grpc_health.v1 import health, health_pb2

from encord_gateway.logs import FIELDS
from encord_gateway.state import StateStore

log = logging.getLogger(__name__)

# Only this service follows the store. The overall status ("") and ApiKeyService's stay SERVING while the
# store is away: lists and creates without a request_id still work, and an orchestrator that pulled every
# replica because Redis blinked would turn a partial outage into a whole one.
STATE_SERVICE = "encord_gateway.state"
# Calls report the store's state as they go; the ping notices a store that came back while no call
# needed it (and one that went away), one round trip per interval per process.
PING_INTERVAL_S = 2.0


class StoreWatch:
    """Mirrors `store.reachability` into the health servicer and pings the store until stopped."""

    def __init__(
        self, store: StateStore, servicer: health.HealthServicer, interval_s: float = PING_INTERVAL_S
    ) -> None:
        self._store = store
        self._health = servicer
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._known: bool | None = None
        self._thread: threading.Thread | None = None
        store.reachability.listen(self._changed)

    def _changed(self, up: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
        self._health.set(STATE_SERVICE, status)
        if self._known is not None:  # the first state is start-up's, which start-up logs itself
            kind = self._store.kind
            if up:
                log.info("state store reachable again", extra={FIELDS: {"kind": kind}})
            else:
                log.warning("state store unreachable", extra={FIELDS: {"kind": kind}})
        self._known = up

    def start(self) -> None:
        if self._store.kind != "memory":  # a dict in this process never goes away
            self._thread = threading.Thread(target=self._ping, name="state-ping", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """No ping starts after this; one may still be running (join waits for it)."""
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        """Waits for a ping still running: a store closed under it would be reported unreachable."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _ping(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._store.ping()
            except Exception:  # StateUnavailable reports itself; a refused password counts as down too
                self._store.reachability.report(False)
