"""One table-driven suite that every state store passes: claims, transitions, expiry, locks with leases."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import pytest
from encord_gateway.state import (
    LockTimeout,
    MemoryStore,
    SqliteStore,
    StateConfigError,
    StateStore,
    open_store,
)
from encord_gateway.state.redis import RedisStore
from support.redis_server import RedisServer


class Clock:
    """A hand-moved clock: expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Backend:
    """How to open one backend's store (the test's folder, a hand clock, its URL) and what it promises."""

    open: Callable[[Path, Clock, str], StateStore]
    # memory and sqlite lease locks by the store's clock; Redis leases them by its own (SET PX), so that
    # no replica's clock decides who holds a lock: its lapse is tested with a real holder killed.
    leases_follow_clock: bool
    # Several processes share it: a holder in another process excludes this one.
    shared: bool


BACKENDS: dict[str, Backend] = {
    "memory": Backend(lambda tmp, clock, url: MemoryStore(clock=clock), True, False),
    "sqlite": Backend(lambda tmp, clock, url: SqliteStore(str(tmp / "state.db"), clock=clock), True, True),
    # Every test gets a prefix of its own on the one server of the session.
    "redis": Backend(
        lambda tmp, clock, url: RedisStore(url, prefix=f"test:{uuid.uuid4().hex}:", clock=clock), False, True
    ),
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def _url(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if name == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return "memory://"


@pytest.fixture(params=sorted(BACKENDS))
def clock_and_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Clock, StateStore]]:
    clock = Clock()
    store = BACKENDS[request.param].open(tmp_path, clock, _url(request.param, request, tmp_path))
    yield clock, store
    store.close()


def test_a_second_claim_sees_the_first(clock_and_store: tuple[Clock, StateStore]) -> None:
    _, store = clock_and_store
    first = store.claim("k", "hash-a", 60)
    second = store.claim("k", "hash-b", 60)
    assert first.won
    assert not second.won
    assert second.record.request_hash == "hash-a"
    assert second.record.state == "claimed"


def test_sixteen_threads_claim_one_key_and_exactly_one_wins(
    clock_and_store: tuple[Clock, StateStore],
) -> None:
    _, store = clock_and_store
    barrier = threading.Barrier(16)

    def claim(_: int) -> bool:
        barrier.wait()
        return store.claim("contended", "h", 60).won

    with futures.ThreadPoolExecutor(16) as pool:
        wins = list(pool.map(claim, range(16)))
    assert wins.count(True) == 1


def test_transitions_keep_fingerprints_and_never_a_key(clock_and_store: tuple[Clock, StateStore]) -> None:
    clock, store = clock_and_store
    store.claim("k", "h", 60)
    clock.now += 1
    store.mark_sent("k", ("aaaa", "bbbb"))
    sent = store.get("k")
    assert sent is not None
    assert sent.state == "sent"
    assert sent.baseline == ("aaaa", "bbbb")
    assert sent.updated_at == clock.now
    store.complete("k", "cccc")
    done = store.get("k")
    assert done is not None
    assert (done.state, done.result_fingerprint) == ("done", "cccc")
    store.forget("k")
    assert store.get("k") is None
    assert store.claim("k", "h2", 60).won  # forgotten: the next call runs afresh


def test_reclaim_is_a_compare_and_set(clock_and_store: tuple[Clock, StateStore]) -> None:
    clock, store = clock_and_store
    record = store.claim("k", "h", 60).record
    clock.now += 5
    assert store.reclaim("k", record.updated_at)
    assert not store.reclaim("k", record.updated_at)  # the first taker moved updated_at on


def test_reclaim_keeps_a_sent_record_sent_with_its_baseline(
    clock_and_store: tuple[Clock, StateStore],
) -> None:
    clock, store = clock_and_store
    store.claim("k", "h", 60)
    store.mark_sent("k", ("aaaa",))
    sent = store.get("k")
    assert sent is not None
    clock.now += 5
    assert store.reclaim("k", sent.updated_at)
    taken = store.get("k")
    assert taken is not None
    # A takeover that dies before it reconciles leaves the record for the next one to reconcile.
    assert (taken.state, taken.baseline, taken.updated_at) == ("sent", ("aaaa",), sent.updated_at + 5)


def test_a_conditional_forget_spares_a_record_that_moved_on(
    clock_and_store: tuple[Clock, StateStore],
) -> None:
    clock, store = clock_and_store
    first = store.claim("k", "h", 60).record
    clock.now += 5
    assert store.reclaim("k", first.updated_at)
    store.forget("k", first.updated_at)  # stale: another attempt owns the record now
    assert store.get("k") is not None
    moved = store.get("k")
    assert moved is not None
    store.forget("k", moved.updated_at)
    assert store.get("k") is None


def test_records_expire(clock_and_store: tuple[Clock, StateStore]) -> None:
    clock, store = clock_and_store
    store.claim("k", "h", 10)
    clock.now += 9
    assert store.get("k") is not None
    clock.now += 2
    assert store.get("k") is None
    assert store.claim("k", "other", 10).won


def test_a_lock_excludes_and_times_out(clock_and_store: tuple[Clock, StateStore]) -> None:
    _, store = clock_and_store
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.lock("resource", lease_s=30, wait_s=1):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    started = time.monotonic()
    with pytest.raises(LockTimeout), store.lock("resource", lease_s=30, wait_s=0.2):
        pass
    assert time.monotonic() - started >= 0.2
    with store.lock("another", lease_s=30, wait_s=0.2):
        pass  # other names are not held
    release.set()
    holder.join()
    with store.lock("resource", lease_s=30, wait_s=1):
        pass


def test_a_lease_that_is_never_released_lapses(clock_and_store: tuple[Clock, StateStore]) -> None:
    clock, store = clock_and_store
    if not BACKENDS[store.kind].leases_follow_clock:
        pytest.skip(f"{store.kind} leases by its own clock: see the killed-holder test")
    abandoned = store.lock("resource", lease_s=30, wait_s=1)
    abandoned.__enter__()  # a holder that died: never exits, and its renewals stop with the clock
    clock.now += 31
    with store.lock("resource", lease_s=30, wait_s=1):
        pass


HOLD_IN_A_PROCESS = """
import sys, time
from encord_gateway.state import open_store
from encord_gateway.state.redis import RedisStore
store = RedisStore(sys.argv[1], prefix=sys.argv[2]) if sys.argv[2] else open_store(sys.argv[1])
with store.lock("resource", lease_s=float(sys.argv[3]), wait_s=10):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("name", sorted(n for n, b in BACKENDS.items() if b.shared))
def test_a_holder_in_another_process_renews_its_lease_and_a_killed_one_loses_it(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _url(name, request, tmp_path)
    prefix = f"test:{uuid.uuid4().hex}:" if name == "redis" else ""
    store: StateStore = RedisStore(url, prefix=prefix) if prefix else open_store(url)
    lease = 1.0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_A_PROCESS, url, prefix, str(lease)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        # Well past the lease: only renewals keep it held.
        time.sleep(2.5 * lease)
        with pytest.raises(LockTimeout), store.lock("resource", lease_s=lease, wait_s=0.2):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        # Nobody releases it now: the lease lapses and the lock can be taken.
        with store.lock("resource", lease_s=lease, wait_s=10 * lease):
            pass
    finally:
        holder.kill()
        holder.communicate()
        store.close()


CLAIM_IN_A_PROCESS = """
import sys
from encord_gateway.state import SqliteStore
store = SqliteStore(sys.argv[1])
print(any(store.claim("shared", "h", 60).won for _ in range(8)))
"""


def test_two_processes_sharing_a_sqlite_file_claim_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    SqliteStore(path).close()
    workers = [
        subprocess.Popen([sys.executable, "-c", CLAIM_IN_A_PROCESS, path], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    won = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    assert sorted(won) == ["False", "True"]


def test_a_sqlite_store_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = SqliteStore(path)
    first.claim("k", "h", 3600)
    first.complete("k", "ffff")
    first.close()
    record = SqliteStore(path).get("k")
    assert record is not None
    assert record.result_fingerprint == "ffff"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///nonexistent-dir/state.db", "directory does not exist"),
        ("redis://:hunter2@localhost:6379/zero", "by number"),
        ("redis://:hunter2@:6379/0", "needs a host"),
        ("redis://:hunter2@localhost:port/0", "not a valid"),
        ("redis://:hunter2@localhost:6379/0?ssl_cert_reqs=none", "no ?options"),
        ("ftp://x", "ftp://"),
    ],
)
def test_unusable_urls_are_one_line_without_the_url(url: str, message: str) -> None:
    with pytest.raises(StateConfigError) as refused:
        open_store(url)
    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_memory_is_the_default() -> None:
    assert open_store("memory://").kind == "memory"
