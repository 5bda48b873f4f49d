"""The sqlite:///PATH store: survives restarts and is shared by the gateway processes of one host (WAL)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

from encord_gateway.errors import LockTimeout, StateUnavailable
from encord_gateway.state.store import (
    Claim,
    Reachability,
    RequestRecord,
    StateConfigError,
    renewed,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS request_ids (
    key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, expires_at REAL NOT NULL,
    baseline TEXT NOT NULL DEFAULT '[]', result_fingerprint TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL);
"""
_COLUMNS = "key, request_hash, state, created_at, updated_at, expires_at, baseline, result_fingerprint"
# How often a waiter looks again at a lock another process holds (SQLite has no cross-process wake-up).
_POLL_S = 0.01


class SqliteStore:
    kind = "sqlite"

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise StateConfigError(f"state_url sqlite file {path}: its directory does not exist")
        self.path = path
        self._clock = clock
        self._local = threading.local()
        self.reachability = Reachability()
        try:
            with self._transaction() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
        except StateUnavailable as exc:
            raise StateConfigError(f"state_url sqlite file {path} cannot be used: {exc}") from None

    def _db(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections are not to be shared between threads.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken up front, so a claim's read and write are one step."""
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.reachability.report(False)
            raise StateUnavailable(f"the state store cannot be used: {exc}") from None
        try:
            yield db
        except sqlite3.Error as exc:
            db.execute("ROLLBACK")
            self.reachability.report(False)
            raise StateUnavailable(f"the state store cannot be used: {exc}") from None
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.reachability.report(False)
            raise StateUnavailable(f"the state store cannot be written: {exc}") from None
        self.reachability.report(True)

    def _row(self, db: sqlite3.Connection, key: str) -> RequestRecord | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM request_ids WHERE key = ?", (key,)).fetchone()  # noqa: S608
        if row is None:
            return None
        if row[5] <= self._clock():
            db.execute("DELETE FROM request_ids WHERE key = ?", (key,))
            return None
        return RequestRecord(
            row[0], row[1], row[2], row[3], row[4], row[5], tuple(json.loads(row[6])), row[7]
        )

    def claim(self, key: str, request_hash: str, ttl_s: float) -> Claim:
        with self._transaction() as db:
            existing = self._row(db, key)
            if existing is not None:
                return Claim(False, existing)
            now = self._clock()
            record = RequestRecord(key, request_hash, "claimed", now, now, now + ttl_s)
            db.execute(
                f"INSERT INTO request_ids ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, '[]', '')",  # noqa: S608
                (key, request_hash, "claimed", now, now, now + ttl_s),
            )
            # Now and then, forget what has expired, so the file does not grow without bound.
            if secrets.randbelow(64) == 0:
                db.execute("DELETE FROM request_ids WHERE expires_at <= ?", (now,))
            return Claim(True, record)

    def get(self, key: str) -> RequestRecord | None:
        with self._transaction() as db:
            return self._row(db, key)

    def mark_sent(self, key: str, baseline: tuple[str, ...]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE request_ids SET state = 'sent', baseline = ?, updated_at = ? WHERE key = ?",
                (json.dumps(list(baseline)), self._clock(), key),
            )

    def complete(self, key: str, result_fingerprint: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE request_ids SET state = 'done', result_fingerprint = ?, updated_at = ? WHERE key = ?",
                (result_fingerprint, self._clock(), key),
            )

    def forget(self, key: str, expected_updated_at: float | None = None) -> None:
        with self._transaction() as db:
            if expected_updated_at is None:
                db.execute("DELETE FROM request_ids WHERE key = ?", (key,))
            else:
                db.execute(
                    "DELETE FROM request_ids WHERE key = ? AND updated_at = ?", (key, expected_updated_at)
                )

    def reclaim(self, key: str, expected_updated_at: float) -> bool:
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE request_ids SET updated_at = ? WHERE key = ? AND updated_at = ?",
                (self._clock(), key, expected_updated_at),
            ).rowcount
            return bool(changed)

    def _try_lock(self, name: str, token: str, lease_s: float) -> bool:
        with self._transaction() as db:
            now = self._clock()
            db.execute("DELETE FROM locks WHERE name = ? AND expires_at <= ?", (name, now))
            db.execute("INSERT OR IGNORE INTO locks VALUES (?, ?, ?)", (name, token, now + lease_s))
            row = db.execute("SELECT token FROM locks WHERE name = ?", (name,)).fetchone()
            return row is not None and row[0] == token

    @contextlib.contextmanager
    def lock(self, name: str, lease_s: float, wait_s: float) -> Iterator[None]:
        token = secrets.token_hex(8)
        give_up = time.monotonic() + wait_s
        while not self._try_lock(name, token, lease_s):
            if time.monotonic() >= give_up:
                raise LockTimeout("the deadline ran out waiting for a concurrent create of the same key")
            time.sleep(_POLL_S)

        def extend() -> None:
            with self._transaction() as db:
                db.execute(
                    "UPDATE locks SET expires_at = ? WHERE name = ? AND token = ?",
                    (self._clock() + lease_s, name, token),
                )

        try:
            with renewed(extend, lease_s / 3):
                yield
        finally:
            # Compare-and-delete: a lease that lapsed and was taken by another is not ours to drop.
            with contextlib.suppress(StateUnavailable), self._transaction() as db:
                db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))

    def ping(self) -> None:
        with self._transaction() as db:
            db.execute("SELECT 1")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
