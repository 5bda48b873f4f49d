"""Http1Client holds every exchange to its deadline: connecting, handshaking, waiting, trickling."""

from __future__ import annotations

import time

import pytest
from encord_gateway.upstream.http1 import ConnectTimeout, ExchangeTimeout
from support.loopback import Handler, Wire
from upstream.http1.peers import (
    BODY,
    HEADERS,
    MARGIN_S,
    OK,
    PATH,
    SHORT_S,
    FakeClock,
    MakeClient,
    Serve,
    Tls,
    never_answering,
    replying,
    soon,
)


def _stalls_mid_body(wire: Wire) -> None:
    wire.read_request()
    wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    wire.server.stop.wait()


@pytest.mark.parametrize("handler", [never_answering, _stalls_mid_body], ids=["silent", "stalls-mid-body"])
def test_deadline_passes_while_waiting(serve: Serve, client: MakeClient, handler: Handler) -> None:
    server = serve(handler)
    http = client(server.url())
    started = time.monotonic()
    with pytest.raises(ExchangeTimeout):
        http.post(HEADERS, BODY, started + SHORT_S)
    elapsed = time.monotonic() - started
    assert SHORT_S - 0.05 <= elapsed < SHORT_S + MARGIN_S
    assert http._idle == []


def test_deadline_passes_during_the_tls_handshake(serve: Serve, client: MakeClient, tls: Tls) -> None:
    server = serve(lambda wire: wire.server.stop.wait())  # accepts, never speaks TLS
    started = time.monotonic()
    # No connection was ever set up, so nothing was sent: a ConnectFailed, which callers may retry.
    with pytest.raises(ConnectTimeout, match="the TLS handshake"):
        client(f"https://127.0.0.1:{server.port}{PATH}", ssl_context=tls.trusting()).post(
            HEADERS, BODY, started + SHORT_S
        )
    assert time.monotonic() - started < SHORT_S + MARGIN_S


def test_deadline_already_passed_still_fails_fast(serve: Serve, client: MakeClient) -> None:
    server = serve(never_answering)
    started = time.monotonic()
    with pytest.raises(ExchangeTimeout):
        client(server.url()).post(HEADERS, BODY, started - 1)
    assert time.monotonic() - started < MARGIN_S


def test_deadline_holds_against_a_trickling_answer(serve: Serve, client: MakeClient) -> None:
    def trickle(wire: Wire) -> None:
        wire.read_request()
        wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        for byte in b"0123456789":
            if wire.server.stop.wait(0.08):
                return
            wire.send(bytes([byte]))

    server = serve(trickle)
    started = time.monotonic()
    with pytest.raises(ExchangeTimeout):
        client(server.url()).post(HEADERS, BODY, started + 0.25)
    assert time.monotonic() - started < 0.25 + 0.3


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
        # A 304's Content-Length is the length of the representation it stands for, not of a body.
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    ],
    ids=["204", "304", "304-with-length"],
)
def test_answer_without_a_body_returns_at_once_and_keeps_the_connection(
    serve: Serve, client: MakeClient, head: bytes
) -> None:
    # The server keeps the connection open and sends nothing more: a client that looked for a
    # body (read to close, or Content-Length bytes) would wait for the deadline instead.
    server = serve(replying(head, OK))
    http = client(server.url())
    started = time.monotonic()
    response = http.post(HEADERS, BODY, started + SHORT_S)
    assert time.monotonic() - started < SHORT_S
    assert response.body == b""
    assert response.status == int(head.split()[1])
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert server.accepts == 1


def test_deadlines_are_measured_on_the_clients_clock(serve: Serve, client: MakeClient) -> None:
    # On time.monotonic() the first deadline is a minute away, the second long past: only the
    # client's clock decides, so its fake is what every test of idle ages and deadlines can drive.
    server = serve(replying(OK))
    clock = FakeClock()
    http = client(server.url(), clock=clock)
    with pytest.raises(ExchangeTimeout):
        http.post(HEADERS, BODY, time.monotonic() + 60)
    assert http.post(HEADERS, BODY, clock() + 3).body == b"ok"
