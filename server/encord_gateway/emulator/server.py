"""The HTTP/1.1 server: routing, fault injection, one-write responses and request logs (bodies: body.py)."""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import json
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from encord_gateway.emulator import errors as e
from encord_gateway.emulator.admin import ADMIN_PREFIX, Admin
from encord_gateway.emulator.api import KeyApi, UserApi, parse_json, query_of, to_call
from encord_gateway.emulator.body import BodyError, ClientGone, read_body
from encord_gateway.emulator.faults import FaultInjector, FaultKind
from encord_gateway.emulator.stats import Stats
from encord_gateway.emulator.store import StoreClosed

USER_PATH = "/public/user"
KEY_PATH = "/public"
IDLE_TIMEOUT_S = 120.0
SERVER_NAME = "encord-emulator"
UNAVAILABLE_BODY = b"Service Unavailable (encord-gateway emulator fault injection)\n"
# What a draining server answers: nothing of the request was processed, so a client may send it again.
SHUTTING_DOWN_BODY = b"Service Unavailable (the encord-gateway emulator is shutting down)\n"
GARBAGE_BODY = b"<html><head><title>502 Bad Gateway</title></head><body>upstream hiccup</body></html>\n"
TRACE_HEADER = "X-Cloud-Trace-Context"
_TRACE = re.compile(r"^[0-9a-fA-F]{1,64}(/[0-9]{1,20})?(;o=[01])?$")
_LOG_SAFE = re.compile(r"[^A-Za-z0-9_./\-]")


def is_loopback(host: str) -> bool:
    """Whether a peer address is this host's loopback: 127.0.0.0/8, ::1, or 127.x mapped into IPv6.

    Parsed, not prefix-matched: "::1:2:3:4:5:6", "::1.2.3.4" and "::10.0.0.1" all start with "::1".
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True)
class Behaviour:
    mirror_status: bool = False  # the JSON status in the HTTP status line of error answers
    quiet: bool = False  # no per-request log lines (benchmarks)
    admin_any_host: bool = False  # admin endpoints answer non-loopback peers too


def _safe(value: str | None, limit: int = 48) -> str:
    # Query types come from the caller: keep log lines one line and free of control characters.
    return "-" if value is None else _LOG_SAFE.sub("?", value[:limit]) or "''"


@functools.lru_cache(maxsize=64)
def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    # email.utils.formatdate is a measurable part of an answer's cost; it changes once a second.
    return email.utils.formatdate(second, usegmt=True)


class Logger:
    """One line per event to stderr; lines from concurrent threads never interleave."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class EmulatorServer(ThreadingHTTPServer):
    """A thread per connection; keep-alive connections keep their thread until idle or closed."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up shutdown
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        user_api: UserApi,
        key_api: KeyApi,
        admin: Admin,
        faults: FaultInjector,
        stats: Stats,
        behaviour: Behaviour,
        log: Callable[[str], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.user_api = user_api
        self.key_api = key_api
        self.admin = admin
        self.faults = faults
        self.stats = stats
        self.behaviour = behaviour
        self.log = log
        self.tls = tls
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a slow or broken
        # client never holds up accept() for everybody else.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(IDLE_TIMEOUT_S)  # a client that never says hello must not keep its thread
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.log(f"tls handshake failed peer={client_address[0]} error={type(exc).__name__}")
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            self.shutdown_request(wrapped)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # One line, no traceback: a traceback could carry request data into the log.
        exc = sys.exc_info()[1]
        self.log(f"connection error peer={client_address[0]} error={type(exc).__name__}")

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, and every answer goes out in one write: a keep-alive client never waits
    # for a delayed ACK between a header segment and a body segment.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S
    server_version = SERVER_NAME
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        self.server.stats.count_connection()

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, oversized headers): a status line and
        # a short JSON body, instead of an HTML page, or a bare body for what looked like HTTP/0.9.
        self.close_connection = True
        text = message or HTTPStatus(code).phrase
        self.log_message("%d %s", code, text)
        self._send(code, json.dumps({"error": text}).encode())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _dispatch logs its own line, with the query type and the outcome

    def log_message(self, format: str, *args: Any) -> None:
        # Only http.server's own protocol errors (bad request line, oversized headers) get here.
        text = "".join(c if c.isprintable() else "?" for c in format % args)[:200]
        self.server.log(f"http error peer={self.client_address[0]} {text}")

    def _dispatch(self) -> None:
        start = time.perf_counter()
        path = self.path.split("?", 1)[0]
        query: tuple[str | None, str | None] = (None, None)
        try:
            if path.startswith(ADMIN_PREFIX):
                outcome = self._admin(path)
            elif path in (USER_PATH, KEY_PATH) and self.command == "POST":
                outcome, query = self._api(path)
            else:
                self._discard_body()
                is_api = path in (USER_PATH, KEY_PATH)
                code = e.METHOD_NOT_ALLOWED_ERROR if is_api else e.RESOURCE_NOT_FOUND_ERROR
                # Not an API call: the status line always says what happened.
                self._send_json(
                    e.status_for(code), e.envelope(code, e.MSG_USE_POST if is_api else e.MSG_NOT_FOUND_PATH)
                )
                outcome = code
        except ClientGone:
            self.close_connection = True
            outcome = "client_gone"
        if not self.server.behaviour.quiet:
            duration_ms = (time.perf_counter() - start) * 1000
            self.server.log(
                f"{self.command} {_safe(path, 64)} query_type={_safe(query[0])} "
                f"query_method={_safe(query[1], 8)} outcome={outcome} duration_ms={duration_ms:.1f}"
            )

    def _api(self, path: str) -> tuple[str, tuple[str | None, str | None]]:
        try:
            body = read_body(self.headers, self.rfile)
        except BodyError as exc:
            self.close_connection = True  # the rest of the body is still on the wire
            self._send_error(e.EncordError(e.INVALID_ARGUMENTS_ERROR, exc.message, status=exc.status))
            self.server.stats.count(None, None, e.INVALID_ARGUMENTS_ERROR)
            return e.INVALID_ARGUMENTS_ERROR, (None, None)
        document = parse_json(body)
        query = query_of(document)
        outcome = self._answer(path, body, document, query)
        self.server.stats.count(*query, outcome)
        return outcome, query

    def _answer(self, path: str, body: bytes, document: Any, query: tuple[str | None, str | None]) -> str:
        """Sends the answer to one API call and returns its outcome."""
        decision = self.server.faults.decide(*query)
        if decision.latency_s:
            time.sleep(decision.latency_s)
        # A faulted call is never processed: no key is stored for an answer the client never saw.
        if decision.kind is FaultKind.DROP:
            self.close_connection = True
            return str(decision.kind.value)
        if decision.kind is FaultKind.UNAVAILABLE:
            self._send(503, UNAVAILABLE_BODY, "text/plain; charset=utf-8")
            return str(decision.kind.value)
        if decision.kind is FaultKind.GARBAGE:
            self._send(200, GARBAGE_BODY, "text/html; charset=utf-8")
            return str(decision.kind.value)
        forced = decision.settings
        if decision.kind is FaultKind.FORCED and forced.force_error is not None:
            code = forced.force_error
            self._send_error(
                e.EncordError(code, forced.force_error_payload, http_status=forced.force_error_status)
            )
            return f"{decision.kind.value}:{_safe(code)}"
        try:
            if path == USER_PATH:
                email = self.server.user_api.authenticate(self.headers.get("Authorization"), body)
                value = self.server.user_api.handle(email, to_call(document))
            else:
                key = self.server.key_api.authenticate(
                    self.headers.get("Authorization"), self.headers.get("ResourceID")
                )
                value = self.server.key_api.handle(key, to_call(document))
        except e.EncordError as err:
            self._send_error(err)
            return err.code
        except StoreClosed:
            # Shutdown closed the store before this call touched it: nothing was stored, and the answer
            # says so (a 503, as a draining server sends), not an Encord error a client must not retry.
            self.close_connection = True
            self._send(503, SHUTTING_DOWN_BODY, "text/plain; charset=utf-8")
            return "shutting_down"
        except Exception as exc:
            # A bug: still Encord's envelope, never a stack trace.
            self.server.log(f"internal error in {_safe(query[0])}: {type(exc).__name__}")
            self._send_error(e.EncordError(e.UNKNOWN_ERROR, e.MSG_INTERNAL))
            return e.UNKNOWN_ERROR
        self._send(200, e.success(value))
        return "ok"

    def _admin(self, path: str) -> str:
        try:
            body = read_body(self.headers, self.rfile)
        except BodyError as exc:
            self.close_connection = True
            self._send_json(exc.status, {"error": exc.message})
            return "admin_error"
        if not self.server.behaviour.admin_any_host and not is_loopback(str(self.client_address[0])):
            self._send_json(403, {"error": "admin endpoints answer loopback clients only"})
            return "admin_forbidden"
        status, value = self.server.admin.handle(self.command, path, body)
        self._send_json(status, value)
        return "admin" if status == 200 else "admin_error"

    def _discard_body(self) -> None:
        try:
            read_body(self.headers, self.rfile)
        except BodyError:
            self.close_connection = True

    def _send_error(self, err: e.EncordError) -> None:
        # Encord answers errors with HTTP 200 and the status in the JSON, unless told to mirror it.
        status = err.status if self.server.behaviour.mirror_status else 200
        if err.http_status is not None:
            status = err.http_status
        self._send_json(status, err.envelope())

    def _send_json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode())

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        head = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Server: {SERVER_NAME}",
            f"Date: {_http_date(int(time.time()))}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        # No headers yet when http.server refuses a malformed request line.
        trace = self.headers.get(TRACE_HEADER) if getattr(self, "headers", None) else None
        if trace and _TRACE.match(trace):
            head.append(f"{TRACE_HEADER}: {trace}")
        if self.close_connection:
            head.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            # The client gave up (a deadline shorter than --latency-ms): the call still counts
            # and is logged with its outcome, as Encord would have processed it too.
            self.close_connection = True
