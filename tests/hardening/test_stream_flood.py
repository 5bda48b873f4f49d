"""Header-only HTTP/2 streams from a stranger cost the gateway no worker thread and lock nobody out.

A raw HTTP/2 client (the `h2` package, no gRPC library) opens streams for ApiKeyService calls and for
server reflection, with no credentials and no grpc-timeout, and never sends a request message. While
those streams are held, a real caller's calls and health checks keep succeeding at a latency close to
the baseline measured in the same test (a ratio, never an absolute time), and the gateway process's
thread count and resident memory stay bounded.

A connection may open MAX_STREAMS_PER_CONNECTION (1000) streams, so up to that many the refusals come
from the gateway itself (UNAUTHENTICATED, TOO_MANY_IN_FLIGHT), not from HTTP/2; only past it does HTTP/2
reset them.
"""

from __future__ import annotations

import collections
import secrets
import ssl
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from encord_gateway.access.open_services import OPEN_SERVICE_CEILINGS
from encord_gateway.api.server import MAX_STREAMS_PER_CONNECTION
from encord_gateway.dev.devstack import DEMO_PROJECT, running_stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.h2_flood import (
    HTTP2_RESET,
    HeldConnection,
    Target,
    flood,
    proc_status,
    reset_peak,
    wait_answered,
)
from support.secured import Secured, secured_stack, sha256

TOKEN = secrets.token_urlsafe(24)
CALLER: dict[str, Any] = {
    "name": "real",
    "tokens": [{"sha256": sha256(TOKEN)}],
    "methods": ["*"],
    "projects": ["*"],
    "datasets": ["*"],
}
LIST_PATH = "/encord_gateway.v1.ApiKeyService/ListProjectApiKeys"
REFLECTION_PATH = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
REFLECTION_CEILING = OPEN_SERVICE_CEILINGS["/grpc.reflection."]
# How each refused stream ends: its answer's grpc-status, or an HTTP/2 reset that came first.
UNAUTHENTICATED = f"grpc-status {grpc.StatusCode.UNAUTHENTICATED.value[0]}"
# (no caller here has a rate_limit, so RESOURCE_EXHAUSTED can only be TOO_MANY_IN_FLIGHT)
RESOURCE_EXHAUSTED = f"grpc-status {grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}"
# grpc's server itself cancels some calls of the largest floods before the gateway's threads take them;
# they hold nothing either. Seen on 2 cores: 48 of 16000 on a quiet machine, 878 of 16000 on a loaded
# one, a fifth of 4000 with client certificates. The bound only catches a flood grpc mostly cancels.
CANCELLED = f"grpc-status {grpc.StatusCode.CANCELLED.value[0]}"
MAX_CANCELLED_SHARE = 0.3
WORKERS = 64
HELD_S = 600.0
SAMPLES = 15
# Under the flood a call may take this many times its baseline median; a worker pool held by the flood
# shows up as DEADLINE_EXCEEDED instead, so the ratio is generous and only catches gross slowdowns.
LATENCY_RATIO = 8.0
# Threads the gateway may have while the flood is held: refusing a stream takes a worker for a moment,
# so the pool may grow to --workers, and never past it (a thread per held stream would).
THREAD_SLACK = WORKERS + 8
# Resident memory a held stream may cost the gateway, on average.
BYTES_PER_STREAM = 64 * 1024


def timed(call: Callable[[], Any], samples: int = SAMPLES) -> float:
    """The median seconds of `samples` calls; every call must succeed."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def real_calls(target: Target) -> tuple[Callable[[], Any], Callable[[], Any]]:
    stub = pb_grpc.ApiKeyServiceStub(target.channel)
    health = health_pb2_grpc.HealthStub(target.channel)

    def listing() -> None:
        stub.ListProjectApiKeys(
            pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=5, metadata=target.metadata
        )

    def check() -> None:
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    return listing, check


def tls_target(
    secured: Secured, channel: grpc.Channel, raw_client: tuple[Path, Path] | None = None
) -> Target:
    """The real caller (token TOKEN) on `channel`; the raw client speaks h2 over TLS, with a certificate
    (`raw_client`: cert and key files) when given one."""
    tls = ssl.create_default_context(cadata=secured.ca.cert_pem.decode())
    if raw_client is not None:
        tls.load_cert_chain(*raw_client)
    tls.set_alpn_protocols(["h2"])
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    return Target(secured.address, secured.stack.gateway.process.pid, channel, metadata, tls)


@pytest.fixture(scope="module", params=["plaintext", "tls"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp(f"flood-{request.param}")
    # What these tests measure is the held state: the message deadline (test_message_deadline.py)
    # must not end the held streams while they measure it.
    args = ["--workers", str(WORKERS), "--request-message-timeout", str(HELD_S)]
    if request.param == "plaintext":
        with (
            running_stack(workdir, gateway_args=args, caller_token=TOKEN) as stack,
            grpc.insecure_channel(stack.gateway.address) as channel,
        ):
            yield Target(
                stack.gateway.address,
                stack.gateway.process.pid,
                channel,
                (("authorization", f"Bearer {TOKEN}"),),
            )
        return
    with secured_stack(workdir, [CALLER], mutual=False, gateway_args=args) as secured:
        yield tls_target(secured, secured.channel())


@pytest.mark.parametrize("path", [LIST_PATH, REFLECTION_PATH], ids=["api", "reflection"])
@pytest.mark.parametrize("streams", [64, 1000])
@pytest.mark.parametrize("connections", [1, 4, 16])
def test_header_only_streams_hold_no_worker_and_lock_nobody_out(
    target: Target, connections: int, streams: int, path: str
) -> None:
    listing, check = real_calls(target)
    listing(), check()  # warm: the channel is connected and a worker exists
    base_list, base_check = timed(listing), timed(check)
    reset_peak(target.pid)
    before = proc_status(target.pid)
    held_streams = connections * streams
    # Strangers' calls are all refused; reflection runs its few and refuses the rest.
    may_hold = REFLECTION_CEILING if path == REFLECTION_PATH else 0
    refusal = RESOURCE_EXHAUSTED if path == REFLECTION_PATH else UNAUTHENTICATED
    started = time.monotonic()
    with flood(target, connections, streams, path) as held:
        # What is measured is the held state, after the gateway has refused what it will refuse.
        wait_answered(held, held_streams - may_hold)
        answer_s = time.monotonic() - started
        tally = sum((c.tally() for c in held), collections.Counter[str]())
        during = proc_status(target.pid)
        flood_list, flood_check = timed(listing), timed(check)
        after_calls = proc_status(target.pid)
        assert not any(c.closed for c in held), "the gateway dropped a flood connection it could refuse"
    # The peak covers the refusals too, when every stream was still open.
    grown = max(during["rss"], after_calls["peak"]) - before["rss"]
    report = (
        f"{connections}x{streams} {path.rsplit('/', 1)[-1]}: {dict(tally)} in {answer_s:.1f} s, "
        f"threads {before['threads']} -> "
        f"{during['threads']} -> {after_calls['threads']}, rss +{grown // 1024} KiB "
        f"({max(0, grown) // held_streams} B/stream), list x{flood_list / base_list:.2f}, "
        f"health x{flood_check / base_check:.2f}"
    )
    print(report)
    # Within MAX_STREAMS_PER_CONNECTION every stream reaches the gateway, which refuses it itself.
    assert streams <= MAX_STREAMS_PER_CONNECTION
    assert set(tally) <= {refusal, CANCELLED}, report
    assert tally.total() >= held_streams - may_hold, report
    assert tally[CANCELLED] <= MAX_CANCELLED_SHARE * held_streams, report
    assert after_calls["threads"] <= before["threads"] + THREAD_SLACK, report
    assert grown <= BYTES_PER_STREAM * held_streams, report
    assert flood_list <= LATENCY_RATIO * base_list, report
    assert flood_check <= LATENCY_RATIO * base_check, report


def test_reflection_streams_beyond_the_cap_are_refused(target: Target) -> None:
    """Reflection is a streaming RPC: only a few may be open at once; the rest are told so at once."""
    with flood(target, 1, 64, REFLECTION_PATH) as held:
        wait_answered(held, 64 - REFLECTION_CEILING)
        tally = held[0].tally()
        assert tally[RESOURCE_EXHAUSTED] >= 64 - REFLECTION_CEILING, f"of 64 reflection streams: {tally}"
        assert set(tally) == {RESOURCE_EXHAUSTED}, tally


def test_streams_past_the_connection_cap_are_reset_by_http2(target: Target) -> None:
    """One connection still cannot open more than MAX_STREAMS_PER_CONNECTION: HTTP/2 resets the rest."""
    extra = 200
    with flood(target, 1, MAX_STREAMS_PER_CONNECTION + extra, LIST_PATH) as held:
        wait_answered(held, MAX_STREAMS_PER_CONNECTION + extra)
        tally = held[0].tally()
    # grpc lets in up to the limit before the client acknowledges its SETTINGS (this one never does
    # before it has sent every stream), then resets each further stream at once.
    assert tally == {UNAUTHENTICATED: MAX_STREAMS_PER_CONNECTION, HTTP2_RESET: extra}, tally


GREEDY_TOKEN = secrets.token_urlsafe(24)
GREEDY_CEILING = 4


def test_a_caller_holding_streams_open_takes_only_its_max_in_flight(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """An authenticated caller's header-only streams hold at most its slots; other callers still run."""
    greedy = {**CALLER, "name": "greedy", "tokens": [{"sha256": sha256(GREEDY_TOKEN)}]}
    greedy["max_in_flight"] = GREEDY_CEILING
    workdir = tmp_path_factory.mktemp("greedy")
    args = ["--workers", "16", "--request-message-timeout", str(HELD_S)]
    with (
        secured_stack(workdir, [CALLER, greedy], mutual=False, gateway_args=args) as secured,
        secured.channel() as channel,
    ):
        target = tls_target(secured, channel)
        listing, _ = real_calls(target)
        listing()
        base = timed(listing)
        held = HeldConnection(target, LIST_PATH, 64, (("authorization", f"Bearer {GREEDY_TOKEN}"),))
        try:
            held.open()
            assert held.wait_read(30)
            wait_answered([held], 64 - GREEDY_CEILING)
            # 64 streams on 16 workers: all but the caller's 4 slots are refused at once.
            assert held.tally() == {RESOURCE_EXHAUSTED: 64 - GREEDY_CEILING}, held.tally()
            assert timed(listing) <= LATENCY_RATIO * base
        finally:
            held.close()


def test_a_stranger_with_a_certificate_of_the_client_ca_holds_no_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Mutual TLS: a certificate the CA signed, for an identity no caller has, is no credential either."""
    workdir = tmp_path_factory.mktemp("flood-mtls")
    args = ["--workers", str(WORKERS), "--request-message-timeout", str(HELD_S)]
    with secured_stack(workdir, [CALLER], mutual=True, gateway_args=args) as secured:
        stranger = secured.ca.issue("stranger", uris=("spiffe://test/stranger",)).write(workdir, "stranger")
        real_client = secured.ca.issue("real", uris=("spiffe://test/real",))
        with secured.channel(client=real_client) as channel:
            target = tls_target(secured, channel, raw_client=stranger)
            listing, check = real_calls(target)
            listing(), check()
            base_list = timed(listing)
            before = proc_status(target.pid)
            with flood(target, 4, 1000, LIST_PATH) as held:
                wait_answered(held, 4000)
                tally = sum((c.tally() for c in held), collections.Counter[str]())
                flood_list = timed(listing)
                during = proc_status(target.pid)
        report = (
            f"4x1000 with a CA-signed stranger certificate: {dict(tally)}, list x{flood_list / base_list:.2f}"
        )
        assert set(tally) <= {UNAUTHENTICATED, CANCELLED}, report
        assert tally.total() == 4000, report
        assert tally[CANCELLED] <= MAX_CANCELLED_SHARE * 4000, report
        assert during["threads"] <= before["threads"] + THREAD_SLACK, report
        assert flood_list <= LATENCY_RATIO * base_list, report
