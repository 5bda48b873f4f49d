"""Per-caller token buckets: a steady rate with a burst allowance, kept across reloads, shared by a fleet."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from encord_gateway.errors import StateUnavailable
from encord_gateway.logs import FIELDS

log = logging.getLogger(__name__)
# After the shared store failed, calls use this process's buckets for this long before trying it again,
# so that a Redis that does not answer costs one timeout now and then, not one per call.
SHARED_RETRY_AFTER_S = 1.0


@runtime_checkable
class SharedBuckets(Protocol):
    """A store that keeps buckets for the whole fleet (the redis:// state store)."""

    def take_token(self, bucket: str, per_second: float, burst: int) -> float: ...


@dataclass(frozen=True)
class Rate:
    """`per_second` tokens are added each second, up to `burst`; each call takes one."""

    per_second: float
    burst: int


class TokenBucket:
    """One bucket; `take()` answers 0.0 when a token was taken, else the seconds until one will be there."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.rate = rate
        self._tokens = float(rate.burst)
        self._stamp = clock()

    def retune(self, rate: Rate) -> None:
        """A reload changed the rate: keep what is in the bucket (capped), so a reload is no free refill."""
        with self._lock:
            self._refill()
            self.rate = rate
            self._tokens = min(self._tokens, float(rate.burst))

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.rate.burst), self._tokens + (now - self._stamp) * self.rate.per_second)
        self._stamp = now

    def take(self) -> float:
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate.per_second


class RateLimits:
    """The buckets by caller name; a caller whose rate is None is not limited.

    With `share()`, each take is one call to the fleet's shared bucket, so that a caller's rate_limit
    holds across every replica. While the shared store cannot be reached, this process's own buckets
    stand in (a caller then gets at most its rate from each replica), and `fallbacks` counts each take
    they answered (and calls `on_fallback`, the metric's hook, for each).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._shared: SharedBuckets | None = None
        self._shared_down_until = 0.0
        self.fallbacks = 0
        self.on_fallback: Callable[[], None] | None = None

    def share(self, buckets: SharedBuckets) -> None:
        self._shared = buckets

    def take(self, caller: str, rate: Rate | None) -> float:
        """0.0 if the call may go ahead, else the seconds the caller should wait."""
        if rate is None:
            return 0.0
        if self._shared is not None and self._clock() >= self._shared_down_until:
            try:
                return self._shared.take_token(f"caller:{caller}", rate.per_second, rate.burst)
            except StateUnavailable as exc:
                with self._lock:
                    self._shared_down_until = self._clock() + SHARED_RETRY_AFTER_S
                log.warning(
                    "shared rate-limit buckets unavailable; this process's buckets stand in",
                    extra={FIELDS: {"error": str(exc), "retry_after_s": SHARED_RETRY_AFTER_S}},
                )
        if self._shared is not None:
            with self._lock:
                self.fallbacks += 1
            if self.on_fallback is not None:
                self.on_fallback()
        return self._local(caller, rate)

    def _local(self, caller: str, rate: Rate) -> float:
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                bucket = self._buckets[caller] = TokenBucket(rate, self._clock)
            elif bucket.rate != rate:
                bucket.retune(rate)
        return bucket.take()

    def forget_except(self, callers: set[str]) -> None:
        """Drops the buckets of callers a reload removed."""
        with self._lock:
            for name in set(self._buckets) - callers:
                del self._buckets[name]
