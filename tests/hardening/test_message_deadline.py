"""A call that never sends its request message is cancelled after --request-message-timeout.

Before the deadline, a header-only stream without grpc-timeout held its worker, and the caller's slot
or the open service's, for as long as the client kept the connection: a signed-in caller's silent
streams locked that caller out for good, 16 silent health checks from a stranger refused every real
one on the main port, and 16 on the probe port blocked its four workers.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import tomli_w
from encord_gateway.access.message_deadline import MessageDeadline
from encord_gateway.access.open_services import OPEN_SERVICE_CEILINGS, open_service_ceilings
from encord_gateway.dev.devstack import DEMO_PROJECT, Stack, running_stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.h2_flood import Target, flood, wait_answered
from support.secured import sha256

TIMEOUT_S = 1.0
# How long a held stream may outlive its deadline: the watcher's tick, and a loaded machine's delay.
RELEASED_WITHIN_S = 20.0
LIST_PATH = "/encord_gateway.v1.ApiKeyService/ListProjectApiKeys"
CHECK_PATH = "/grpc.health.v1.Health/Check"
CANCELLED_LINE = "cancelled a call that sent no request message in time"


class _Context:
    """What the deadline uses of a ServicerContext: cancel() and peer()."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1
        self.cancelled.set()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


class _Requests:
    """A request iterator as grpc's: next() blocks until a message comes or the call is cancelled."""

    def __init__(self, context: _Context) -> None:
        self.messages: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._context = context

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> str:
        while True:
            try:
                return self.messages.get(timeout=0.01)
            except queue.Empty:
                if self._context.cancelled.is_set():
                    raise StopIteration from None


def _pair() -> tuple[_Context, _Requests]:
    context = _Context()
    return context, _Requests(context)


def test_a_silent_call_is_cancelled_once_after_its_deadline() -> None:
    deadline = MessageDeadline(0.2, tick_s=0.02)
    context, requests = _pair()
    started = time.monotonic()
    with pytest.raises(StopIteration):
        deadline.read(requests, context, "Check")  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.2
    time.sleep(0.1)  # further ticks: the call is not cancelled (nor logged) again
    assert (context.cancels, deadline.cancelled) == (1, 1)
    deadline.close()


def test_a_message_in_time_cancels_nothing() -> None:
    deadline = MessageDeadline(0.2, tick_s=0.02)
    context, requests = _pair()
    requests.messages.put("request")
    assert deadline.read(requests, context, "Check") == "request"  # type: ignore[arg-type]
    time.sleep(0.4)  # past the deadline the read had: it was forgotten with its message
    assert (context.cancels, deadline.cancelled) == (0, 0)
    deadline.close()


def test_a_stream_gets_the_deadline_for_each_message() -> None:
    deadline = MessageDeadline(0.2, tick_s=0.02)
    context, requests = _pair()
    for message in ("first", "second"):
        requests.messages.put(message)
    seen = []
    for message in deadline.stream(requests, context, "ServerReflectionInfo"):  # type: ignore[arg-type]
        seen.append(message)
        time.sleep(0.05)  # well within the deadline between messages
    assert seen == ["first", "second"]
    assert context.cancels == 1  # the idle stream after them was cancelled
    deadline.close()


@pytest.mark.parametrize(
    ("workers", "health", "reflection"), [(64, 16, 8), (1024, 16, 8), (16, 4, 2), (8, 2, 1), (1, 1, 1)]
)
def test_strangers_get_a_share_of_a_small_pool_not_all_of_it(
    workers: int, health: int, reflection: int
) -> None:
    ceilings = open_service_ceilings(workers)
    assert ceilings == dict(zip(OPEN_SERVICE_CEILINGS, (health, reflection), strict=True))


def _eventually(attempt: Callable[[], Any], within_s: float = RELEASED_WITHIN_S) -> Any:
    """attempt()'s result once it stops raising grpc.RpcError; fails with the last error after within_s."""
    give_up = time.monotonic() + within_s
    while True:
        try:
            return attempt()
        except grpc.RpcError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _cancelled_lines(stack: Stack) -> int:
    return sum(CANCELLED_LINE in line for line in list(stack.gateway.output))


def test_a_callers_silent_streams_give_its_slots_back(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    caller = {
        "name": "slow",
        "tokens": [{"sha256": sha256(token)}],
        **{key: ["*"] for key in ("methods", "projects", "datasets")},
        "max_in_flight": 4,
    }
    config = tmp_path / "gateway.toml"
    config.write_text(tomli_w.dumps({"callers": [caller]}))
    args = ["--config", str(config), "--request-message-timeout", str(TIMEOUT_S)]
    with (
        running_stack(tmp_path, gateway_args=args) as stack,
        grpc.insecure_channel(stack.gateway.address) as channel,
    ):
        metadata = (("authorization", f"Bearer {token}"),)
        stub = pb_grpc.ApiKeyServiceStub(channel)

        def listing() -> Any:
            request = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
            return stub.ListProjectApiKeys(request, timeout=5, metadata=metadata)

        listing()
        target = Target(stack.gateway.address, stack.gateway.process.pid, channel, metadata)
        with flood(target, 1, 4, LIST_PATH, headers=metadata) as held:
            # The caller's four slots are held by its own silent streams: its real call is refused ...
            assert _code(listing) == grpc.StatusCode.RESOURCE_EXHAUSTED
            # ... until the deadline cancels them, while their connection stays open.
            _eventually(listing)
            wait_answered(held, 4)
            assert held[0].tally().total() == 4
            assert not held[0].closed
        assert _cancelled_lines(stack) == 4


def test_silent_health_checks_are_cancelled_and_health_answers_again(tmp_path: Path) -> None:
    # 16 workers: strangers may hold 4 health calls (a quarter), and the fifth is refused at once.
    args = ["--workers", "16", "--request-message-timeout", str(TIMEOUT_S)]
    with (
        running_stack(tmp_path, gateway_args=args) as stack,
        grpc.insecure_channel(stack.gateway.address) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)

        def check() -> Any:
            return health.Check(health_pb2.HealthCheckRequest(), timeout=5)

        check()
        target = Target(stack.gateway.address, stack.gateway.process.pid, channel, ())
        with flood(target, 1, 5, CHECK_PATH) as held:
            wait_answered(held, 1)
            refused = f"grpc-status {grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}"
            assert held[0].tally() == {refused: 1}, held[0].tally()
            assert _code(check) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _eventually(check).status == health_pb2.HealthCheckResponse.SERVING
            wait_answered(held, 5)
            assert held[0].tally().total() == 5
        assert _cancelled_lines(stack) == 4


def test_the_probe_port_cancels_silent_checks(tmp_path: Path) -> None:
    args = ["--health-listen", "127.0.0.1:0", "--request-message-timeout", str(TIMEOUT_S)]
    with running_stack(tmp_path, gateway_args=args) as stack:
        line = stack.gateway.wait_for_line(lambda text: text.startswith("health on "))
        assert line is not None, stack.gateway.output
        address = line.split()[-1]
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def check() -> Any:
                return health.Check(health_pb2.HealthCheckRequest(), timeout=5)

            check()
            target = Target(address, stack.gateway.process.pid, channel, ())
            # 4 connections of 4 silent checks: the probe port's 4 workers, and 12 calls queued behind.
            with flood(target, 4, 4, CHECK_PATH) as held:
                assert _code(check) != grpc.StatusCode.OK
                assert _eventually(check).status == health_pb2.HealthCheckResponse.SERVING
                wait_answered(held, 16)
                assert sum(c.tally().total() for c in held) == 16
                assert not any(c.closed for c in held)
