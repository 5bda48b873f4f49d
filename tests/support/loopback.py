"""Loopback test servers: a thread per connection running a handler on exact wire bytes; a CONNECT proxy."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable

USER_PATH = "/public/user"


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

    def url(self, path: str = USER_PATH) -> str:
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


def head_fields(head: bytes) -> tuple[str, dict[str, str]]:
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
        request_line, fields = head_fields(head)
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
