"""Stop and reload signals as a queue the main thread reads, whichever thread the kernel gave them to."""

from __future__ import annotations

import signal
import socket
from collections import deque
from collections.abc import Iterable
from types import FrameType


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler does nothing: the signal was already written to the wakeup socket."""


class SignalInbox:
    """`get()`, on the main thread, returns each of the `handled` signals in the order they arrived.

    A signal sent to the process may be delivered to any of its threads (a gRPC poller, a worker), and
    Python runs its handler only when the main thread next executes bytecode: a main thread asleep on a
    queue's lock would never learn of a SIGTERM delivered elsewhere, and the gateway would not stop.
    CPython's C-level handler, on whichever thread took the signal, writes its number to the wakeup fd;
    the main thread sleeps reading the other end of that socket, so it wakes either way.
    """

    def __init__(self, handled: Iterable[signal.Signals]) -> None:
        self._handled = frozenset(int(sig) for sig in handled)
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)  # the C handler must never block on a full buffer
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, _noted) for sig in self._handled}
        self._arrived: deque[int] = deque()

    def __enter__(self) -> SignalInbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get(self, timeout_s: float | None = None) -> int | None:
        """The next signal; None if `timeout_s` passed first (None waits for as long as it takes)."""
        self._reader.settimeout(timeout_s)
        while not self._arrived:
            try:
                data = self._reader.recv(64)
            except TimeoutError:
                return None
            # Any signal with a Python handler is written here; only the handled ones are news.
            self._arrived.extend(number for number in data if number in self._handled)
        return self._arrived.popleft()

    def close(self) -> None:
        """The handlers and the wakeup fd as they were before."""
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._close_sockets()

    def forget_in_child(self) -> None:
        """In a forked child: default dispositions, and no byte of its signals reaches the parent's socket."""
        signal.set_wakeup_fd(-1)
        for sig in self._handled:
            signal.signal(sig, signal.SIG_DFL)
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._reader.close()
        self._writer.close()
