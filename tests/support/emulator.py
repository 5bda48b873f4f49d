"""Test control of a running emulator through its /_emulator/ admin endpoints."""

from __future__ import annotations

from typing import Any

import requests


class EmulatorAdmin:
    def __init__(self, address: str) -> None:
        self.base = f"http://{address}/_emulator"

    def faults(self, **settings: Any) -> dict[str, Any]:
        """Replaces every fault setting (unnamed ones go back to off)."""
        response = requests.put(f"{self.base}/faults", json=settings, timeout=10)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def clear_faults(self) -> None:
        requests.delete(f"{self.base}/faults", timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(f"{self.base}/stats", timeout=10).json()
        return answer

    def reset_stats(self) -> None:
        requests.delete(f"{self.base}/stats", timeout=10).raise_for_status()

    def key_count(self, resource_hash: str) -> int:
        return int(self.stats()["keys"].get(resource_hash, 0))

    def requests_for(self, query_type: str, query_method: str) -> int:
        """How many /public/user calls of this kind arrived, whatever their outcome."""
        by_method = self.stats()["requests"]["by_query"].get(query_type, {}).get(query_method, {})
        return sum(by_method.values())
