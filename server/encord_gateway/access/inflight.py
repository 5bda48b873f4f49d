"""How many calls run at once, per caller and per open service; a slot is taken before a request is read."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from encord_gateway import errors


class InFlight:
    """Counters by name with a ceiling each: a call over its ceiling is refused at once, never queued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def running(self, name: str) -> int:
        with self._lock:
            return self._running.get(name, 0)

    @contextlib.contextmanager
    def slot(self, name: str, ceiling: int, what: str) -> Iterator[None]:
        """Holds one of `name`'s `ceiling` slots while the block runs; TooManyInFlight if none is free."""
        with self._lock:
            running = self._running.get(name, 0)
            if running >= ceiling:
                raise errors.TooManyInFlight(f"{what} already has {ceiling} calls running; retry shortly")
            self._running[name] = running + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._running[name] - 1
                if left:
                    self._running[name] = left
                else:
                    del self._running[name]
