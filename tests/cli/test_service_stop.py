"""Service.stop: a child that ignores SIGTERM is aborted, and the stacks its fault handler printed shown."""

from __future__ import annotations

import signal
import sys

import pytest
from encord_gateway.dev.devstack import start_service

# Announces itself like a gateway, then ignores SIGTERM and sleeps in a function the stack will name.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def stuck_in_here():
    while True:
        time.sleep(1)
print("listening on 127.0.0.1:1", flush=True)
stuck_in_here()
"""


def test_a_child_that_ignores_sigterm_is_aborted_and_its_stacks_reach_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    child = start_service("stubborn", [sys.executable, "-c", STUBBORN], env={"PYTHONFAULTHANDLER": "1"})
    assert child.stop(timeout=0.5) == -signal.SIGABRT
    err = capsys.readouterr().err
    assert "stubborn did not stop within 0.5 s of SIGTERM" in err
    assert "stuck_in_here" in err  # the fault handler's dump of the main thread, as printed by the child
