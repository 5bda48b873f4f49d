"""SQLite state: users, projects, datasets, memberships and API keys; keys survive a restart with --state."""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from encord_gateway.emulator.fixture import Fixture, ResourceType

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    email TEXT PRIMARY KEY,
    public_key TEXT NOT NULL  -- hex of the raw Ed25519 key; not unique, as on Encord
);
CREATE INDEX IF NOT EXISTS users_by_public_key ON users (public_key);
CREATE TABLE IF NOT EXISTS resources (
    resource_hash TEXT PRIMARY KEY,
    resource_type TEXT NOT NULL CHECK (resource_type IN ('project', 'dataset')),
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    resource_hash TEXT NOT NULL REFERENCES resources (resource_hash) ON DELETE CASCADE,
    email TEXT NOT NULL REFERENCES users (email) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    PRIMARY KEY (resource_hash, email)
);
CREATE TABLE IF NOT EXISTS api_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order, which lists follow
    api_key TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    resource_hash TEXT NOT NULL,  -- no foreign key: keys outlive a fixture that drops their resource
    resource_type TEXT NOT NULL CHECK (resource_type IN ('project', 'dataset')),
    title TEXT NOT NULL,
    scopes TEXT NOT NULL,  -- JSON list
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_by_resource ON api_keys (resource_hash, seq);
"""

# "0-1aABCDE_aFGcdeHIfJ2KfLMgNO3PQh4RST5UV6W_X": "0-" and 41 URL-safe characters, as in the seed.
KEY_PREFIX = "0-"
LOOKUP_CACHE_SIZE = 4096
KEY_BODY_LENGTH = 41
_KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
# 64 symbols: each random byte's low 6 bits pick one uniformly, in one C call for the whole key.
_BYTE_TO_SYMBOL = bytes(ord(_KEY_ALPHABET[b % 64]) for b in range(256))


def new_api_key() -> str:
    """A fresh key in Encord's shape, with 246 random bits."""
    return KEY_PREFIX + secrets.token_bytes(KEY_BODY_LENGTH).translate(_BYTE_TO_SYMBOL).decode("ascii")


def _now() -> str:
    # The SDK's ORM parses "%Y-%m-%d %H:%M:%S".
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class ResourceRow:
    resource_hash: str
    resource_type: ResourceType
    title: str
    description: str
    created_at: str


@dataclass(frozen=True)
class KeyRow:
    api_key: str
    key_hash: str
    resource_hash: str
    resource_type: ResourceType
    title: str
    scopes: tuple[str, ...]


class StoreClosed(RuntimeError):
    """The emulator is shutting down."""


class Store:
    """One SQLite connection behind one lock: every statement is short, and writes must not interleave."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            ":memory:" if path is None else str(path), check_same_thread=False, isolation_level=None
        )
        db = self._db
        if path is not None:
            # WAL: a crash mid-write leaves the last committed state; NORMAL is durable against
            # a killed process, which is what a restart test (and a laptop) needs.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        # Users, resources and memberships change only in load_fixture, which empties these:
        # the per-call lookups of who signed and what they may do are then answered from memory.
        self._users_by_key: dict[bytes, tuple[str, ...]] = {}
        self._roles: dict[tuple[str, str], tuple[ResourceRow | None, str | None]] = {}

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreClosed("the store is closed")
        return self._db

    def close(self) -> None:
        # Taking the lock waits for a write in flight, so shutdown never cuts a transaction.
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def load_fixture(self, fixture: Fixture) -> None:
        """Replaces users, resources and memberships with the fixture's, in one transaction; keys stay."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM memberships")
                db.execute("DELETE FROM users")
                db.execute("DELETE FROM resources")
                db.executemany(
                    "INSERT INTO users (email, public_key) VALUES (?, ?)",
                    [(u.email, u.public_key.hex()) for u in fixture.users],
                )
                now = _now()
                db.executemany(
                    "INSERT INTO resources VALUES (?, ?, ?, ?, ?)",
                    [
                        (r.resource_hash, r.resource_type, r.title, r.description, now)
                        for r in fixture.resources
                    ],
                )
                db.executemany(
                    "INSERT INTO memberships VALUES (?, ?, ?)",
                    [(r.resource_hash, e, "admin") for r in fixture.resources for e in r.admins]
                    + [(r.resource_hash, e, "member") for r in fixture.resources for e in r.members],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._users_by_key.clear()
            self._roles.clear()

    def users_with_public_key(self, public_key: bytes) -> list[str]:
        with self._lock:
            cached = self._users_by_key.get(public_key)
            if cached is None:
                rows = (
                    self._conn()
                    .execute("SELECT email FROM users WHERE public_key = ?", (public_key.hex(),))
                    .fetchall()
                )
                cached = self._remember(self._users_by_key, public_key, tuple(row[0] for row in rows))
        return list(cached)

    def resource_and_role(self, resource_hash: str, email: str) -> tuple[ResourceRow | None, str | None]:
        """The resource and the user's role in it ('admin', 'member' or None), in one query."""
        with self._lock:
            cached = self._roles.get((resource_hash, email))
            if cached is None:
                row = (
                    self._conn()
                    .execute(
                        "SELECT r.resource_hash, r.resource_type, r.title, r.description, r.created_at, "
                        "m.role FROM resources r LEFT JOIN memberships m "
                        "ON m.resource_hash = r.resource_hash AND m.email = ? WHERE r.resource_hash = ?",
                        (email, resource_hash),
                    )
                    .fetchone()
                )
                answer = (None, None) if row is None else (ResourceRow(*row[:5]), row[5])
                cached = self._remember(self._roles, (resource_hash, email), answer)
        return cached

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> Any:
        # Bounded: the keys come from callers (any public key, any hash). Called under the lock.
        if len(cache) >= LOOKUP_CACHE_SIZE:
            cache.clear()
        cache[key] = value
        return value

    def resource(self, resource_hash: str) -> ResourceRow | None:
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT resource_hash, resource_type, title, description, created_at "
                    "FROM resources WHERE resource_hash = ?",
                    (resource_hash,),
                )
                .fetchone()
            )
        return None if row is None else ResourceRow(*row)

    def create_key(
        self, resource: ResourceRow, title: str, scopes: tuple[str, ...], created_by: str
    ) -> KeyRow:
        """Stores a new key; a single INSERT, so it is either there whole or not at all."""
        with self._lock:
            db = self._conn()
            while True:
                key = KeyRow(
                    new_api_key(),
                    str(uuid.uuid4()),
                    resource.resource_hash,
                    resource.resource_type,
                    title,
                    scopes,
                )
                try:
                    db.execute(
                        "INSERT INTO api_keys (api_key, key_hash, resource_hash, resource_type, title, "
                        "scopes, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            key.api_key,
                            key.key_hash,
                            key.resource_hash,
                            key.resource_type,
                            key.title,
                            json.dumps(list(scopes)),
                            created_by,
                            _now(),
                        ),
                    )
                except sqlite3.IntegrityError:
                    continue  # a 246-bit collision: draw again rather than hand out a shared key
                return key

    def list_keys(self, resource_hash: str) -> list[KeyRow]:
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT api_key, key_hash, resource_hash, resource_type, title, scopes "
                    "FROM api_keys WHERE resource_hash = ? ORDER BY seq",
                    (resource_hash,),
                )
                .fetchall()
            )
        return [_key_row(row) for row in rows]

    def key(self, api_key: str) -> KeyRow | None:
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT api_key, key_hash, resource_hash, resource_type, title, scopes "
                    "FROM api_keys WHERE api_key = ?",
                    (api_key,),
                )
                .fetchone()
            )
        return None if row is None else _key_row(row)

    def key_counts(self) -> dict[str, int]:
        """Stored keys per resource hash, with a 0 for every known resource that has none."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT resource_hash, COUNT(api_keys.seq) FROM "
                    "(SELECT resource_hash FROM resources UNION SELECT resource_hash FROM api_keys) "
                    "LEFT JOIN api_keys USING (resource_hash) GROUP BY resource_hash"
                )
                .fetchall()
            )
        return {row[0]: row[1] for row in rows}


def _key_row(row: tuple[str, str, str, ResourceType, str, str]) -> KeyRow:
    return KeyRow(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5])))
