"""Http1Client: POSTs to one origin over a bounded pool of keep-alive connections, a deadline on each."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from encord_gateway.upstream.http1.decoding import decoded
from encord_gateway.upstream.http1.errors import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    ExchangeTimeout,
    HttpError,
)
from encord_gateway.upstream.http1.framing import (
    Clock,
    Reader,
    Response,
    read_body,
    read_head,
    socket_timeout,
)
from encord_gateway.upstream.http1.origin import Origin
from encord_gateway.upstream.http1.proxy import Proxy, open_tunnel

# Load balancers close idle keep-alive connections after 60 s or more; a connection idle
# for longer than this is not reused, so a request is rarely sent on one being closed.
MAX_IDLE_S = 30.0


class _Connection:
    """One socket and its reader; used by one exchange at a time."""

    def __init__(self, sock: socket.socket, clock: Clock) -> None:
        self.sock = sock
        self.reader = Reader(sock, clock)
        self.idle_since = 0.0

    def close(self) -> None:
        self.sock.close()

    def reusable(self, now: float) -> bool:
        """Not idle for too long, and nothing to read: an idle connection that is readable was closed."""
        if now - self.idle_since > MAX_IDLE_S or self.reader.buffer:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        # A zero-timeout poll: a FIN, a RST or bytes the server sent unasked (a 408 before it hangs
        # up) all make an idle socket readable, and such a connection is dropped before it is used.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False


class Http1Client:
    """POSTs to one origin over a bounded set of reusable connections; thread-safe.

    It sends what it is given, byte for byte, reads one answer, and never repeats
    a request: whether a call may be asked again is the caller's decision. `clock`
    is what deadlines and idle ages are measured on (time.monotonic; a test's fake).
    """

    def __init__(
        self,
        url: str,
        *,
        max_idle: int,
        connect_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
        clock: Clock = time.monotonic,
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
        self._clock = clock
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
        """Sends one request and reads its answer by `deadline` (on the client's clock); never repeats it.

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
        now = self._clock()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if connection.reusable(now):
                return connection
            connection.close()

    def _give_back(self, connection: _Connection) -> None:
        connection.idle_since = self._clock()
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def _left(self, deadline: float) -> float:
        return socket_timeout(deadline, self._clock())

    def _connect(self, deadline: float) -> _Connection:
        first_hop = self._proxy.origin if self._proxy else self.origin
        # Connecting and the handshakes get the connect timeout, and never more than the deadline.
        setup_deadline = min(deadline, self._clock() + self._connect_timeout_s)
        try:
            sock = socket.create_connection(
                (first_hop.host, first_hop.port), timeout=self._left(setup_deadline)
            )
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting to {first_hop.authority} timed out") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {first_hop.authority}: {exc.strerror or exc}") from exc
        step = "the connection"
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._proxy is not None and self.origin.scheme == "https":
                step = "the proxy's tunnel"
                open_tunnel(sock, self._proxy, self.origin, setup_deadline, self._clock)
            if self._ssl_context is not None:
                step = "the TLS handshake"
                sock.settimeout(self._left(setup_deadline))
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
        return _Connection(sock, self._clock)

    # One exchange ---------------------------------------------------------------------------------

    def _exchange(
        self, connection: _Connection, headers: Sequence[tuple[str, str]], body: bytes, deadline: float
    ) -> tuple[Response, bool]:
        head = self._request_line + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        reader = connection.reader
        reader.deadline = deadline
        try:
            # sendall's timeout bounds the whole send; the reader checks the deadline on every recv.
            connection.sock.settimeout(self._left(deadline))
            connection.sock.sendall(head.encode("latin-1") + body)
            status, version, response_headers = read_head(reader)
            content, reusable = read_body(reader, status, response_headers)
        except TimeoutError as exc:
            raise ExchangeTimeout("the deadline passed before the answer was complete") from exc
        except OSError as exc:  # resets, broken pipes, TLS errors
            raise ConnectionLost(f"the connection to {self.origin.authority} broke: {exc}") from exc
        content = decoded(content, response_headers.get("content-encoding", ""))
        options = {token.strip() for token in response_headers.get("connection", "").lower().split(",")}
        persistent = "close" not in options and (version == "HTTP/1.1" or "keep-alive" in options)
        # Bytes after the answer mean the framing and the server disagree: start afresh.
        return Response(status, response_headers, content), reusable and persistent and not reader.buffer
