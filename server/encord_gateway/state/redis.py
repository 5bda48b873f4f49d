"""The redis:// store: request-id records, leased locks and rate buckets shared by a fleet of gateways."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from encord_gateway.errors import LockTimeout, StateUnavailable
from encord_gateway.state.store import Claim, Reachability, RequestRecord, StateConfigError, renewed

DEFAULT_PREFIX = "encord-gateway:"
DEFAULT_PORT = 6379
# A waiter looks again at a lock another replica holds this often at first, backing off to the cap.
_POLL_FIRST_S = 0.002
_POLL_CAP_S = 0.05
# A release that Redis did not get is sent again this often, until the lease would have lapsed.
_RELEASE_RETRY_S = 0.25

# Records are hashes. Their times are the gateway's clock, as the settle window reads them (and as the
# sqlite store keeps them); Redis's own expiry (PEXPIRE) only clears them away afterwards.
_CLAIM = """
local expires = redis.call('HGET', KEYS[1], 'expires_at')
if expires and tonumber(expires) > tonumber(ARGV[1]) then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'request_hash', ARGV[2], 'state', 'claimed', 'created_at', ARGV[1],
           'updated_at', ARGV[1], 'expires_at', ARGV[3], 'baseline', '[]', 'result_fingerprint', '')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
# A transition touches only a live record: one forgotten meanwhile is not brought back.
_UPDATE = """
local expires = redis.call('HGET', KEYS[1], 'expires_at')
if not expires or tonumber(expires) <= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1], unpack(ARGV, 2))
return 1
"""
_FORGET_IF = """
if redis.call('HGET', KEYS[1], 'updated_at') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RECLAIM = """
local expires = redis.call('HGET', KEYS[1], 'expires_at')
if not expires or tonumber(expires) <= tonumber(ARGV[1]) then
  return 0
end
if redis.call('HGET', KEYS[1], 'updated_at') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return 1
"""
# Locks are leased by Redis's clock (SET NX PX), so that mutual exclusion never rests on the replicas'
# clocks agreeing. Only the holder's token may extend or drop a lease.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# One call, one script: a token bucket on Redis's clock (replicas' clocks may differ), kept as long as
# it takes to fill up again. Answers 0 when a token was taken, else the milliseconds until one will be.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(held[1]) or burst
local stamp = tonumber(held[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


@dataclass(frozen=True)
class RedisTarget:
    """Where a redis:// or rediss:// URL points; the password is kept out of the repr."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"RedisTarget({self.where!r}, db={self.db}, tls={self.tls})"

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_url(url: str) -> RedisTarget:
    """redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or rediss://...; errors never echo the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise StateConfigError("state_url is not a valid redis:// URL") from None
    if parts.scheme not in ("redis", "rediss"):
        raise StateConfigError("state_url must start with redis:// or rediss://")
    if not parts.hostname:
        raise StateConfigError("state_url redis:// needs a host: redis://HOST[:PORT][/DB]")
    if parts.query or parts.fragment:
        raise StateConfigError("state_url redis:// takes no ?options or #fragment: use the state_* settings")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit() or len(db_text) > 5:
        raise StateConfigError("state_url redis:// names its database by number: redis://HOST:PORT/0")
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(db_text),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _text(item: Any) -> str:
    return item.decode() if isinstance(item, bytes) else str(item)


def _decoded(answer: Any) -> dict[str, str]:
    """HGETALL's answer as text: a dict from the client, a flat list of pairs from a script."""
    if isinstance(answer, dict):
        return {_text(name): _text(value) for name, value in answer.items()}
    items = [_text(item) for item in answer]
    return dict(zip(items[0::2], items[1::2], strict=True))


def _stamp(value: float) -> str:
    # repr() of a float reads back as the same float: compare-and-set on updated_at is exact.
    return repr(float(value))


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        ca_file: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = parse_url(url)
        self.prefix = prefix
        self._clock = clock
        self._client = redis.Redis(
            host=self.target.host,
            port=self.target.port,
            db=self.target.db,
            username=self.target.username,
            # A password file wins over a password in the URL.
            password=password if password is not None else self.target.password,
            ssl=self.target.tls,
            ssl_ca_certs=ca_file,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # One immediate retry: a pooled connection that Redis closed (a restart) is replaced at once;
            # an unreachable Redis fails the call within the timeout, never after a backoff schedule.
            retry=Retry(NoBackoff(), 1),
            client_name="encord-gateway",
        )
        self._claim = self._client.register_script(_CLAIM)
        self._update = self._client.register_script(_UPDATE)
        self._forget_if = self._client.register_script(_FORGET_IF)
        self._reclaim = self._client.register_script(_RECLAIM)
        self._extend = self._client.register_script(_EXTEND)
        self._release = self._client.register_script(_RELEASE)
        self._take = self._client.register_script(_TAKE)
        self._closed = threading.Event()
        # Calls talking to Redis now. close() waits for them: redis-py's close only disconnects, and a
        # call still running (the health ping, a release retried in the background) would reconnect
        # and leave that connection open after close.
        self._calls = 0
        self._calls_ended = threading.Condition()
        # One call's longest run: a connect and a command, each within the timeout, and one retry.
        self._longest_call_s = 4 * timeout_s
        self.reachability = Reachability()

    @contextlib.contextmanager
    def _reached(self, doing: str) -> Iterator[None]:
        """redis-py's errors become StateUnavailable, naming where and what kind, never a credential.

        Once the store is closed, nothing reaches Redis: StateUnavailable, and no connection is opened.
        """
        with self._calls_ended:
            if self._closed.is_set():
                raise StateUnavailable(
                    f"the state store (redis at {self.target.where}) is closed: cannot {doing}"
                )
            self._calls += 1
        try:
            yield
        except redis.AuthenticationError:
            self.reachability.report(False)
            raise StateUnavailable(
                f"the state store (redis at {self.target.where}) refused the gateway's credentials"
            ) from None
        except redis.RedisError as exc:
            self.reachability.report(False)
            raise StateUnavailable(
                f"the state store (redis at {self.target.where}) cannot {doing}: {type(exc).__name__}"
            ) from None
        else:
            self.reachability.report(True)
        finally:
            with self._calls_ended:
                self._calls -= 1
                self._calls_ended.notify_all()

    def _record_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _record(self, key: str, fields: dict[str, str]) -> RequestRecord:
        return RequestRecord(
            key,
            fields["request_hash"],
            fields["state"],  # type: ignore[arg-type]  # only the scripts above write it
            float(fields["created_at"]),
            float(fields["updated_at"]),
            float(fields["expires_at"]),
            tuple(json.loads(fields.get("baseline", "[]"))),
            fields.get("result_fingerprint", ""),
        )

    def claim(self, key: str, request_hash: str, ttl_s: float) -> Claim:
        now = self._clock()
        args: list[str | int] = [
            _stamp(now),
            request_hash,
            _stamp(now + ttl_s),
            max(1, math.ceil(ttl_s * 1000)),
        ]
        with self._reached("claim a request id"):
            answer = self._claim(keys=[self._record_key(key)], args=args)
        if answer == 1:
            return Claim(True, RequestRecord(key, request_hash, "claimed", now, now, now + ttl_s))
        return Claim(False, self._record(key, _decoded(answer)))

    def get(self, key: str) -> RequestRecord | None:
        with self._reached("read a request id"):
            fields = _decoded(self._client.hgetall(self._record_key(key)))
        if not fields or float(fields["expires_at"]) <= self._clock():
            return None
        return self._record(key, fields)

    def _transition(self, key: str, *changes: str) -> None:
        with self._reached("update a request id"):
            self._update(keys=[self._record_key(key)], args=[_stamp(self._clock()), *changes])

    def mark_sent(self, key: str, baseline: tuple[str, ...]) -> None:
        self._transition(key, "state", "sent", "baseline", json.dumps(list(baseline)))

    def complete(self, key: str, result_fingerprint: str) -> None:
        self._transition(key, "state", "done", "result_fingerprint", result_fingerprint)

    def forget(self, key: str, expected_updated_at: float | None = None) -> None:
        with self._reached("forget a request id"):
            if expected_updated_at is None:
                self._client.delete(self._record_key(key))
            else:
                self._forget_if(keys=[self._record_key(key)], args=[_stamp(expected_updated_at)])

    def reclaim(self, key: str, expected_updated_at: float) -> bool:
        args = [_stamp(self._clock()), _stamp(expected_updated_at)]
        with self._reached("take over a request id"):
            return bool(self._reclaim(keys=[self._record_key(key)], args=args))

    def _lock_key(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def _try_lock(self, name: str, token: str, lease_ms: int) -> bool:
        with self._reached("take a lock"):
            if self._client.set(self._lock_key(name), token, nx=True, px=lease_ms):
                return True
            # A SET retried after a lost answer finds its own token: the lock is ours.
            held = self._client.get(self._lock_key(name))
        return held == token.encode()

    @contextlib.contextmanager
    def lock(self, name: str, lease_s: float, wait_s: float) -> Iterator[None]:
        token = secrets.token_hex(16)
        lease_ms = max(1, math.ceil(lease_s * 1000))
        give_up = time.monotonic() + wait_s
        pause = _POLL_FIRST_S
        while not self._try_lock(name, token, lease_ms):
            left = give_up - time.monotonic()
            if left <= 0:
                raise LockTimeout("the deadline ran out waiting for a concurrent create of the same key")
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_CAP_S)

        def extend() -> None:
            with self._reached("extend a lock"):
                self._extend(keys=[self._lock_key(name)], args=[token, lease_ms])

        try:
            with renewed(extend, lease_s / 3):
                yield
        finally:
            self._release_or_retry(name, token, lease_s)

    def _release_or_retry(self, name: str, token: str, lease_s: float) -> None:
        """Compare-and-delete: a lease that lapsed and was taken by another is not ours to drop.

        If Redis cannot be reached, the release is tried again in the background until the lease would
        have lapsed anyway: a Redis back after a blink frees the resource at once, not after the lease.
        """

        def release() -> bool:
            try:
                with self._reached("release a lock"):
                    self._release(keys=[self._lock_key(name)], args=[token])
                return True
            except StateUnavailable:
                return False

        if release():
            return
        give_up = time.monotonic() + lease_s

        def retry() -> None:
            while time.monotonic() < give_up and not self._closed.wait(_RELEASE_RETRY_S):
                if release():
                    return

        threading.Thread(target=retry, name="lock-release", daemon=True).start()

    def take_token(self, bucket: str, per_second: float, burst: int) -> float:
        """One call's token from a bucket the fleet shares: 0.0 if taken, else the seconds to wait."""
        name = hashlib.sha256(bucket.encode()).hexdigest()[:32]
        with self._reached("take a rate-limit token"):
            wait_ms = self._take(keys=[f"{self.prefix}rate:{name}"], args=[repr(per_second), burst])
        return float(wait_ms) / 1000.0

    def ping(self) -> None:
        """StateUnavailable if Redis cannot be reached now; StateConfigError if it refuses the credentials,
        which no waiting will mend."""
        with self._reached("be reached"):
            try:
                self._client.ping()
            except redis.AuthenticationError:
                raise StateConfigError(
                    f"state_url redis at {self.target.where} refused the gateway's credentials "
                    "(the password in the URL or in state_password_file)"
                ) from None

    def close(self) -> None:
        """Refuses new calls, waits for those running (each ends within its timeouts), then disconnects."""
        with self._calls_ended:
            self._closed.set()
            self._calls_ended.wait_for(lambda: self._calls == 0, timeout=self._longest_call_s)
        self._client.close()
