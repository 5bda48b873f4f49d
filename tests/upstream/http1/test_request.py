"""The request Http1Client puts on the wire: its exact bytes, its target, its Host, no split headers."""

from __future__ import annotations

import socket

import pytest
from encord_gateway.upstream.http1 import Origin
from upstream.http1.peers import BODY, HEADERS, OK, PATH, MakeClient, Serve, replying, soon


def test_exact_request_bytes(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(OK))
    headers = [
        ("Accept", "application/json"),
        ("ResourceType", ""),
        ("X-Cloud-Trace-Context", "abc/1;o=1"),
        ("Content-Length", "5"),
    ]
    client(server.url(PATH + "?a=1&b=2")).post(headers, b"hello", soon())
    assert server.requests == [
        b"POST /public/user?a=1&b=2 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"Accept: application/json\r\n"
        b"ResourceType: \r\n"
        b"X-Cloud-Trace-Context: abc/1;o=1\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"hello"
    ]


def test_empty_path_is_sent_as_slash(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(OK))
    client(f"http://127.0.0.1:{server.port}").post([("Content-Length", "0")], b"", soon())
    assert server.requests[0].startswith(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:")


LINE_BREAKS = pytest.mark.parametrize(
    "header",
    [
        ("X-Trace", "a\r\nX-Injected: 1"),
        ("X-Trace", "a\nX-Injected: 1"),
        ("X-Trace", "a\r"),
        ("X-Trace\r\nX-Injected", "1"),
        ("X-Trace\n", "1"),
    ],
    ids=["value-crlf", "value-lf", "value-cr", "name-crlf", "name-lf"],
)


@LINE_BREAKS
def test_line_break_in_a_header_is_refused_before_sending(
    serve: Serve, client: MakeClient, header: tuple[str, str]
) -> None:
    server = serve(replying(OK))
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert len(http._idle) == 1
    with pytest.raises(ValueError, match="line break"):
        http.post([*HEADERS, header], BODY, soon())
    # Nothing went out on the pooled connection, and it is still there, still in step.
    assert len(http._idle) == 1
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert server.accepts == 1
    assert len(server.requests) == 2
    assert all(b"X-Injected" not in request for request in server.requests)


@LINE_BREAKS
def test_line_break_in_a_header_is_refused_before_connecting(
    client: MakeClient, header: tuple[str, str]
) -> None:
    # Nobody listens on the port: connecting at all would fail with ConnectFailed instead.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        with pytest.raises(ValueError, match="line break"):
            client(f"http://127.0.0.1:{port}{PATH}").post([*HEADERS, header], BODY, soon())


@pytest.mark.parametrize(
    ("url", "authority"),
    [
        ("https://api.encord.com/public/user", "api.encord.com"),
        ("https://api.encord.com:443/public/user", "api.encord.com"),
        ("https://api.encord.com:8443/public/user", "api.encord.com:8443"),
        ("http://example.com:80/", "example.com"),
        ("http://example.com:443/", "example.com:443"),
        ("http://[::1]:8080/x", "[::1]:8080"),
    ],
)
def test_host_authority_omits_only_the_default_port(url: str, authority: str) -> None:
    assert Origin.of(url).authority == authority


# Hosts ------------------------------------------------------------------------------


def test_an_internationalised_host_goes_out_in_its_ascii_form() -> None:
    origin = Origin.of("https://bücher.example:8443/public/user")
    assert origin.host == "xn--bcher-kva.example"
    assert origin.authority == "xn--bcher-kva.example:8443"
