"""Http1Client's pool: keep-alive reuse as the answer allows, stale and idle connections dropped, bounds."""

from __future__ import annotations

import select
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from encord_gateway.upstream.http1 import MAX_IDLE_S
from support.loopback import Wire
from upstream.http1.peers import BODY, HEADERS, OK, FakeClock, MakeClient, Serve, hard_close, replying, soon


def test_keep_alive_reuses_one_connection(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(OK, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"))
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http.post(HEADERS, BODY, soon()).body == b"two"
    assert server.accepts == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        # Connection is a list of options: close anywhere in it wins, and the names are case-blind.
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Upgrade,CLOSE\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.0 200 OK\r\nConnection: TE, keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive-ish\r\nContent-Length: 2\r\n\r\nok", False),
    ],
    ids=[
        "1.1-close",
        "1.1-Close",
        "1.0",
        "1.0-keep-alive",
        "1.1-keep-alive",
        "1.1-keep-alive-then-close",
        "1.1-list-with-CLOSE",
        "1.0-Keep-Alive",
        "1.0-list-with-keep-alive",
        "1.0-not-quite-keep-alive",
    ],
)
def test_connection_reuse_follows_the_answer(
    serve: Serve, client: MakeClient, reply: bytes, reused: bool
) -> None:
    # The server keeps every connection open and would answer again on it: only the client's
    # reading of the answer decides whether the second request goes on a new connection.
    server = serve(replying(reply))
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert server.accepts == (1 if reused else 2)
    assert len(server.requests) == 2


def test_not_reused_connection_is_closed_by_the_client(serve: Serve, client: MakeClient) -> None:
    closed = threading.Event()

    def handle(wire: Wire) -> None:
        wire.read_request()
        wire.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        if wire.wait_for_close():
            closed.set()

    server = serve(handle)
    http = client(server.url())
    http.post(HEADERS, BODY, soon())
    assert closed.wait(2), "the client kept a Connection: close connection open"
    assert http._idle == []


def test_body_ended_by_close(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", close=True))
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"until the end"
    assert http._idle == []
    assert http.post(HEADERS, BODY, soon()).body == b"until the end"
    assert server.accepts == 2


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_stale_pooled_connection_is_replaced(serve: Serve, client: MakeClient, how: str) -> None:
    def handle(wire: Wire) -> None:
        wire.read_request()
        wire.send(OK)  # a keep-alive answer...
        if wire.index == 0:
            if how == "rst":
                hard_close(wire.sock)  # ...then the server drops the idle connection
            return
        wire.wait_for_close()

    server = serve(handle)
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert len(http._idle) == 1
    server.wait_ended()  # the server has closed its end of the pooled connection
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert server.accepts == 2
    assert len(server.requests) == 2  # the request was sent once, on the new connection


@pytest.mark.parametrize(("idle_s", "reused"), [(MAX_IDLE_S, True), (MAX_IDLE_S + 0.001, False)])
def test_connection_idle_too_long_is_not_reused(
    serve: Serve, client: MakeClient, idle_s: float, reused: bool
) -> None:
    clock = FakeClock()
    closed = threading.Event()

    def handle(wire: Wire) -> None:
        # Both connections stay open and would answer again: only their idle age tells them apart.
        while wire.read_request() is not None:
            wire.send(OK)
        if wire.index == 0 and not wire.server.stop.is_set():
            closed.set()

    server = serve(handle)
    http = client(server.url(), clock=clock)
    assert http.post(HEADERS, BODY, clock() + 3).body == b"ok"
    assert http.post(HEADERS, BODY, clock() + 3).body == b"ok"  # at once: reused
    assert server.accepts == 1
    clock.advance(idle_s)
    assert http.post(HEADERS, BODY, clock() + 3).body == b"ok"
    assert server.accepts == (1 if reused else 2)
    assert len(server.requests) == 3  # nothing was sent on the old connection
    if not reused:
        assert closed.wait(2), "the client did not close the connection it stopped using"
    assert len(http._idle) == 1


def test_an_idle_connection_the_server_spoke_on_is_not_reused(serve: Serve, client: MakeClient) -> None:
    # Some servers answer an idle connection with a 408 before they close it (or never close it):
    # the bytes must not be read as the next request's answer, and the request goes on a new one.
    pooled = threading.Event()

    def handle(wire: Wire) -> None:
        wire.read_request()
        wire.send(OK)
        # Only once the client has pooled the connection: sent with the answer, the 408 would be
        # read with it, a different case (test_bytes_after_the_answer_do_not_become_the_next_answer).
        if wire.index == 0 and pooled.wait(2):
            wire.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        wire.wait_for_close()

    server = serve(handle)
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert len(http._idle) == 1
    pooled.set()
    # Wait (without reading) until the 408 has landed in the pooled socket's receive buffer.
    assert select.select([http._idle[0].sock], [], [], 2)[0]
    answer = http.post(HEADERS, BODY, soon())
    assert (answer.status, answer.body) == (200, b"ok")
    assert server.accepts == 2
    assert len(server.requests) == 2  # one request on each connection: none on the one that spoke


def test_max_idle_bounds_the_pool(serve: Serve, client: MakeClient) -> None:
    both_in_flight = threading.Barrier(2, timeout=3)
    closed_by_client = threading.Event()

    def handle(wire: Wire) -> None:
        wire.read_request()
        both_in_flight.wait()  # neither answer goes out until both requests are in
        wire.send(OK)
        if wire.wait_for_close():
            closed_by_client.set()

    server = serve(handle)
    http = client(server.url(), max_idle=1)
    with ThreadPoolExecutor(2) as pool:
        bodies = [r.body for r in pool.map(lambda _: http.post(HEADERS, BODY, soon()), range(2))]
    assert bodies == [b"ok", b"ok"]
    assert server.accepts == 2
    assert len(http._idle) == 1
    assert closed_by_client.wait(2), "the surplus connection was not closed"


def test_close_closes_idle_connections(serve: Serve, client: MakeClient) -> None:
    closed = threading.Event()

    def handle(wire: Wire) -> None:
        wire.read_request()
        wire.send(OK)
        if wire.wait_for_close():
            closed.set()

    server = serve(handle)
    http = client(server.url())
    http.post(HEADERS, BODY, soon())
    assert len(http._idle) == 1
    http.close()
    assert http._idle == []
    assert closed.wait(2)


@pytest.mark.parametrize(
    "answer",
    [OK, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
    ids=["content-length", "chunked"],
)
def test_bytes_after_the_answer_do_not_become_the_next_answer(
    serve: Serve, client: MakeClient, answer: bytes
) -> None:
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    server = serve(replying(answer + stray, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"))
    http = client(server.url())
    # The stray bytes come in the same send as the answer, so they are read with it: the answer
    # is still returned, but the connection holding them is not pooled.
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http._idle == []
    assert http.post(HEADERS, BODY, soon()).body == b"fresh"
    assert server.accepts == 2
