"""SignalInbox: the main thread hears of a signal whichever thread the kernel delivered it to."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest
from encord_gateway.signals import SignalInbox


@pytest.fixture
def inbox() -> Iterator[SignalInbox]:
    opened = SignalInbox((signal.SIGUSR1, signal.SIGUSR2))
    try:
        yield opened
    finally:
        opened.close()


def _raised_on_another_thread(sig: signal.Signals) -> None:
    """Delivers `sig` to a thread that is not the main one, as the kernel may for a process-wide signal."""
    delivered = threading.Event()

    def target() -> None:
        signal.pthread_kill(threading.get_ident(), sig)
        delivered.set()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(5)
    assert delivered.is_set()


def test_a_signal_taken_by_another_thread_wakes_the_main_thread(inbox: SignalInbox) -> None:
    # Before the inbox, the main thread slept on a queue's lock: a signal delivered to a gRPC thread ran
    # no Python handler until something else woke the main thread, so SIGTERM did not stop the gateway.
    _raised_on_another_thread(signal.SIGUSR1)
    assert inbox.get(timeout_s=5) == signal.SIGUSR1


def test_signals_come_out_in_the_order_they_arrived_and_only_the_handled_ones(inbox: SignalInbox) -> None:
    signal.raise_signal(signal.SIGUSR2)
    _raised_on_another_thread(signal.SIGUSR1)
    # SIGINT has a Python handler (pytest's or Python's own), so its number reaches the wakeup socket
    # too; the inbox was not asked for it and passes over it.
    previous_int = signal.signal(signal.SIGINT, lambda _s, _f: None)
    try:
        signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous_int)
    signal.raise_signal(signal.SIGUSR2)
    assert [inbox.get(timeout_s=5) for _ in range(3)] == [signal.SIGUSR2, signal.SIGUSR1, signal.SIGUSR2]
    assert inbox.get(timeout_s=0.2) is None


def test_get_gives_up_after_its_timeout(inbox: SignalInbox) -> None:
    assert inbox.get(timeout_s=0.05) is None


def test_close_puts_back_the_handlers_and_wakeup_fd_it_found() -> None:
    def mine(_signum: int, _frame: object) -> None:
        pass

    previous_usr1 = signal.signal(signal.SIGUSR1, mine)
    try:
        before_fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(before_fd)
        opened = SignalInbox((signal.SIGUSR1,))
        assert signal.getsignal(signal.SIGUSR1) is not mine
        opened.close()
        assert signal.getsignal(signal.SIGUSR1) is mine
        assert signal.set_wakeup_fd(before_fd) == before_fd
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)
