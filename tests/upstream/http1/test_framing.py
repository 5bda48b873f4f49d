"""Http1Client reads answers as RFC 9112 frames them (lengths, chunks, interim answers), refuses the rest."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest
from encord_gateway.upstream.http1 import (
    MAX_HEAD_BYTES,
    MAX_HEADER_LINES,
    MAX_INTERIM_ANSWERS,
    ConnectFailed,
    ConnectionLost,
    MalformedResponse,
)
from support.loopback import Wire
from upstream.http1.peers import BODY, HEADERS, OK, PATH, PLAIN, MakeClient, Serve, hard_close, replying, soon


def test_content_length_body(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 201 Created\r\nX-Thing: A b\r\nContent-Length: 11\r\n\r\nhello world"))
    response = client(server.url()).post(HEADERS, BODY, soon())
    assert response.status == 201
    assert response.body == b"hello world"
    assert response.headers["x-thing"] == "A b"
    assert response.headers["content-length"] == "11"


def test_chunked_body_with_extension_and_trailers_leaves_the_connection_reusable(
    serve: Serve, client: MakeClient
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;name=value\r\nWiki\r\n"
        b"5\r\npedia\r\n"
        b"e\r\n in\r\n\r\nchunks.\r\n"
        b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n"
    )
    server = serve(replying(chunked, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"))
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"Wikipedia in\r\n\r\nchunks."
    # The trailers were consumed: the next answer on the same connection parses cleanly.
    assert http.post(HEADERS, BODY, soon()).body == b"second"
    assert server.accepts == 1


def test_chunked_with_content_length_reads_the_chunks_and_does_not_reuse(
    serve: Serve, client: MakeClient
) -> None:
    closed = threading.Event()

    def handle(wire: Wire) -> None:
        wire.read_request()
        # Content-Length says 3; the chunks say 11. Any answer after this one would be misframed.
        wire.send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
        )
        if wire.index == 0 and wire.wait_for_close():
            closed.set()

    server = serve(handle)
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"hello world"
    assert http._idle == []
    assert closed.wait(2), "the client kept a connection whose framing was ambiguous"
    assert http.post(HEADERS, BODY, soon()).body == b"hello world"
    assert server.accepts == 2


@pytest.mark.parametrize(
    "codings", [b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"]
)
def test_transfer_coding_under_chunked_is_refused(serve: Serve, client: MakeClient, codings: bytes) -> None:
    encoded = gzip.compress(PLAIN)
    reply = b"HTTP/1.1 200 OK\r\n" + codings + b"\r\n\r\n"
    server = serve(replying(reply + b"%x\r\n%s\r\n0\r\n\r\n" % (len(encoded), encoded)))
    http = client(server.url())
    with pytest.raises(MalformedResponse, match="Transfer-Encoding"):
        http.post(HEADERS, BODY, soon())
    assert http._idle == []


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.\xff 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 999 What\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["two-lengths", "non-ascii-version", "unknown-version", "status-999"],
)
def test_unframeable_heads_are_malformed(serve: Serve, client: MakeClient, head: bytes) -> None:
    server = serve(replying(head))
    http = client(server.url())
    with pytest.raises(MalformedResponse):
        http.post(HEADERS, BODY, soon())
    assert http._idle == []


def test_a_repeated_equal_content_length_is_accepted(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"))
    assert client(server.url()).post(HEADERS, BODY, soon()).body == b"ok"


# Interim answers ----------------------------------------------------------------------------------


def test_100_continue_then_the_real_answer(serve: Serve, client: MakeClient) -> None:
    server = serve(
        replying(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
        )
    )
    http = client(server.url())
    response = http.post(HEADERS, BODY, soon())
    assert response.status == 200
    assert response.body == b"real"
    assert "link" not in response.headers  # the interim answer's headers are not the final one's
    # The interim answers were consumed whole: the connection is reused and framed correctly.
    assert http.post(HEADERS, BODY, soon()).body == b"real"
    assert server.accepts == 1


@pytest.mark.parametrize(
    ("count", "accepted"),
    [(MAX_INTERIM_ANSWERS, True), (MAX_INTERIM_ANSWERS + 1, False), (3000, False)],
    ids=["at-the-limit", "one-too-many", "endless"],
)
def test_too_many_interim_answers_are_malformed(
    serve: Serve, client: MakeClient, count: int, accepted: bool
) -> None:
    server = serve(replying(b"HTTP/1.1 103 Early Hints\r\n\r\n" * count + OK))
    http = client(server.url())
    if accepted:
        assert http.post(HEADERS, BODY, soon()).body == b"ok"
    else:
        with pytest.raises(MalformedResponse, match="interim"):
            http.post(HEADERS, BODY, soon())
        assert http._idle == []


# Malformed and broken answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "status_line",
    [
        b"HTTP/2 200 OK\r\n",
        b"HTTP/1.1 20 OK\r\n",
        b"HTTP/1.1 2000 OK\r\n",
        b"HTTP/1.1 OK\r\n",
        b"ICY 200 OK\r\n",
        b"<html>hello</html>\r\n",
        b"\r\n",
    ],
)
def test_malformed_status_line(serve: Serve, client: MakeClient, status_line: bytes) -> None:
    server = serve(replying(status_line + b"Content-Length: 2\r\n\r\nok"))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


def test_status_line_without_reason_is_accepted(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 204\r\nContent-Length: 0\r\n\r\n"))
    response = client(server.url()).post(HEADERS, BODY, soon())
    assert (response.status, response.body) == (204, b"")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 1000) for i in range(MAX_HEAD_BYTES // 1000 + 5))
        + b"Content-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADER_LINES + 1))
        + b"Content-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\n",
    ],
    ids=["one-huge-header", "too-many-bytes", "too-many-lines", "not-a-header"],
)
def test_oversized_or_garbled_headers_are_malformed(serve: Serve, client: MakeClient, head: bytes) -> None:
    server = serve(replying(head + b"ok"))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        # Only what a chunk size may be on the wire: not what int(_, 16) happens to accept.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0_2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 16 + b"\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;" + b"x" * 1100 + b"\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + gzip.compress(b"ok"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=[
        "length-not-a-number",
        "length-negative",
        "length-too-large",
        "bad-chunk-size",
        "chunk-size-0x",
        "chunk-size-plus",
        "chunk-size-underscore",
        "chunk-size-negative",
        "chunk-size-empty",
        "chunk-size-17-digits",
        "chunk-size-too-large",
        "chunk-data-longer-than-its-size",
        "chunk-data-ended-by-lf",
        "chunk-size-line-too-long",
        "transfer-encoding-gzip",
        "transfer-encoding-chunked-then-gzip",
        "transfer-encoding-identity",
    ],
)
def test_bad_framing_is_malformed(serve: Serve, client: MakeClient, reply: bytes) -> None:
    server = serve(replying(reply))
    http = client(server.url())
    with pytest.raises(MalformedResponse):
        http.post(HEADERS, BODY, soon())
    assert http._idle == []


def test_chunk_size_line_at_the_limit_is_accepted(serve: Serve, client: MakeClient) -> None:
    # 1024 bytes with its CRLF: the longest chunk-size line (extensions included) that is read.
    line = b"2;" + b"x" * (1024 - 4) + b"\r\n"
    assert len(line) == 1024
    server = serve(
        replying(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + line + b"ok\r\n0\r\n\r\n")
    )
    assert client(server.url()).post(HEADERS, BODY, soon()).body == b"ok"


def test_content_length_with_superscript_digit_is_malformed(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nok"))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


@pytest.mark.parametrize(
    "reply",
    [
        b"",  # reads the request, then hangs up without a byte
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  # inside the headers, after a whole line
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # inside a Content-Length body
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # inside a chunk
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",  # before the last chunk
    ],
    ids=["no-answer", "in-headers", "short-body", "in-chunk", "before-last-chunk"],
)
def test_connection_closed_early_is_lost(serve: Serve, client: MakeClient, reply: bytes) -> None:
    server = serve(replying(reply, close=True))
    http = client(server.url())
    with pytest.raises(ConnectionLost):
        http.post(HEADERS, BODY, soon())
    assert http._idle == []


def test_connection_closed_mid_header_line_is_lost(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 200 OK\r\nContent-Le", close=True))
    with pytest.raises(ConnectionLost):
        client(server.url()).post(HEADERS, BODY, soon())


def test_connection_reset_is_lost(serve: Serve, client: MakeClient) -> None:
    def handle(wire: Wire) -> None:
        wire.read_request()
        hard_close(wire.sock)

    server = serve(handle)
    with pytest.raises(ConnectionLost):
        client(server.url()).post(HEADERS, BODY, soon())


def test_connection_refused(client: MakeClient) -> None:
    # A bound socket that is not listening: the port is ours, and the kernel refuses connections to it.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ConnectFailed):
            client(f"http://127.0.0.1:{port}{PATH}").post(HEADERS, BODY, soon())
        assert time.monotonic() - started < 1
