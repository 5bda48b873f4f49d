"""A tiny HTTP server that records every request and answers with canned Encord envelopes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def header_names(self) -> list[str]:
        return [name for name, _ in self.headers]

    def header(self, name: str) -> str:
        return next(v for n, v in self.headers if n.lower() == name.lower())

    @property
    def query(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


# Given the parsed body, returns (HTTP status, response body bytes).
Answer = Callable[[dict[str, Any]], tuple[int, bytes]]


def envelope(response: Any) -> bytes:
    return json.dumps({"status": 200, "response": response}).encode()


@contextmanager
def recording_server(answer: Answer) -> Iterator[tuple[str, list[Recorded]]]:
    """Yields (base URL, the list every request is appended to)."""
    seen: list[Recorded] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(Recorded(self.path, list(self.headers.items()), body))
            try:
                status, payload = answer(json.loads(body))
            except Exception as exc:  # the test's own answer function failed
                status, payload = 500, str(exc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
