"""The state store behind --state-url: request-id records, locks and rate buckets; never a secret."""

from __future__ import annotations

from encord_gateway.errors import LockTimeout, StateUnavailable
from encord_gateway.state.memory import MemoryStore
from encord_gateway.state.sqlite import SqliteStore
from encord_gateway.state.store import (
    Claim,
    Reachability,
    RequestRecord,
    StateConfigError,
    StateStore,
)

__all__ = [
    "Claim",
    "LockTimeout",
    "MemoryStore",
    "Reachability",
    "RequestRecord",
    "SqliteStore",
    "StateConfigError",
    "StateStore",
    "StateUnavailable",
    "open_store",
]


def open_store(
    url: str,
    *,
    password: str | None = None,
    ca_file: str | None = None,
    prefix: str = "encord-gateway:",
    timeout_s: float = 2.0,
) -> StateStore:
    """The store a state URL names: memory:// (one process), sqlite:///PATH (one host, durable), or
    redis:// and rediss:// (a fleet; `password`, `ca_file`, `prefix` and `timeout_s` apply to these)."""
    if url in ("memory://", "memory:", ""):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite://"))
    if url.startswith(("redis://", "rediss://")):
        # Imported here: a gateway on memory:// or sqlite:// never loads the Redis client.
        from encord_gateway.state.redis import RedisStore

        return RedisStore(url, password=password, ca_file=ca_file, prefix=prefix, timeout_s=timeout_s)
    # Not the URL itself: a redis:// URL may carry a password.
    scheme = url.split(":", 1)[0]
    raise StateConfigError(f"state_url scheme {scheme}:// is not served by this gateway build")
