"""The memory:// store: one process, lost at restart; the embedded default."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Iterator

from encord_gateway.errors import LockTimeout
from encord_gateway.state.store import Claim, Reachability, RequestRecord, renewed


class MemoryStore:
    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._records: dict[str, RequestRecord] = {}
        self._held: dict[str, tuple[str, float]] = {}
        self._changed = threading.Condition()
        self.reachability = Reachability()
        self.reachability.report(True)  # a dict in this process is always there

    def _live(self, key: str) -> RequestRecord | None:
        record = self._records.get(key)
        if record is not None and record.expires_at <= self._clock():
            del self._records[key]
            return None
        return record

    def claim(self, key: str, request_hash: str, ttl_s: float) -> Claim:
        with self._changed:
            existing = self._live(key)
            if existing is not None:
                return Claim(False, existing)
            now = self._clock()
            record = RequestRecord(key, request_hash, "claimed", now, now, now + ttl_s)
            self._records[key] = record
            return Claim(True, record)

    def get(self, key: str) -> RequestRecord | None:
        with self._changed:
            return self._live(key)

    def _update(self, key: str, **changes: object) -> None:
        with self._changed:
            record = self._live(key)
            if record is not None:
                self._records[key] = dataclasses.replace(record, updated_at=self._clock(), **changes)  # type: ignore[arg-type]

    def mark_sent(self, key: str, baseline: tuple[str, ...]) -> None:
        self._update(key, state="sent", baseline=baseline)

    def complete(self, key: str, result_fingerprint: str) -> None:
        self._update(key, state="done", result_fingerprint=result_fingerprint)

    def forget(self, key: str, expected_updated_at: float | None = None) -> None:
        with self._changed:
            record = self._records.get(key)
            if record is not None and expected_updated_at in (None, record.updated_at):
                del self._records[key]

    def reclaim(self, key: str, expected_updated_at: float) -> bool:
        with self._changed:
            record = self._live(key)
            if record is None or record.updated_at != expected_updated_at:
                return False
            self._records[key] = dataclasses.replace(record, updated_at=self._clock())
            return True

    @contextlib.contextmanager
    def lock(self, name: str, lease_s: float, wait_s: float) -> Iterator[None]:
        token = secrets.token_hex(8)
        give_up = time.monotonic() + wait_s
        with self._changed:
            while True:
                holder = self._held.get(name)
                if holder is None or holder[1] <= self._clock():
                    self._held[name] = (token, self._clock() + lease_s)
                    break
                left = min(give_up - time.monotonic(), holder[1] - self._clock())
                if time.monotonic() >= give_up:
                    raise LockTimeout("the deadline ran out waiting for a concurrent create of the same key")
                self._changed.wait(max(0.001, left))

        def extend() -> None:
            with self._changed:
                if self._held.get(name, ("", 0.0))[0] == token:
                    self._held[name] = (token, self._clock() + lease_s)

        try:
            with renewed(extend, lease_s / 3):
                yield
        finally:
            with self._changed:
                if self._held.get(name, ("", 0.0))[0] == token:
                    del self._held[name]
                self._changed.notify_all()

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
