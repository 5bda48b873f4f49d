"""Each store reports, from its real calls, whether it can be reached; health and metrics listen to that."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from encord_gateway.api.store_watch import STATE_SERVICE, StoreWatch
from encord_gateway.state import MemoryStore, Reachability, SqliteStore, StateUnavailable
from encord_gateway.state.redis import RedisStore
from grpc_health.v1 import health, health_pb2
from support.redis_server import RedisServer


def test_listeners_hear_each_change_once_and_the_known_state_at_once() -> None:
    heard: list[bool] = []
    reach = Reachability()
    reach.listen(heard.append)
    assert heard == []  # nothing known yet
    for up in (True, True, False, False, False, True):
        reach.report(up)
    assert heard == [True, False, True]
    late: list[bool] = []
    reach.listen(late.append)
    assert late == [True]


def test_memory_is_always_up() -> None:
    assert MemoryStore().reachability.up is True


def test_sqlite_reports_a_failed_and_a_mended_call(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    store.ping()
    assert store.reachability.up is True
    # Another connection holds the write lock past the store's busy timeout: BEGIN IMMEDIATE fails.
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    store._db().execute("PRAGMA busy_timeout = 50")
    with pytest.raises(StateUnavailable):
        store.claim("k", "h", 60)
    assert store.reachability.up is False
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.claim("k", "h", 60).won
    assert store.reachability.up is True
    store.close()


def test_redis_down_and_back_is_seen_by_calls_and_by_the_watch_ping(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    store = RedisStore(server.url, timeout_s=0.5)
    servicer = health.HealthServicer()
    watch = StoreWatch(store, servicer, interval_s=0.05)

    def state() -> int:
        request = health_pb2.HealthCheckRequest(service=STATE_SERVICE)
        return servicer.Check(request, None).status  # type: ignore[arg-type]

    try:
        store.ping()
        assert state() == health_pb2.HealthCheckResponse.SERVING
        server.stop()
        with pytest.raises(StateUnavailable):
            store.take_token("caller:x", 1.0, 1)
        assert store.reachability.up is False
        assert state() == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.start()
        server.start()  # no call of the gateway's: the ping alone brings it back
        give_up = time.monotonic() + 10
        while state() != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < give_up:
            time.sleep(0.02)
        assert state() == health_pb2.HealthCheckResponse.SERVING
        assert store.reachability.up is True
    finally:
        watch.stop()
        store.close()
        server.stop()


class HeldPing:
    """A store whose ping waits for `gate`, counted: a ping caught running when the watch is stopped."""

    kind = "sqlite"

    def __init__(self) -> None:
        self.reachability = Reachability()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        self.entered.set()
        self.gate.wait(10)


def test_join_waits_for_a_running_ping_and_none_starts_after_stop() -> None:
    # The server closes the store right after stopping the watch: a ping still running then would
    # find it closed and report the store unreachable while the gateway shuts down.
    store = HeldPing()
    watch = StoreWatch(store, health.HealthServicer(), interval_s=0.01)  # type: ignore[arg-type]
    watch.start()
    assert store.entered.wait(5)
    watch.stop()
    stopper = threading.Thread(target=watch.join, args=(10,))
    stopper.start()
    time.sleep(0.2)
    assert stopper.is_alive()  # join() waits for the running ping
    store.gate.set()
    stopper.join(5)
    assert not stopper.is_alive()
    pings = store.pings
    time.sleep(0.1)  # ten intervals
    assert store.pings == pings == 1
