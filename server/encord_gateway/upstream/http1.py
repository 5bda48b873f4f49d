"""A small HTTP/1.1 client for one origin: pooled keep-alive connections, a deadline on every exchange.

The gateway's upstream transport. It sends what it is given, byte for byte, reads
one answer, and never repeats a request: whether a call may be asked again is the
caller's decision. Framing follows RFC 9112; anything it cannot frame is refused
with a typed error rather than guessed at.
"""

from __future__ import annotations

import base64
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# Status line and headers together; Encord's are well under 2 KiB.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_LINES = 100
# 100 Continue, 103 Early Hints: a few at most before the real answer.
MAX_INTERIM_ANSWERS = 8
# What the gateway asks Encord for is a key or a list of keys: a few KiB, and 1 MiB holds some
# 2,000 keys. A body is held in memory whole, and its decoded JSON costs many times its size, so
# anything bigger is refused unread. The limit holds for the decoded body too, so a small gzip
# cannot expand into gigabytes.
MAX_BODY_BYTES = 1024 * 1024
# Load balancers close idle keep-alive connections after 60 s or more; a connection idle
# for longer than this is not reused, so a request is rarely sent on one being closed.
MAX_IDLE_S = 30.0
RECV_BYTES = 64 * 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_STATUS = re.compile(rb"[1-5][0-9][0-9]")
# Headers that frame the body: a repeat that disagrees means the framing cannot be trusted.
_FRAMING = ("content-length", "transfer-encoding")
_NO_BODY_STATUSES = frozenset({204, 304})


class HttpError(Exception):
    """The exchange failed below HTTP's semantics: no usable answer came."""


class ConnectFailed(HttpError):
    """No connection could be opened (refused, unreachable, TLS refused): nothing was sent."""


class ConnectTimeout(ConnectFailed):
    """No connection could be opened before the connect timeout or the deadline: nothing was sent."""


class ConnectionLost(HttpError):
    """The connection broke after the request was (perhaps) sent: the outcome is unknown."""


class ExchangeTimeout(HttpError):
    """The deadline passed while connecting, sending or waiting for the answer."""


class MalformedResponse(HttpError):
    """Bytes came back, but not an HTTP/1.x answer that can be framed."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


@dataclass(frozen=True)
class Origin:
    """Where connections go: the origin itself, or an HTTP proxy in front of it."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        try:
            # An internationalised name goes on the wire (Host, SNI, CONNECT) in its ASCII form.
            host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode()
        except UnicodeError:
            raise ValueError(f"not a valid host name: {parts.hostname!r}") from None
        return cls(parts.scheme, host, parts.port or (443 if parts.scheme == "https" else 80))

    @property
    def host_port(self) -> str:
        """`host:port`, with an IPv6 literal in brackets: CONNECT's target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def authority(self) -> str:
        """`host_port` without the scheme's default port: the Host header."""
        default = 443 if self.scheme == "https" else 80
        return self.host_port.rpartition(":")[0] if self.port == default else self.host_port


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: HTTPS origins are reached through a CONNECT tunnel, HTTP ones in absolute form."""

    origin: Origin
    authorization: str | None = None

    @classmethod
    def of(cls, url: str) -> Proxy:
        """ValueError for all but `http://[user:password@]host[:port][/]`; its text never holds the URL."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise ValueError(f"only http:// proxies are supported, not {parts.scheme}://")
        try:
            port = parts.port
            if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
                raise ValueError
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            origin = Origin.of(f"http://{host}:{port or 80}")
        except ValueError:
            # Not the parser's words: they can quote a piece of the password.
            raise ValueError(
                "it is not http://[user:password@]host:port "
                "(percent-encode '/', '?', '#' and '@' in the user and password)"
            ) from None
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            # Latin-1 when it can be, as requests (and so the SDK) encodes Basic credentials.
            data = pair.encode("latin-1") if all(ord(c) < 256 for c in pair) else pair.encode()
            auth = "Basic " + base64.b64encode(data).decode()
        return cls(origin, auth)


class _Reader:
    """Buffered reads from a socket, each bounded by the exchange's deadline, not by a per-recv timeout.

    Its own buffer (not io.BufferedReader's) so that bytes left over after an
    answer are seen: a connection holding them is not reused.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.deadline = 0.0

    def _fill(self) -> bool:
        """Reads what has arrived, waiting until the deadline at most; False at end of stream."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        self.sock.settimeout(left)
        data = self.sock.recv(RECV_BYTES)
        if not data:
            return False
        self.buffer += data
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readline(self, limit: int) -> bytes:
        """A line with its `\\n`; shorter than that when `limit` is reached or the stream ends."""
        start = 0
        while True:
            end = self.buffer.find(b"\n", start, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self.buffer) >= limit:
                return self._take(limit)
            start = len(self.buffer)
            if not self._fill():
                return self._take(len(self.buffer))

    def read(self, size: int) -> bytes:
        """`size` bytes; fewer when the stream ends first."""
        while len(self.buffer) < size and self._fill():
            pass
        return self._take(size)

    def read_to_end(self, limit: int) -> bytes:
        """Everything until the stream ends; at most `limit` + 1 bytes."""
        while len(self.buffer) <= limit and self._fill():
            pass
        return self._take(limit + 1)


class _Connection:
    """One socket and its reader; used by one exchange at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = _Reader(sock)
        self.idle_since = 0.0

    def close(self) -> None:
        self.sock.close()

    def reusable(self, now: float) -> bool:
        """Not idle for too long, and nothing to read: an idle connection that is readable was closed."""
        if now - self.idle_since > MAX_IDLE_S or self.reader.buffer:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False


class Http1Client:
    """POSTs to one origin over a bounded set of reusable connections; thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 32,
        connect_timeout_s: float = 5.0,
        proxy: Proxy | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.origin = Origin.of(url)
        self.target = parts.path or "/"
        if parts.query:
            self.target += "?" + parts.query
        if self.origin.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context
        self._proxy = proxy
        self._max_idle = max_idle
        self._connect_timeout_s = connect_timeout_s
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # An HTTP origin behind a proxy is asked in absolute form, every other one in origin form.
        absolute = proxy is not None and self.origin.scheme == "http"
        request_target = f"http://{self.origin.authority}{self.target}" if absolute else self.target
        self._request_line = f"POST {request_target} HTTP/1.1\r\nHost: {self.origin.authority}\r\n"
        if absolute and proxy is not None and proxy.authorization:
            self._request_line += f"Proxy-Authorization: {proxy.authorization}\r\n"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def post(self, headers: Sequence[tuple[str, str]], body: bytes, deadline: float) -> Response:
        """Sends one request and reads its answer by `deadline` (time.monotonic()); never repeats it.

        `headers` go out as given, after Host, and must frame the body (Content-Length).
        """
        for name, value in headers:
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"a line break in the {name!r} header would split the request")
        connection = self._take_idle()
        if connection is None:
            connection = self._connect(deadline)
        keep = False
        try:
            response, keep = self._exchange(connection, headers, body, deadline)
            return response
        finally:
            if keep:
                self._give_back(connection)
            else:
                connection.close()

    # Connections ---------------------------------------------------------------------------------

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if connection.reusable(now):
                return connection
            connection.close()

    def _give_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self, deadline: float) -> _Connection:
        first_hop = self._proxy.origin if self._proxy else self.origin
        # Connecting and the handshakes get the connect timeout, and never more than the deadline.
        setup_deadline = min(deadline, time.monotonic() + self._connect_timeout_s)
        try:
            sock = socket.create_connection((first_hop.host, first_hop.port), timeout=_left(setup_deadline))
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting to {first_hop.authority} timed out") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {first_hop.authority}: {exc.strerror or exc}") from exc
        step = "the connection"
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._proxy is not None and self.origin.scheme == "https":
                step = "the proxy's tunnel"
                self._tunnel(sock, setup_deadline)
            if self._ssl_context is not None:
                step = "the TLS handshake"
                sock.settimeout(_left(setup_deadline))
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self.origin.host)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeout(f"{step} with {self.origin.authority} timed out") from exc
        except HttpError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise ConnectFailed(f"{step} with {self.origin.authority} failed: {exc}") from exc
        return _Connection(sock)

    def _tunnel(self, sock: socket.socket, deadline: float) -> None:
        assert self._proxy is not None
        target = self.origin.host_port
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self._proxy.authorization:
            lines.append(f"Proxy-Authorization: {self._proxy.authorization}")
        sock.settimeout(_left(deadline))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        reader = _Reader(sock)
        reader.deadline = deadline
        try:
            status, _, _ = _read_head(reader)
        except HttpError as exc:
            raise ConnectFailed(f"the proxy did not open a tunnel to {target}: {exc}") from exc
        if status != 200:
            raise ConnectFailed(f"the proxy refused the tunnel to {target} (HTTP {status})")
        if reader.buffer:
            raise ConnectFailed(f"the proxy sent bytes of its own into the tunnel to {target}")

    # One exchange ---------------------------------------------------------------------------------

    def _exchange(
        self, connection: _Connection, headers: Sequence[tuple[str, str]], body: bytes, deadline: float
    ) -> tuple[Response, bool]:
        head = self._request_line + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        reader = connection.reader
        reader.deadline = deadline
        try:
            # sendall's timeout bounds the whole send; the reader checks the deadline on every recv.
            connection.sock.settimeout(_left(deadline))
            connection.sock.sendall(head.encode("latin-1") + body)
            status, version, response_headers = _read_head(reader)
            content, reusable = _read_body(reader, status, response_headers)
        except TimeoutError as exc:
            raise ExchangeTimeout("the deadline passed before the answer was complete") from exc
        except OSError as exc:  # resets, broken pipes, TLS errors
            raise ConnectionLost(f"the connection to {self.origin.authority} broke: {exc}") from exc
        content = _decoded(content, response_headers.get("content-encoding", ""))
        options = {token.strip() for token in response_headers.get("connection", "").lower().split(",")}
        persistent = "close" not in options and (version == "HTTP/1.1" or "keep-alive" in options)
        # Bytes after the answer mean the framing and the server disagree: start afresh.
        return Response(status, response_headers, content), reusable and persistent and not reader.buffer


def _left(deadline: float) -> float:
    """Time left to `deadline`, as a socket timeout: never zero, which would mean non-blocking."""
    return max(deadline - time.monotonic(), 0.001)


def _read_head(reader: _Reader) -> tuple[int, str, dict[str, str]]:
    """The final answer's status, version and headers, past any interim (1xx) answers."""
    budget = MAX_HEAD_BYTES
    for _ in range(MAX_INTERIM_ANSWERS + 1):
        status, version, headers, budget = _read_one_head(reader, budget)
        if not 100 <= status < 200:
            return status, version, headers
    raise MalformedResponse(f"more than {MAX_INTERIM_ANSWERS} interim answers")


def _read_one_head(reader: _Reader, budget: int) -> tuple[int, str, dict[str, str], int]:
    line = _head_line(reader, budget, first=True)
    budget -= len(line)
    parts = line.rstrip(b"\r\n").split(None, 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not _STATUS.fullmatch(parts[1]):
        raise MalformedResponse(f"not an HTTP/1.x status line: {line[:80]!r}")
    version, status = parts[0].decode("ascii"), int(parts[1])
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES + 1):
        line = _head_line(reader, budget)
        budget -= len(line)
        if line in (b"\r\n", b"\n"):
            return status, version, headers, budget
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise MalformedResponse(f"not a header line: {line[:80]!r}")
        key, text = name.lower().decode("latin-1"), value.strip().decode("latin-1")
        if key in _FRAMING and key in headers:
            if key == "content-length" and headers[key] != text:
                raise MalformedResponse("the answer has two different Content-Length headers")
            text = f"{headers[key]}, {text}" if key == "transfer-encoding" else text
        headers[key] = text
    raise MalformedResponse("the answer has too many header lines")


def _head_line(reader: _Reader, budget: int, *, first: bool = False) -> bytes:
    line = reader.readline(budget + 1)
    if line.endswith(b"\n"):
        return line
    if len(line) > budget:
        raise MalformedResponse("the answer's headers are too large")
    if first and not line:
        raise ConnectionLost("the server closed the connection without answering")
    raise ConnectionLost("the connection closed inside the answer's headers")


def _read_body(reader: _Reader, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body, and whether the connection can carry another exchange after it."""
    if status in _NO_BODY_STATUSES:
        return b"", True
    transfer = headers.get("transfer-encoding")
    if transfer is not None:
        # Only chunked alone: a coding under it (gzip, chunked) would come back still encoded.
        if [c.strip() for c in transfer.lower().split(",")] != ["chunked"]:
            raise MalformedResponse(f"cannot read Transfer-Encoding {transfer[:40]!r}")
        # With both Transfer-Encoding and Content-Length, the chunks win, and the connection
        # is closed after: the two disagree about where the next answer starts (RFC 9112 6.3).
        return _read_chunked(reader), "content-length" not in headers
    length = headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            raise MalformedResponse(f"bad Content-Length {length[:20]!r}")
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise MalformedResponse(f"an answer of {size} bytes is too large")
        content = reader.read(size)
        if len(content) != size:
            raise ConnectionLost(f"the connection closed after {len(content)} of {size} body bytes")
        return content, True
    content = reader.read_to_end(MAX_BODY_BYTES)
    if len(content) > MAX_BODY_BYTES:
        raise MalformedResponse("the answer is too large")
    return content, False


def _read_chunked(reader: _Reader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = reader.readline(1024)
        if not line.endswith(b"\n"):
            if len(line) >= 1024:
                raise MalformedResponse("a chunk-size line is too long")
            raise ConnectionLost("the connection closed inside a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise MalformedResponse(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(MAX_HEADER_LINES + 1):
                trailer = reader.readline(MAX_HEAD_BYTES)
                if trailer in (b"\r\n", b"\n"):
                    return b"".join(chunks)  # trailers: nothing of Encord's travels in them
                if not trailer.endswith(b"\n"):
                    raise ConnectionLost("the connection closed inside a chunked body's trailers")
            raise MalformedResponse("a chunked body has too many trailer lines")
        total += size
        if total > MAX_BODY_BYTES:
            raise MalformedResponse("the answer is too large")
        chunk = reader.read(size + 2)
        if len(chunk) != size + 2:
            raise ConnectionLost("the connection closed inside a chunk")
        if chunk[size:] != b"\r\n":
            raise MalformedResponse("a chunk is longer than its size says")
        chunks.append(chunk[:size])


def _decoded(content: bytes, encoding: str) -> bytes:
    """The body with its Content-Encoding (gzip or deflate, as the SDK's requests accepts) undone."""
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity" or not content:
        return content
    if encoding in ("gzip", "x-gzip"):
        return _inflate(content, 16 + zlib.MAX_WBITS, encoding)
    if encoding == "deflate":
        try:
            return _inflate(content, zlib.MAX_WBITS, encoding)
        except _Undecodable:
            return _inflate(content, -zlib.MAX_WBITS, encoding)  # raw deflate, as some servers send
    raise MalformedResponse(f"the answer has an unknown Content-Encoding {encoding[:20]!r}")


class _Undecodable(MalformedResponse):
    """Not data in the format tried (as opposed to too much of it)."""


def _inflate(content: bytes, wbits: int, encoding: str) -> bytes:
    """Decodes the body, member after member for gzip (RFC 1952 allows several), within the limit."""
    parts: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(content, MAX_BODY_BYTES + 1 - size)
        except zlib.error as exc:
            raise _Undecodable(f"the answer's {encoding} body does not decode") from exc
        size += len(data)
        if size > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise MalformedResponse(
                f"the answer's {encoding} body decodes to more than {MAX_BODY_BYTES} bytes"
            )
        if not inflater.eof:
            raise MalformedResponse(f"the answer's {encoding} body is truncated")
        parts.append(data)
        content = inflater.unused_data
        if not content:
            return b"".join(parts)
        if wbits != 16 + zlib.MAX_WBITS:
            raise MalformedResponse(f"the answer's {encoding} body has bytes after its end")
