"""The state store behind --state-url: request-id records and per-resource locks, never a secret."""

from __future__ import annotations

from encord_gateway.errors import LockTimeout, StateUnavailable
from encord_gateway.state.memory import MemoryStore
from encord_gateway.state.sqlite import SqliteStore
from encord_gateway.state.store import (
    Claim,
    RequestRecord,
    StateConfigError,
    StateStore,
)

__all__ = [
    "Claim",
    "LockTimeout",
    "MemoryStore",
    "RequestRecord",
    "SqliteStore",
    "StateConfigError",
    "StateStore",
    "StateUnavailable",
    "open_store",
]


def open_store(url: str) -> StateStore:
    """The store a state URL names: memory:// (one process) or sqlite:///PATH (one host, durable)."""
    if url in ("memory://", "memory:", ""):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite://"))
    # Not the URL itself: a redis:// URL may carry a password.
    scheme = url.split(":", 1)[0]
    raise StateConfigError(f"state_url scheme {scheme}:// is not served by this gateway build")
