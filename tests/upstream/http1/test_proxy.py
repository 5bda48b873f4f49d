"""Http1Client through an HTTP proxy: CONNECT tunnels for HTTPS, absolute form for HTTP; Proxy.of."""

from __future__ import annotations

import base64
import socket
import time

import pytest
from encord_gateway.upstream.http1 import ConnectFailed, ConnectTimeout, Origin, Proxy
from support.loopback import Handler, Wire, connect_proxy, head_fields
from upstream.http1.peers import (
    BODY,
    HEADERS,
    MARGIN_S,
    OK,
    PATH,
    SHORT_S,
    MakeClient,
    Serve,
    Tls,
    hard_close,
    replying,
    soon,
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_https_origin_through_a_connect_proxy(serve: Serve, client: MakeClient, tls: Tls) -> None:
    origin = serve(replying(OK, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"), tls=tls.server)
    proxy = serve(connect_proxy(_basic("user", "pass")))
    http = client(
        origin.url(),
        ssl_context=tls.trusting(),
        proxy=Proxy.of(f"http://user:pass@127.0.0.1:{proxy.port}"),
    )
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http.post(HEADERS, BODY, soon()).body == b"two"  # the tunnel is kept alive
    assert (proxy.accepts, origin.accepts) == (1, 1)
    request_line, fields = head_fields(proxy.requests[0])
    assert request_line == f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1"
    assert fields["proxy-authorization"] == "Basic dXNlcjpwYXNz"  # base64("user:pass")
    assert fields["host"] == f"127.0.0.1:{origin.port}"
    # Inside the tunnel the origin sees an ordinary request, without the proxy's credentials.
    assert len(origin.requests) == 2
    for request in origin.requests:
        assert request.startswith(f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n".encode())
        assert b"proxy-authorization" not in request.lower()


def test_proxy_refusing_the_tunnel_is_connect_failed(serve: Serve, client: MakeClient, tls: Tls) -> None:
    origin = serve(replying(OK), tls=tls.server)
    proxy = serve(connect_proxy(_basic("user", "pass")))
    http = client(
        origin.url(),
        ssl_context=tls.trusting(),
        proxy=Proxy.of(f"http://user:wrong@127.0.0.1:{proxy.port}"),
    )
    with pytest.raises(ConnectFailed, match="407"):
        http.post(HEADERS, BODY, soon())
    assert proxy.accepts == 1
    assert origin.accepts == 0


def _proxy_hangs_up(wire: Wire) -> None:
    wire.server.record(wire.read_head() or b"")


def _proxy_resets(wire: Wire) -> None:
    wire.server.record(wire.read_head() or b"")
    hard_close(wire.sock)


def _proxy_answers_garbage(wire: Wire) -> None:
    wire.server.record(wire.read_head() or b"")
    wire.send(b"SSH-2.0-OpenSSH_9.6\r\n")


def _proxy_talks_into_the_tunnel(wire: Wire) -> None:
    wire.server.record(wire.read_head() or b"")
    wire.send(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n")
    wire.server.stop.wait()


@pytest.mark.parametrize(
    "handler",
    [_proxy_hangs_up, _proxy_resets, _proxy_answers_garbage, _proxy_talks_into_the_tunnel],
    ids=["hangs-up", "resets", "not-http", "bytes-after-200"],
)
def test_proxy_failing_the_tunnel_is_connect_failed(
    serve: Serve, client: MakeClient, handler: Handler
) -> None:
    # Nothing reached the origin: the failure is ConnectFailed (safe to ask again), not ConnectionLost.
    proxy = serve(handler)
    http = client("https://origin.invalid/x", proxy=Proxy.of(f"http://127.0.0.1:{proxy.port}"))
    with pytest.raises(ConnectFailed, match=r"origin\.invalid"):
        http.post(HEADERS, BODY, soon())
    assert proxy.requests[0].startswith(b"CONNECT origin.invalid:443 HTTP/1.1\r\n")
    assert http._idle == []


@pytest.mark.parametrize("bound_by", ["deadline", "connect-timeout"])
def test_proxy_never_answering_the_connect_times_out(serve: Serve, client: MakeClient, bound_by: str) -> None:
    def silent(wire: Wire) -> None:
        wire.read_head()
        wire.server.stop.wait()

    proxy = serve(silent)
    # The deadline is far off when the connect timeout alone must bound opening the tunnel.
    connect_timeout_s, deadline_s = (5.0, SHORT_S) if bound_by == "deadline" else (SHORT_S, 30.0)
    http = client(
        "https://origin.invalid/x",
        proxy=Proxy.of(f"http://127.0.0.1:{proxy.port}"),
        connect_timeout_s=connect_timeout_s,
    )
    # Timed from here: building the client loads the system's CA roots, slow on a loaded machine.
    started = time.monotonic()
    deadline = started + deadline_s
    with pytest.raises(ConnectTimeout, match="the proxy's tunnel"):
        http.post(HEADERS, BODY, deadline)
    elapsed = time.monotonic() - started
    assert SHORT_S - 0.05 <= elapsed < SHORT_S + MARGIN_S


def test_unreachable_proxy_is_connect_failed(client: MakeClient) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        http = client("https://origin.invalid/x", proxy=Proxy.of(f"http://127.0.0.1:{port}"))
        with pytest.raises(ConnectFailed):
            http.post(HEADERS, BODY, soon())


def test_connect_target_brackets_an_ipv6_origin(serve: Serve, client: MakeClient) -> None:
    proxy = serve(connect_proxy(authorization="never matches"))
    http = client("https://[::1]:8443/x", proxy=Proxy.of(f"http://127.0.0.1:{proxy.port}"))
    with pytest.raises(ConnectFailed):
        http.post(HEADERS, BODY, soon())
    request_line, fields = head_fields(proxy.requests[0])
    assert request_line == "CONNECT [::1]:8443 HTTP/1.1"
    assert fields["host"] == "[::1]:8443"


def test_http_origin_through_a_proxy_uses_absolute_form(serve: Serve, client: MakeClient) -> None:
    # The origin's name does not resolve: only the proxy is ever connected to.
    proxy = serve(replying(OK))
    http = client(
        "http://origin.invalid:8080/public/user?x=1",
        proxy=Proxy.of(f"http://user:p%40ss@127.0.0.1:{proxy.port}"),
    )
    assert http.post([("Content-Length", "5")], b"hello", soon()).body == b"ok"
    assert http.post([("Content-Length", "5")], b"hello", soon()).body == b"ok"
    assert proxy.accepts == 1
    assert proxy.requests[0] == (
        b"POST http://origin.invalid:8080/public/user?x=1 HTTP/1.1\r\n"
        b"Host: origin.invalid:8080\r\n"
        b"Proxy-Authorization: " + _basic("user", "p@ss").encode() + b"\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"hello"
    )


@pytest.mark.parametrize(
    ("url", "origin", "authorization"),
    [
        ("http://proxy.internal:3128", Origin("http", "proxy.internal", 3128), None),
        ("proxy.internal:3128", Origin("http", "proxy.internal", 3128), None),
        ("http://proxy.internal", Origin("http", "proxy.internal", 80), None),
        ("http://u:p@proxy.internal:3128", Origin("http", "proxy.internal", 3128), "Basic dTpw"),
        ("http://a%3Ab:c%40d@10.0.0.1:8080/", Origin("http", "10.0.0.1", 8080), _basic("a:b", "c@d")),
        ("http://u@proxy.internal:1", Origin("http", "proxy.internal", 1), _basic("u", "")),
    ],
)
def test_proxy_of(url: str, origin: Origin, authorization: str | None) -> None:
    assert Proxy.of(url) == Proxy(origin, authorization)


def test_proxy_of_refuses_an_https_proxy() -> None:
    with pytest.raises(ValueError, match="only http"):
        Proxy.of("https://proxy.internal:3128")


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("http://user:s3cr/et@proxy.example:3128", "s3cr"),  # '/' ends the authority early
        ("http://user:98765/x@proxy.example:3128", "98765"),  # the password read as a port
        ("http://user:s3cr?et@proxy.example:3128", "s3cr"),
    ],
)
def test_a_proxy_url_that_does_not_parse_is_refused_without_quoting_it(url: str, secret: str) -> None:
    with pytest.raises(ValueError, match="percent-encode") as caught:
        Proxy.of(url)
    assert secret not in str(caught.value)


def test_a_non_ascii_proxy_password_is_sent_as_latin_1_like_requests() -> None:
    proxy = Proxy.of("http://user:p%C3%A4ss@proxy.example:3128")
    assert proxy.authorization == "Basic " + base64.b64encode("user:päss".encode("latin-1")).decode()


def test_an_ipv6_proxy() -> None:
    assert Proxy.of("http://[::1]:3128").origin == Origin("http", "::1", 3128)
