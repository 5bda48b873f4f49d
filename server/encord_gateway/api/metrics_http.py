"""The /metrics HTTP server: one thread for every connection, a cap on connections, idle ones dropped.

prometheus_client's own server spends a thread per connection and never times one out, so anyone who
reaches the port could pile up threads (300 idle connections: 309 threads) and slow every accept. Here
one thread multiplexes all connections with a selector, and a connection is idle until it has sent a
complete request head: an idle one is closed when its time runs out, and when the cap is reached a new
connection evicts the longest-idle one, so a scrape always gets in, however many idle sockets are open.
Only the response being written keeps a connection busy; a page is rendered in the loop (a few ms).
"""

from __future__ import annotations

import contextlib
import gzip
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "DEFAULT_MAX_CONNECTIONS", "MetricsHttpServer", "Page"]

DEFAULT_MAX_CONNECTIONS = 32
# Prometheus scrapes take well under a second; its default scrape timeout is 10 s.
DEFAULT_IDLE_TIMEOUT_S = 10.0
MAX_REQUEST_HEAD_BYTES = 8192
ACCEPT_BATCH = 64
PATHS = frozenset({"/metrics", "/"})
# (body, content type) for the request's Accept header.
Page = Callable[[str], tuple[bytes, str]]


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    deadline: float  # closed when reached: the request head must be complete, or the answer sent, by then
    idle_since: float  # eviction picks the smallest
    inbox: bytearray = field(default_factory=bytearray)
    outbox: memoryview = field(default_factory=lambda: memoryview(b""))
    close_when_sent: bool = False

    @property
    def busy(self) -> bool:
        return len(self.outbox) > 0


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    keep_alive: bool
    headers: dict[str, str]
    has_body: bool


def _parse_head(head: bytes) -> _Request | None:
    """The request line and headers, or None when they are not HTTP/1.x."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    return _Request(method, target.split("?", 1)[0], keep_alive, headers, has_body)


def _response(
    status: str, body: bytes, content_type: str, *, keep_alive: bool, gzipped: bool = False
) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    if gzipped:
        head.append("Content-Encoding: gzip")
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _error(status: str) -> bytes:
    return _response(status, status.encode() + b"\n", "text/plain; charset=utf-8", keep_alive=False)


class MetricsHttpServer:
    """Binds at construction (OSError if it cannot), serves from `start()` until `close()`."""

    def __init__(
        self,
        host: str,
        port: int,
        page: Page,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not 0 < idle_timeout_s < float("inf"):
            raise ValueError("idle_timeout_s must be a positive number of seconds")
        self._page = page
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._listener = socket.socket(family, kind, proto)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(sockaddr)
            self._listener.listen(socket.SOMAXCONN)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._connections: dict[socket.socket, _Connection] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stops the loop and closes every socket; safe to call more than once."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        if self._thread.is_alive():
            self._thread.join(5)
        for conn in list(self._connections.values()):
            self._drop(conn)
        for sock in (self._listener, self._wake_read, self._wake_write):
            sock.close()
        self._selector.close()

    def close_inherited(self) -> None:
        """In a process forked from the one serving: closes this copy of the sockets, and nothing else.

        The loop's thread did not come along, and the parent's loop goes on serving.
        """
        for sock in (self._listener, self._wake_read, self._wake_write, *self._connections):
            sock.close()
        self._connections.clear()
        self._selector.close()

    # The loop ---------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            timeout = min((c.deadline for c in self._connections.values()), default=now + 60.0) - now
            for key, events in self._selector.select(max(0.0, timeout)):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is self._wake_read:
                    with contextlib.suppress(OSError):
                        self._wake_read.recv(64)
                elif key.data.sock in self._connections:  # not dropped earlier in this round
                    self._on_ready(key.data, events)
            now = time.monotonic()
            for conn in [c for c in self._connections.values() if c.deadline <= now]:
                self._drop(conn)

    def _accept(self) -> None:
        # A bounded batch, so that a flood of connections cannot starve the reads of those accepted.
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:
                # Out of file descriptors: give back an idle one if there is one, else pause a little
                # rather than spin on a listener that stays readable.
                if not self._evict_one():
                    time.sleep(0.05)
                return
            if len(self._connections) >= self._max_connections and not self._evict_one():
                sock.close()  # every slot is writing an answer: refuse rather than queue
                continue
            sock.setblocking(False)
            now = time.monotonic()
            conn = _Connection(sock, deadline=now + self._idle_timeout_s, idle_since=now)
            self._connections[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict_one(self) -> bool:
        idle = [c for c in self._connections.values() if not c.busy]
        if not idle:
            return False
        self._drop(min(idle, key=lambda c: c.idle_since))
        return True

    def _drop(self, conn: _Connection) -> None:
        self._connections.pop(conn.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _on_ready(self, conn: _Connection, events: int) -> None:
        try:
            if events & selectors.EVENT_WRITE:
                self._flush(conn)
            elif events & selectors.EVENT_READ:
                data = conn.sock.recv(65536)
                if not data:
                    self._drop(conn)
                    return
                conn.inbox += data
                self._answer_waiting(conn)
        except OSError:
            self._drop(conn)

    def _answer_waiting(self, conn: _Connection) -> None:
        """Answers the request at the head of the inbox, if it is complete; one at a time."""
        end = conn.inbox.find(b"\r\n\r\n", 0, MAX_REQUEST_HEAD_BYTES + 4)
        if end < 0:
            if len(conn.inbox) >= MAX_REQUEST_HEAD_BYTES + 4:
                self._send(conn, _error("431 Request Header Fields Too Large"), close=True)
            return
        head = bytes(conn.inbox[:end])
        del conn.inbox[: end + 4]
        request = _parse_head(head)
        if request is None:
            self._send(conn, _error("400 Bad Request"), close=True)
        elif request.method not in ("GET", "HEAD"):
            self._send(conn, _error("405 Method Not Allowed"), close=True)
        elif request.has_body:  # not read: close rather than take it for the next request
            self._send(conn, _error("400 Bad Request"), close=True)
        elif request.path not in PATHS:
            self._send(conn, _error("404 Not Found"), close=True)
        else:
            try:
                body, content_type = self._page(request.headers.get("accept", ""))
            except Exception:  # a collector failed: the scraper sees a 500, the loop goes on
                self._send(conn, _error("500 Internal Server Error"), close=True)
                return
            gzipped = "gzip" in request.headers.get("accept-encoding", "").lower()
            if gzipped:
                body = gzip.compress(body, compresslevel=1)
            answer = _response("200 OK", body, content_type, keep_alive=request.keep_alive, gzipped=gzipped)
            if request.method == "HEAD":
                answer = answer[: len(answer) - len(body)]
            self._send(conn, answer, close=not request.keep_alive)

    def _send(self, conn: _Connection, answer: bytes, *, close: bool) -> None:
        conn.outbox = memoryview(answer)
        conn.close_when_sent = close
        conn.deadline = time.monotonic() + self._idle_timeout_s  # the time a reader has to take it
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except BlockingIOError:
            return
        conn.outbox = conn.outbox[sent:]
        if conn.busy:
            return
        if conn.close_when_sent:
            self._drop(conn)
            return
        now = time.monotonic()
        conn.deadline, conn.idle_since = now + self._idle_timeout_s, now
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        self._answer_waiting(conn)  # a pipelined request may be waiting already
