"""The state store's interface and values: claim, mark sent, complete, forget, reclaim, lock, reachability."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

State = Literal["claimed", "sent", "done"]


class StateConfigError(ValueError):
    """The state URL cannot be used (unknown scheme, a missing directory); one line, never the URL."""


@dataclass(frozen=True)
class RequestRecord:
    """What the store keeps of a create with a request id: fingerprints, hashes and times, no key."""

    key: str
    request_hash: str
    state: State
    created_at: float
    updated_at: float
    expires_at: float
    # The fingerprints of same-title, same-scope keys that existed just before the create was sent.
    baseline: tuple[str, ...] = field(default=())
    result_fingerprint: str = ""


@dataclass(frozen=True)
class Claim:
    won: bool
    record: RequestRecord


class Reachability:
    """Whether the store answered its latest call: every call reports, listeners hear each change.

    A store reports from the one place where its client's errors become StateUnavailable, so health and
    metrics follow the calls the gateway really makes, not only a probe of their own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.up: bool | None = None  # None until the first call
        self._listeners: list[Callable[[bool], None]] = []

    def report(self, up: bool) -> None:
        if self.up is up:  # the common case, on every call: no lock, no listener
            return
        with self._lock:
            if self.up is up:
                return
            self.up = up
            listeners = list(self._listeners)
        for listener in listeners:
            listener(up)

    def listen(self, listener: Callable[[bool], None]) -> None:
        """Calls `listener(up)` at each change from now on, and at once if the state is known."""
        with self._lock:
            self._listeners.append(listener)
            known = self.up
        if known is not None:
            listener(known)


class StateStore(Protocol):
    kind: str
    reachability: Reachability

    def claim(self, key: str, request_hash: str, ttl_s: float) -> Claim: ...
    def get(self, key: str) -> RequestRecord | None: ...
    def mark_sent(self, key: str, baseline: tuple[str, ...]) -> None: ...
    def complete(self, key: str, result_fingerprint: str) -> None: ...
    # With `expected_updated_at`, forget and reclaim are compare-and-set: they act only on the record as
    # the caller last read it, so an attempt never erases or steals a record another attempt moved on.
    def forget(self, key: str, expected_updated_at: float | None = None) -> None: ...
    # Reclaim moves updated_at (the owner's token) and keeps state and baseline: a "sent" record stays
    # "sent" until its outcome is known, so a takeover that fails midway is taken over again later.
    def reclaim(self, key: str, expected_updated_at: float) -> bool: ...
    def lock(self, name: str, lease_s: float, wait_s: float) -> contextlib.AbstractContextManager[None]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


@contextlib.contextmanager
def renewed(extend: Callable[[], None], interval_s: float) -> Iterator[None]:
    """Calls `extend()` every `interval_s` while the block runs, so a held lease does not lapse."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(interval_s):
            try:
                extend()
            except Exception:  # noqa: S112 - a missed renewal only shortens the lease
                continue

    thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(1.0)
