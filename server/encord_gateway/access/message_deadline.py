"""A deadline for each request message a call waits for: a stream that sends none gives its worker back."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from encord_gateway.logs import FIELDS

log = logging.getLogger(__name__)


class MessageDeadline:
    """Cancels a call that has waited `timeout_s` for a request message and still has none.

    The sync server gives each call a worker thread, which then blocks reading the request, and grpc has
    no timeout for that read: a client that opens a stream without a grpc-timeout and never sends the
    message would hold the worker, and the caller's or open service's slot, as long as it keeps the
    connection. One thread looks at the waiting calls every `tick_s` and cancels the late ones; the read
    then ends, and the worker and the slot are free again. A call is late after `timeout_s` to
    `timeout_s + tick_s`.
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        tick_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._tick_s = tick_s if tick_s is not None else min(1.0, timeout_s / 4)
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[float, grpc.ServicerContext, str]] = {}
        self._ids = itertools.count()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self.cancelled = 0  # calls cancelled so far, for tests and a reader of the log

    def read(self, requests: Iterator[Any], context: grpc.ServicerContext, what: str) -> Any:
        """The next message of `requests`, waited for at most the deadline; StopIteration if none came."""
        ticket = next(self._ids)
        with self._lock:
            self._waiting[ticket] = (self._clock() + self.timeout_s, context, what)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="message-deadline", daemon=True)
                self._watcher.start()
        try:
            return next(requests)  # a cancelled call's read ends with StopIteration
        finally:
            with self._lock:
                self._waiting.pop(ticket, None)  # the watcher has taken it if it cancelled the call

    def stream(self, requests: Iterator[Any], context: grpc.ServicerContext, what: str) -> Iterator[Any]:
        """`requests`, each message under the deadline: a stream left idle is cancelled like a silent one."""
        while True:
            try:
                message = self.read(requests, context, what)
            except StopIteration:
                return
            yield message

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        while not self._closed.wait(self._tick_s):
            now = self._clock()
            with self._lock:
                late = [ticket for ticket, (due, _, _) in self._waiting.items() if due <= now]
                expired = [self._waiting.pop(ticket) for ticket in late]  # cancelled once, logged once
            for _due, context, what in expired:
                context.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
                self.cancelled += 1
                # Bounded by the slots the waits hold: at most a line per slot per timeout_s.
                log.warning(
                    "cancelled a call that sent no request message in time",
                    extra={FIELDS: {"call": what, "peer": context.peer(), "timeout_s": self.timeout_s}},
                )
