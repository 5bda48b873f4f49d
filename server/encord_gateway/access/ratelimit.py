"""Per-caller token buckets: a steady rate with a burst allowance, kept across config reloads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


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
    """The buckets by caller name; a caller whose rate is None is not limited."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, caller: str, rate: Rate | None) -> float:
        """0.0 if the call may go ahead, else the seconds the caller should wait."""
        if rate is None:
            return 0.0
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
