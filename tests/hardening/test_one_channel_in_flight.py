"""A well-behaved client with 128 or 256 calls in flight on one channel gets no UNAVAILABLE.

`make bench` found grpcio and Go clients at 128 in flight on one connection getting thousands of
`UNAVAILABLE` (RST_STREAM REFUSED_STREAM) while the gateway allowed 100 streams per connection: grpc's
overload protection counts a stream until the server has freed it, so a client that opens a new one
as soon as it sees one end is refused. Here a grpcio client keeps N calls in flight on one channel,
each lane calling again the moment its call ends, until every lane has made a few; all must succeed.
"""

from __future__ import annotations

import collections
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_PROJECT, running_stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.secured import callers_toml, secured_stack, sha256

TOKEN = secrets.token_urlsafe(24)
# The default max_in_flight (16) would refuse most of the lanes; this caller is allowed them all.
CALLER: dict[str, Any] = {
    "name": "wide",
    "tokens": [{"sha256": sha256(TOKEN)}],
    "methods": ["*"],
    "projects": ["*"],
    "datasets": ["*"],
    "max_in_flight": 512,
}
# A count, not a duration: every stream slot turns over this often, however busy the machine is.
CALLS_PER_LANE = 4
DEADLINE_S = 30.0


@dataclass
class Outcomes:
    """What N closed-loop lanes on one channel got, by status code name."""

    counts: collections.Counter[str]
    samples: list[str]

    @property
    def ok(self) -> int:
        return self.counts["OK"]


def closed_loop(channel: grpc.Channel, lanes: int, calls_per_lane: int) -> Outcomes:
    """`lanes` calls in flight on `channel`; a lane calls again as its call ends, `calls_per_lane` times."""
    stub = pb_grpc.ApiKeyServiceStub(channel)
    request = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    counts: collections.Counter[str] = collections.Counter()
    samples: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    running = [lanes]

    def issue(left: int) -> None:
        call = stub.ListProjectApiKeys.future(request, metadata=metadata, timeout=DEADLINE_S)
        call.add_done_callback(lambda done_call: finished(done_call, left - 1))

    def finished(call: grpc.Future[Any], left: int) -> None:
        error = call.exception()
        with lock:
            if error is None:
                counts["OK"] += 1
            else:
                code = error.code().name  # type: ignore[attr-defined]
                counts[code] += 1
                if len(samples) < 3:
                    samples.append(f"{code}: {error.details()}")  # type: ignore[attr-defined]
        if left > 0:
            issue(left)
            return
        with lock:
            running[0] -= 1
            if running[0] == 0:
                done.set()

    # Futures rather than threads: the client's own GIL should not decide how many calls are open.
    for _ in range(lanes):
        issue(calls_per_lane)
    assert done.wait(calls_per_lane * DEADLINE_S), "some calls never finished"
    return Outcomes(counts, samples)


@pytest.fixture(scope="module", params=["plaintext", "tls"])
def channel(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[grpc.Channel]:
    workdir = tmp_path_factory.mktemp(f"in-flight-{request.param}")
    if request.param == "tls":
        with secured_stack(workdir, [CALLER], mutual=False) as secured:
            yield secured.channel()
        return
    config = workdir / "callers.toml"
    config.write_text(callers_toml([CALLER]))
    with (
        running_stack(workdir, gateway_args=["--config", str(config)]) as stack,
        grpc.insecure_channel(stack.gateway.address) as plain,
    ):
        yield plain


@pytest.mark.parametrize("lanes", [128, 256])
def test_many_calls_in_flight_on_one_channel_all_succeed(channel: grpc.Channel, lanes: int) -> None:
    stub = pb_grpc.ApiKeyServiceStub(channel)
    stub.ListProjectApiKeys(
        pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT),
        metadata=(("authorization", f"Bearer {TOKEN}"),),
        timeout=DEADLINE_S,
    )  # warm: the channel is connected and has the server's SETTINGS
    outcomes = closed_loop(channel, lanes, CALLS_PER_LANE)
    report = f"{lanes} in flight: {dict(outcomes.counts)} {outcomes.samples}"
    print(report)
    assert outcomes.counts == {"OK": lanes * CALLS_PER_LANE}, report
