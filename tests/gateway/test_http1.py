"""http1.Http1Client against real loopback sockets: canned wire bytes, pooling, deadlines, TLS, proxies.

Every server here is a plain socket in a thread that reads the request and writes exactly the bytes
a test chooses, so each framing and failure case is what a real peer would put on the wire.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import select
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
from encord_gateway import upstream
from encord_gateway.http1 import (
    MAX_HEAD_BYTES,
    MAX_HEADER_LINES,
    ConnectFailed,
    ConnectionLost,
    ExchangeTimeout,
    Http1Client,
    MalformedResponse,
    Origin,
    Proxy,
)

PATH = "/public/user"
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


class Wire:
    """The server's end of one accepted connection."""

    def __init__(self, sock: socket.socket, index: int, server: Server) -> None:
        self.sock = sock
        self.index = index  # 0 for the server's first connection, 1 for its second, ...
        self.server = server
        self.pending = b""

    def read_head(self) -> bytes | None:
        """Up to and including the blank line; None if the peer closed first."""
        while b"\r\n\r\n" not in self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending += data
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def read_request(self) -> bytes | None:
        """One whole request (head and Content-Length body), recorded on the server; None on EOF."""
        head = self.read_head()
        if head is None:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.pending) < length:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending += data
        request, self.pending = head + self.pending[:length], self.pending[length:]
        self.server.record(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_for_close(self) -> bool:
        """Read (and record) until the client closes; True if it did before the test ended."""
        while self.read_request() is not None:
            pass
        return not self.server.stop.is_set()


Handler = Callable[[Wire], None]


class Server:
    """A loopback listener that runs `handler` on each accepted connection, in its own thread."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self.ended = threading.Semaphore(0)  # released each time a connection's handler returns
        self._accepted = 0
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.02)
        self.port: int = self.listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    @property
    def accepts(self) -> int:
        with self._lock:
            return self._accepted

    def url(self, path: str = PATH) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def record(self, request: bytes) -> None:
        with self._lock:
            self.requests.append(request)

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(5.0)
            with self._lock:
                index = self._accepted
                self._accepted += 1
                self._live.append(sock)
                thread = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                with self._lock:
                    self._live.append(sock)
                sock.do_handshake()
            self.handler(Wire(sock, index, self))
        except OSError:
            pass  # the client went away (or refused our certificate), or the test ended
        except BaseException as exc:
            if not self.stop.is_set():
                self.errors.append(exc)
        finally:
            sock.close()
            self.ended.release()

    def wait_ended(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.ended.acquire(timeout=3), "a server connection did not end"

    def close(self) -> None:
        self.stop.set()
        self._threads[0].join(3)
        self.listener.close()
        with self._lock:
            live = list(self._live)
            threads = list(self._threads)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
        for thread in threads:
            thread.join(3)
        assert not any(thread.is_alive() for thread in threads), "a server thread did not stop"


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
    ],
    ids=["1.1-close", "1.1-Close", "1.0", "1.0-keep-alive", "1.1-keep-alive"],
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


def test_endless_interim_answers_are_malformed(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 103 Early Hints\r\n\r\n" * 3000 + OK))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


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
    ],
    ids=["length-not-a-number", "length-negative", "length-too-large", "bad-chunk-size"],
)
def test_bad_framing_is_malformed(serve: Serve, client: MakeClient, reply: bytes) -> None:
    server = serve(replying(reply))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


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
    with pytest.raises(ExchangeTimeout):
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


def test_204_without_length_has_an_empty_body(serve: Serve, client: MakeClient) -> None:
    server = serve(replying(b"HTTP/1.1 204 No Content\r\n\r\n"))
    response = client(server.url()).post(HEADERS, BODY, time.monotonic() + SHORT_S)
    assert (response.status, response.body) == (204, b"")


def test_bytes_after_the_answer_do_not_become_the_next_answer(serve: Serve, client: MakeClient) -> None:
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    server = serve(replying(OK + stray, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"))
    http = client(server.url())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http.post(HEADERS, BODY, soon()).body == b"fresh"


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


def _head_fields(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def connect_proxy(authorization: str | None) -> Handler:
    """A CONNECT proxy: checks Proxy-Authorization, then relays bytes both ways until either side closes."""

    def handle(wire: Wire) -> None:
        head = wire.read_head()
        if head is None:
            return
        wire.server.record(head)
        request_line, fields = _head_fields(head)
        method, target, _ = request_line.split(" ")
        if method != "CONNECT" or fields.get("proxy-authorization") != authorization:
            wire.send(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            return
        host, _, port = target.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as onward:
            wire.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if wire.pending:
                onward.sendall(wire.pending)
            while not wire.server.stop.is_set():
                readable, _, _ = select.select([wire.sock, onward], [], [], 0.05)
                for side in readable:
                    data = side.recv(65536)
                    if not data:
                        return
                    (onward if side is wire.sock else wire.sock).sendall(data)

    return handle


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
    request_line, fields = _head_fields(proxy.requests[0])
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
    request_line, fields = _head_fields(proxy.requests[0])
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
