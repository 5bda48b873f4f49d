"""http1.Http1Client against real loopback sockets: canned wire bytes, pooling, deadlines, TLS, proxies.

Every server here is a plain socket in a thread that reads the request and writes exactly the bytes
a test chooses, so each framing and failure case is what a real peer would put on the wire.
"""

from __future__ import annotations

import base64
import gzip
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from auth.pki import Authority
from encord_gateway.upstream import client as upstream
from encord_gateway.upstream.http1 import (
    MAX_HEAD_BYTES,
    MAX_HEADER_LINES,
    MAX_INTERIM_ANSWERS,
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    ExchangeTimeout,
    Http1Client,
    MalformedResponse,
    Origin,
    Proxy,
)
from support.loopback import Handler, Server, Wire, connect_proxy, head_fields

PATH = "/public/user"  # Server.url()'s default path too
BODY = b'{"query_type": "user"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok"
# Deadlines for the tests that wait for one to pass: short, with a generous margin on the far side.
SHORT_S = 0.3
MARGIN_S = 1.0


def soon(seconds: float = 3.0) -> float:
    """A deadline no healthy loopback exchange comes near."""
    return time.monotonic() + seconds


# Servers ------------------------------------------------------------------------------------------


def replying(*replies: bytes, close: bool = False) -> Handler:
    """Answer each request with the next reply (the last one repeats); hang up after each if `close`."""
    count = 0
    lock = threading.Lock()

    def handle(wire: Wire) -> None:
        nonlocal count
        while wire.read_request() is not None:
            with lock:
                reply = replies[min(count, len(replies) - 1)]
                count += 1
            wire.send(reply)
            if close:
                return

    return handle


def never_answering(wire: Wire) -> None:
    wire.read_request()
    wire.server.stop.wait()


def hard_close(sock: socket.socket) -> None:
    """Close with a RST rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


Serve = Callable[..., Server]
MakeClient = Callable[..., Http1Client]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[Server] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(handler, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    for server in servers:
        assert not server.errors, server.errors


@pytest.fixture
def client() -> Iterator[MakeClient]:
    clients: list[Http1Client] = []

    def make(url: str, **kwargs: object) -> Http1Client:
        kwargs = {"max_idle": 32, "connect_timeout_s": 5.0, **kwargs}
        made = Http1Client(url, **kwargs)  # type: ignore[arg-type]
        clients.append(made)
        return made

    yield make
    for made in clients:
        made.close()


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    ca_pem: str
    ca_file: Path

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("http1-tls")
    authority = Authority("http1 test CA")
    cert, key = authority.issue("localhost", dns=("localhost",), ips=("127.0.0.1",), server=True).write(
        directory, "server"
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(authority.cert_pem)
    return Tls(context, authority.cert_pem.decode(), ca_file)


# Framing ------------------------------------------------------------------------------------------


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


def test_multi_member_gzip_is_decoded_whole(serve: Serve, client: MakeClient) -> None:
    # RFC 1952 allows several members; urllib3 (so the SDK) decodes them all.
    encoded = gzip.compress(PLAIN[:100]) + gzip.compress(PLAIN[100:])
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(encoded)
    server = serve(replying(reply + encoded))
    assert client(server.url()).post(HEADERS, BODY, soon()).body == PLAIN


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [("gzip", gzip.compress(b"{}") + b"junk"), ("deflate", zlib.compress(b"{}") + b"junk")],
)
def test_bytes_after_the_compressed_body_are_malformed(
    serve: Serve, client: MakeClient, encoding: str, encoded: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
    server = serve(replying(head % (encoding.encode(), len(encoded)) + encoded))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


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


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


PLAIN = b'{"status": 200, "response": ["a", "b"]}' * 20


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("x-gzip", gzip.compress(PLAIN)),
        ("GZip", gzip.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN)),
        ("deflate", _raw_deflate(PLAIN)),
        ("identity", PLAIN),
    ],
    ids=["gzip", "x-gzip", "gzip-mixed-case", "deflate-zlib", "deflate-raw", "identity"],
)
def test_content_encoding_is_decoded(serve: Serve, client: MakeClient, encoding: str, encoded: bytes) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    assert client(server.url()).post(HEADERS, BODY, soon()).body == PLAIN


def test_gzip_inside_chunked(serve: Serve, client: MakeClient) -> None:
    encoded = gzip.compress(PLAIN)
    half = len(encoded) // 2
    parts = [encoded[:half], encoded[half:]]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n" + chunks
    server = serve(replying(reply + b"0\r\n\r\n"))
    assert client(server.url()).post(HEADERS, BODY, soon()).body == PLAIN


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [("br", b"\x0b\x02\x80hello\x03"), ("gzip", b"not gzip at all"), ("deflate", b"\xff\xfe\xfd")],
    ids=["unknown-br", "corrupt-gzip", "corrupt-deflate"],
)
def test_undecodable_content_encoding_is_malformed(
    serve: Serve, client: MakeClient, encoding: str, encoded: bytes
) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


# A small limit keeps these fast: the limit is read when an answer is decoded, not at import.
SMALL_LIMIT = 1000


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate)],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
@pytest.mark.parametrize(
    ("size", "fits"), [(SMALL_LIMIT, True), (SMALL_LIMIT + 1, False), (50 * SMALL_LIMIT, False)]
)
def test_decoded_body_is_held_to_the_body_limit(
    serve: Serve,
    client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    encoding: str,
    compress: Callable[[bytes], bytes],
    size: int,
    fits: bool,
) -> None:
    monkeypatch.setattr("encord_gateway.upstream.http1.limits.MAX_BODY_BYTES", SMALL_LIMIT)
    plain = b"0" * size
    encoded = compress(plain)
    assert len(encoded) < SMALL_LIMIT // 4  # small on the wire: only decoding makes it large
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    http = client(server.url())
    if fits:
        assert http.post(HEADERS, BODY, soon()).body == plain
    else:
        # One byte more than the answer that decodes is refused: the limit is what refuses it.
        with pytest.raises(MalformedResponse):
            http.post(HEADERS, BODY, soon())
        assert http._idle == []


def test_chunked_gzip_bomb_is_malformed(
    serve: Serve, client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("encord_gateway.upstream.http1.limits.MAX_BODY_BYTES", SMALL_LIMIT)
    encoded = gzip.compress(b"0" * 100 * SMALL_LIMIT)
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
    server = serve(replying(reply + b"%x\r\n%s\r\n0\r\n\r\n" % (len(encoded), encoded)))
    with pytest.raises(MalformedResponse, match="decodes to more than"):
        client(server.url()).post(HEADERS, BODY, soon())


@pytest.mark.parametrize(
    "cut",
    [lambda encoded: encoded[: len(encoded) // 2], lambda encoded: encoded[:-4]],
    ids=["mid-stream", "in-the-trailer"],
)
def test_truncated_gzip_is_malformed(serve: Serve, client: MakeClient, cut: Callable[[bytes], bytes]) -> None:
    # A valid prefix: every byte decodes, but the stream never ends.
    encoded = cut(gzip.compress(PLAIN))
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    with pytest.raises(MalformedResponse, match="truncated"):
        client(server.url()).post(HEADERS, BODY, soon())


# The request on the wire --------------------------------------------------------------------------


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


# Keep-alive and the pool --------------------------------------------------------------------------


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


def test_connection_idle_too_long_is_not_reused(
    serve: Serve, client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that two posts in a row never outlast it, even on a loaded machine.
    monkeypatch.setattr("encord_gateway.upstream.http1.pool.MAX_IDLE_S", 0.2)
    closed = threading.Event()

    def handle(wire: Wire) -> None:
        # Both connections stay open and would answer again: only their idle age tells them apart.
        while wire.read_request() is not None:
            wire.send(OK)
        if wire.index == 0 and not wire.server.stop.is_set():
            closed.set()

    server = serve(handle)
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http.post(HEADERS, BODY, soon()).body == b"ok"  # at once: reused
    assert server.accepts == 1
    time.sleep(0.3)
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert server.accepts == 2
    assert len(server.requests) == 3  # nothing was sent on the old connection
    assert closed.wait(2), "the client did not close the connection it stopped using"
    assert len(http._idle) == 1


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


# Deadlines ----------------------------------------------------------------------------------------


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


# TLS ----------------------------------------------------------------------------------------------


def test_tls_origin_trusted_by_the_context(serve: Serve, client: MakeClient, tls: Tls) -> None:
    server = serve(replying(OK, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"), tls=tls.server)
    http = client(server.url(), ssl_context=upstream.verifying_context(str(tls.ca_file)))
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http.post(HEADERS, BODY, soon()).body == b"two"
    assert server.accepts == 1  # keep-alive over TLS too
    assert server.requests[0].startswith(
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
    )


def test_tls_origin_not_trusted_by_the_default_context(serve: Serve, client: MakeClient, tls: Tls) -> None:
    server = serve(replying(OK), tls=tls.server)
    with pytest.raises(ConnectFailed):
        client(server.url()).post(HEADERS, BODY, soon())
    assert server.requests == []  # nothing was sent


def test_tls_stale_pooled_connection_is_replaced(serve: Serve, client: MakeClient, tls: Tls) -> None:
    def handle(wire: Wire) -> None:
        wire.read_request()
        wire.send(OK)
        if wire.index > 0:
            wire.wait_for_close()

    server = serve(handle, tls=tls.server)
    http = client(server.url(), ssl_context=tls.trusting())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    server.wait_ended()
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert server.accepts == 2


# Proxies ------------------------------------------------------------------------------------------


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
    started = time.monotonic()
    if bound_by == "deadline":
        http = client("https://origin.invalid/x", proxy=Proxy.of(f"http://127.0.0.1:{proxy.port}"))
        deadline = started + SHORT_S
    else:  # the deadline is far off: the connect timeout alone bounds opening the tunnel
        http = client(
            "https://origin.invalid/x",
            proxy=Proxy.of(f"http://127.0.0.1:{proxy.port}"),
            connect_timeout_s=SHORT_S,
        )
        deadline = soon(30)
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


# upstream.proxy_for -------------------------------------------------------------------------------

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
ENCORD = "https://api.encord.com/public/user"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_proxy_for_without_any_variable(environ: pytest.MonkeyPatch) -> None:
    assert upstream.proxy_for(ENCORD) is None


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy"])
def test_proxy_for_honours_https_proxy(environ: pytest.MonkeyPatch, name: str) -> None:
    environ.setenv(name, "http://u:p@proxy.internal:3128")
    assert upstream.proxy_for(ENCORD) == Proxy(Origin("http", "proxy.internal", 3128), "Basic dTpw")


def test_proxy_for_prefers_the_scheme_over_all_proxy(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("ALL_PROXY", "http://all.internal:1")
    assert upstream.proxy_for(ENCORD) == Proxy(Origin("http", "all.internal", 1))
    environ.setenv("HTTPS_PROXY", "http://https.internal:2")
    assert upstream.proxy_for(ENCORD) == Proxy(Origin("http", "https.internal", 2))


def test_proxy_for_uses_http_proxy_only_for_http(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("HTTP_PROXY", "http://plain.internal:3")
    assert upstream.proxy_for(ENCORD) is None
    assert upstream.proxy_for("http://localhost:8080/public/user") == Proxy(
        Origin("http", "plain.internal", 3)
    )


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("api.encord.com", True),
        ("encord.com", True),
        (".encord.com", True),
        ("other.example, api.encord.com", True),
        ("*", True),
        ("other.example", False),
        ("encord.co", False),
    ],
)
def test_proxy_for_honours_no_proxy(environ: pytest.MonkeyPatch, no_proxy: str, bypassed: bool) -> None:
    environ.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    environ.setenv("NO_PROXY", no_proxy)
    expected = None if bypassed else Proxy(Origin("http", "proxy.internal", 3128))
    assert upstream.proxy_for(ENCORD) == expected
    environ.delenv("NO_PROXY")
    environ.setenv("no_proxy", no_proxy)
    assert upstream.proxy_for(ENCORD) == expected


# Hosts and proxy URLs ------------------------------------------------------------------------------


def test_an_internationalised_host_goes_out_in_its_ascii_form() -> None:
    origin = Origin.of("https://bücher.example:8443/public/user")
    assert origin.host == "xn--bcher-kva.example"
    assert origin.authority == "xn--bcher-kva.example:8443"


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
