"""SIGTERM under load: in-flight calls finish, new ones are refused, and the gateway exits 0 in its grace.

The fault proxy holds every upstream request, so "in flight" is exact: each load thread has one call
parked inside the gateway when the signal arrives, and the proxy lets them go only afterwards.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import grpc
import pytest
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.reliability import (
    Ledger,
    Outcome,
    ReliabilityStack,
    forbidden,
    invoke,
    reliability_stack,
    report,
    tally,
)

DEADLINE_S = 60.0
STUCK_DEADLINE_S = 30.0
STOPPING = "stopping: draining in-flight calls"
REFUSED = {"UNAVAILABLE", "CANCELLED"}


class Load:
    """Threads that call until one of their calls is refused (the gateway has stopped)."""

    def __init__(
        self,
        stub: pb_grpc.ApiKeyServiceStub,
        stack: ReliabilityStack,
        threads: int,
        deadline_s: float = DEADLINE_S,
    ) -> None:
        self.stub, self.stack, self.deadline_s = stub, stack, deadline_s
        self.outcomes: list[Outcome] = []
        self._lock = threading.Condition()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "a caller is still waiting"

    def wait_for_calls(self, count: int, timeout: float = 30.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self.outcomes) >= count, timeout)

    def _run(self, worker: int) -> None:
        n = 0
        while True:
            n += 1
            request: Any
            if n % 2:
                request = pb.CreateProjectApiKeyRequest(
                    project_hash=self.stack.projects[0],
                    title=f"drain {worker}.{n}",
                    scopes=[pb.API_KEY_SCOPE_LABEL_READ],
                )
                outcome = invoke("create", self.stub.CreateProjectApiKey, request, timeout=self.deadline_s)
            else:
                request = pb.ListProjectApiKeysRequest(project_hash=self.stack.projects[0])
                outcome = invoke("list", self.stub.ListProjectApiKeys, request, timeout=self.deadline_s)
            with self._lock:
                self.outcomes.append(outcome)
                self._lock.notify_all()
            if not outcome.ok:
                return


def sigterm(stack: ReliabilityStack) -> float:
    at = time.monotonic()
    stack.gateway.process.send_signal(signal.SIGTERM)
    assert stack.gateway.wait_for_line(lambda line: STOPPING in line, timeout=15) is not None
    return at


def run_drain(ledger: Ledger, name: str, threads: int) -> None:
    grace = 20.0
    with reliability_stack(ledger, name, proxy=True, gateway_args=["--grace-period", str(grace)]) as stack:
        assert stack.proxy is not None
        with stack.channel() as channel:
            load = Load(stack.stub(channel), stack, threads)
            load.start()
            assert load.wait_for_calls(threads * 4), "the load never got going"
            stack.proxy.hold()
            assert stack.proxy.wait_held(threads, timeout=30), "not every caller has a call in flight"
            signalled = sigterm(stack)
            # New calls are refused, on the channel in use and on a new one.
            with grpc.insecure_channel(stack.gateway.address) as fresh:
                refused = [
                    invoke(
                        "new",
                        stub.ListProjectApiKeys,
                        pb.ListProjectApiKeysRequest(project_hash=stack.projects[0]),
                        timeout=5,
                    )
                    for stub in (stack.stub(channel), stack.stub(fresh))
                ]
            stack.proxy.release()
            load.join(DEADLINE_S)
            code = stack.gateway.process.wait(grace + 10)
            exited = time.monotonic() - signalled
    ledger.saw(load.outcomes)
    before = [o for o in load.outcomes if o.started < signalled]
    after = [o for o in load.outcomes if o.started >= signalled]
    report(
        name,
        threads=threads,
        before_sigterm=tally(before),
        after_sigterm=tally(after),
        new_calls=[(o.code, o.message) for o in refused],
        exit_code=code,
        exit_s=round(exited, 2),
        grace_s=grace,
    )
    assert not forbidden(load.outcomes), tally(load.outcomes)
    assert {o.code for o in before} == {"OK"}, f"an in-flight call did not finish: {tally(before)}"
    # A call that reaches the server as it stops is refused by grpc itself: UNAVAILABLE (the listener is
    # closed, or GOAWAY), or CANCELLED when the stream opened on a live connection just before GOAWAY.
    assert {o.code for o in after} <= REFUSED, tally(after)
    assert {o.code for o in refused} <= REFUSED, tally(refused)
    assert code == 0
    assert exited < grace, f"exit took {exited:.1f}s, more than the {grace}s grace period"


def test_sigterm_drains_in_flight_calls_short(ledger: Ledger) -> None:
    run_drain(ledger, "shutdown-short", threads=8)


@pytest.mark.slow
def test_sigterm_drains_in_flight_calls_under_full_load(ledger: Ledger) -> None:
    run_drain(ledger, "shutdown-long", threads=56)


def test_sigterm_exits_within_grace_when_upstream_hangs(ledger: Ledger) -> None:
    """Calls stuck upstream past the grace period are cut off; the process still exits 0, in time."""
    grace = 1.0
    with reliability_stack(
        ledger, "shutdown-stuck", proxy=True, gateway_args=["--grace-period", str(grace)]
    ) as stack:
        assert stack.proxy is not None
        with stack.channel() as channel:
            load = Load(stack.stub(channel), stack, 4, STUCK_DEADLINE_S)
            stack.proxy.hold()  # Encord never answers
            load.start()
            assert stack.proxy.wait_held(4, timeout=30)
            signalled = sigterm(stack)
            try:
                code = stack.gateway.process.wait(STUCK_DEADLINE_S + 20)
                exited = time.monotonic() - signalled
            finally:
                stack.proxy.release()
            load.join(DEADLINE_S)
    report(
        "shutdown-stuck", held=tally(load.outcomes), exit_code=code, exit_s=round(exited, 2), grace_s=grace
    )
    assert code == 0
    # grace + the 1 s stop() allows for the server to close + a margin for a busy machine; a gateway that
    # waits for its stuck upstream calls takes until their deadline (30 s).
    assert exited < grace + 10, f"exit took {exited:.1f}s with a {grace}s grace period"
    assert {o.code for o in load.outcomes} <= {"UNAVAILABLE", "CANCELLED"}, tally(load.outcomes)
