"""Loopback test-control endpoints under /_emulator/: faults, stats, fixture reload, health."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from encord_gateway.emulator.faults import FaultInjector, FaultSettings
from encord_gateway.emulator.fixture import FixtureError, parse_fixture
from encord_gateway.emulator.stats import Stats
from encord_gateway.emulator.store import Store

ADMIN_PREFIX = "/_emulator/"
Answer = tuple[int, Any]


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError:
        raise ValueError("the body is JSON nested too deeply to parse") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


class Admin:
    """Answers `(HTTP status, JSON value)`; the server sends it. Never touches API keys' values."""

    def __init__(self, store: Store, faults: FaultInjector, stats: Stats) -> None:
        self._store = store
        self._faults = faults
        self._stats = stats
        self._routes: dict[str, dict[str, Callable[[bytes], Answer]]] = {
            "health": {"GET": lambda _: (200, {"status": "ok"})},
            "faults": {
                "GET": lambda _: (200, self._faults.settings.to_json()),
                "PUT": lambda body: self._set_faults(body, merge=False),
                "PATCH": lambda body: self._set_faults(body, merge=True),
                "DELETE": self._reset_faults,
            },
            "stats": {"GET": self._get_stats, "DELETE": self._reset_stats},
            "fixture": {"PUT": self._put_fixture},
        }

    def handle(self, method: str, path: str, body: bytes) -> Answer:
        methods = self._routes.get(path[len(ADMIN_PREFIX) :].strip("/"))
        if methods is None:
            return 404, {"error": f"no admin endpoint {path}", "endpoints": sorted(self._routes)}
        handler = methods.get(method)
        if handler is None:
            return 405, {"error": f"{path} accepts {sorted(methods)}"}
        return handler(body)

    def _set_faults(self, body: bytes, *, merge: bool) -> Answer:
        try:
            data = _json_object(body or b"{}")
            settings = FaultSettings.from_mapping(data, self._faults.settings if merge else None)
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
        self._faults.replace(settings)
        return 200, settings.to_json()

    def _reset_faults(self, _: bytes) -> Answer:
        self._faults.replace(FaultSettings())
        return 200, self._faults.settings.to_json()

    def _get_stats(self, _: bytes) -> Answer:
        return 200, {"keys": self._store.key_counts(), "requests": self._stats.snapshot()}

    def _reset_stats(self, _: bytes) -> Answer:
        self._stats.reset()
        return self._get_stats(b"")

    def _put_fixture(self, body: bytes) -> Answer:
        try:
            fixture = parse_fixture(body.decode("utf-8"), "PUT /_emulator/fixture")
            faults = FaultSettings.from_mapping(fixture.faults) if fixture.faults else None
        except (FixtureError, UnicodeDecodeError, ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
        self._store.load_fixture(fixture)
        if faults is not None:
            self._faults.replace(faults)
        kinds = [r.resource_type for r in fixture.resources]
        return 200, {
            "users": len(fixture.users),
            "projects": kinds.count("project"),
            "datasets": kinds.count("dataset"),
        }
