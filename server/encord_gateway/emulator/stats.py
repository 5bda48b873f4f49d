"""Request counters for `GET /_emulator/stats`: by query_type, query_method and outcome."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

UNKNOWN = "-"  # the query_type or query_method of a body that did not name one
OTHER = "other"  # where new query types go once MAX_SERIES is reached
# Callers choose query_type and query_method: cap the distinct series so that a fuzzer
# cannot grow the counters without bound.
MAX_SERIES = 1000
MAX_NAME = 64


class Stats:
    """Thread-safe counters; one lock, held for a dictionary increment only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, str]] = Counter()
        self._connections = 0

    def count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def count(self, query_type: str | None, query_method: str | None, outcome: str) -> None:
        series = ((query_type or UNKNOWN)[:MAX_NAME], (query_method or UNKNOWN)[:MAX_NAME], outcome)
        with self._lock:
            if series not in self._requests and len(self._requests) >= MAX_SERIES:
                series = (OTHER, OTHER, outcome)
            self._requests[series] += 1

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._connections = 0

    def snapshot(self) -> dict[str, Any]:
        """`{"total", "by_outcome": {outcome: n}, "by_query": {type: {method: {outcome: n}}}, ...}`"""
        with self._lock:
            items = list(self._requests.items())
            connections = self._connections
        by_outcome: Counter[str] = Counter()
        by_query: dict[str, dict[str, dict[str, int]]] = {}
        for (query_type, query_method, outcome), n in items:
            by_outcome[outcome] += n
            by_query.setdefault(query_type, {}).setdefault(query_method, {})[outcome] = n
        return {
            "total": sum(by_outcome.values()),
            "by_outcome": dict(by_outcome),
            "by_query": by_query,
            "connections": connections,
        }
