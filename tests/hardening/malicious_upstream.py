"""A hostile stand-in for Encord: huge, endless, slow, compressed, deep, surrogate-laden, odd answers.

It speaks just enough HTTP/1.1 to read the gateway's signed POST, then answers in the mode set for the
call's trace id (the gateway forwards it as X-Cloud-Trace-Context): like Encord when none is set, else
with one of the answers in MODES. Each answer is recorded with its trace id, so a test can tell which of
its calls met a hostile answer and which were answered honestly.
"""

from __future__ import annotations

import gzip
import json
import secrets
import socket
import socketserver
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

PROJECT_SCOPES = [
    "label.read",
    "label.write",
    "model.inference",
    "model.train",
    "label_logs.read",
    "algo.library",
]
DATASET_SCOPES = ["dataset.read", "dataset.write"]
MIB = 1024 * 1024


class Op(Enum):
    """The four Encord calls the gateway makes: (query_type, query_method)."""

    _value_: tuple[str, str]
    PROJECT_CREATE = ("projectapikey", "POST")
    PROJECT_LIST = ("projectapikey", "GET")
    DATASET_CREATE = ("datasetapikey", "POST")
    DATASET_LIST = ("datasetapikey", "GET")

    @property
    def creates(self) -> bool:
        return self.value[1] == "POST"

    @property
    def dataset(self) -> bool:
        return self.value[0] == "datasetapikey"


@dataclass(frozen=True)
class Reply:
    """Raw bytes to write, part by part, with a pause before each part after the first."""

    parts: Iterable[bytes]
    pause_s: float = 0.0
    framed: bool = False  # a whole, well-framed answer: the connection can carry the next one


@dataclass(frozen=True)
class Expect:
    """What a caller may see when a call met this answer: codes, and the reasons allowed with them."""

    codes: frozenset[str]
    reasons: frozenset[str] | None = None  # None: any reason


BAD = Expect(frozenset({"UNAVAILABLE"}), frozenset({"UPSTREAM_BAD_RESPONSE"}))
BROKEN = Expect(frozenset({"UNAVAILABLE"}), frozenset({"UPSTREAM_BAD_RESPONSE", "UPSTREAM_CONNECTION_ERROR"}))
ACCEPTED = Expect(frozenset({"OK"}))
SLOW = Expect(
    frozenset({"DEADLINE_EXCEEDED", "UNAVAILABLE"}), frozenset({"DEADLINE_EXCEEDED", "UPSTREAM_TIMEOUT"})
)


@dataclass(frozen=True)
class Mode:
    """One hostile answer: `answer` gives the Reply for an operation, or None to answer it honestly."""

    name: str
    answer: Callable[[Op], Reply | None]
    expect: Expect = BAD
    slow: bool = False  # held until the caller's deadline: the test gives such calls a short one


# Honest answers -------------------------------------------------------------------------------------


def new_key() -> str:
    return secrets.token_urlsafe(30)


def project_key(api_key: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "api_key": new_key() if api_key is None else api_key,
        "title": "a key",
        "scopes": ["label.read"],
        **fields,
    }


def dataset_key(api_key: str | None = None, **fields: Any) -> dict[str, Any]:
    base = {
        "resource_hash": str(uuid.uuid4()),
        "api_key": new_key() if api_key is None else api_key,
        "title": "a key",
        "key_hash": str(uuid.uuid4()),
        "scopes": ["dataset.read"],
    }
    return {**base, **fields}


def honest_value(op: Op) -> Any:
    """What Encord answers: a key string, a dataset key object, or a list of one key."""
    if op is Op.PROJECT_CREATE:
        return new_key()
    if op is Op.DATASET_CREATE:
        return dataset_key(scopes=DATASET_SCOPES)
    return [dataset_key() if op.dataset else project_key()]


def http(body: bytes, *, status: int = 200, headers: Iterable[str] = ()) -> Reply:
    """A well-framed HTTP/1.1 answer carrying `body`."""
    head = [
        f"HTTP/1.1 {status} X",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return Reply([("\r\n".join(head) + "\r\n\r\n").encode() + body], framed=True)


def envelope(value: Any, status: int = 200) -> bytes:
    """Encord's envelope; json.dumps writes a lone surrogate as its \\uXXXX escape."""
    return json.dumps({"status": status, "response": value}).encode()


def error(codes: Any, *, status: int = 400, payload: Any = None) -> bytes:
    return json.dumps({"status": status, "response": codes, "payload": payload}).encode()


# Hostile answers ------------------------------------------------------------------------------------


def _cached(build: Callable[[], bytes]) -> Callable[[], bytes]:
    """Big bodies are built once, on first use."""
    made: list[bytes] = []
    lock = threading.Lock()

    def get() -> bytes:
        with lock:
            if not made:
                made.append(build())
            return made[0]

    return get


def empty_lists(count: int) -> bytes:
    """`{"status": 200, "response": [[], [], ...]}`: the fewest bytes per object (3)."""
    return b'{"status": 200, "response": [' + b"[]," * (count - 1) + b"[]]}"


def short_strings(count: int) -> bytes:
    """A list of two-letter strings: a new object every five bytes."""
    return b'{"status": 200, "response": [' + b'"ab",' * (count - 1) + b'"ab"]}'


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


LISTS_32MIB = _cached(lambda: empty_lists(32 * MIB // 3))
LISTS_900K = _cached(lambda: empty_lists(300_000))
STRINGS_900K = _cached(lambda: short_strings(180_000))
# As many objects as the gateway's bound on values lets through (100,000 `[{,:`): parsed, then refused.
LISTS_AT_THE_BOUND = _cached(lambda: empty_lists(49_990))
STRINGS_AT_THE_BOUND = _cached(lambda: short_strings(99_990))
LISTS_32MIB_CHUNKED = _cached(lambda: _chunked(LISTS_32MIB()))
GZIP_BOMB = _cached(lambda: gzip.compress(empty_lists(64 * MIB // 3), compresslevel=9))
DEFLATE_BOMB = _cached(lambda: zlib.compress(b"[]," * (16 * MIB), 9))


def every(reply: Callable[[], Reply]) -> Callable[[Op], Reply]:
    """The same hostile answer to every operation."""
    return lambda op: reply()


def shaped(value: Callable[[Op], Any]) -> Callable[[Op], Reply]:
    """An envelope around `value(op)` for every operation."""
    return lambda op: http(envelope(value(op)))


def key_with(**fields: Any) -> Callable[[Op], Any]:
    """Every answer carries a key with these fields (a project create answers the bare key string)."""

    def value(op: Op) -> Any:
        key = dataset_key(**fields) if op.dataset else project_key(**fields)
        if op is Op.PROJECT_CREATE:
            return key["api_key"]
        return key if op is Op.DATASET_CREATE else [key]

    return value


def lists_only(value: Callable[[Op], Any]) -> Callable[[Op], Reply | None]:
    """Hostile answers to lists and dataset creates (which carry key objects); honest project creates."""
    return lambda op: None if op is Op.PROJECT_CREATE else http(envelope(value(op)))


def many_keys_with_unknown_scopes(op: Op) -> Any:
    """1,000 keys (one for a dataset create), each with 40 scopes no gateway knows, some not printable."""
    keys = [
        (dataset_key if op.dataset else project_key)(
            scopes=["label.read", "dataset.read", "\x1b[2J\r\n", *names]
        )
        for names in ([f"new.scope.{n}.{i}" for i in range(40)] for n in range(1_000))
    ]
    return keys[0] if op is Op.DATASET_CREATE else keys


def datasets_only(value: Callable[[Op], Any]) -> Callable[[Op], Reply | None]:
    """Hostile answers to the dataset calls (for fields only a dataset key has); honest project ones."""
    return lambda op: http(envelope(value(op))) if op.dataset else None


def raw_surrogate_key(op: Op) -> Reply:
    """A key whose UTF-8 bytes encode a surrogate (ED A0 80): json.loads(bytes) lets it through."""
    key = b'"\xed\xa0\x80' + new_key().encode() + b'"'
    if op is Op.PROJECT_CREATE:
        return http(b'{"status": 200, "response": ' + key + b"}")
    obj = b'{"resource_hash": "%s", "api_key": %s, "title": "t", "scopes": ["dataset.read"]}' % (
        str(uuid.uuid4()).encode(),
        key,
    )
    return http(
        b'{"status": 200, "response": ' + (obj if op is Op.DATASET_CREATE else b"[" + obj + b"]") + b"}"
    )


def streamed(head: bytes, chunk: bytes, *, pause_s: float = 0.0, limit: int = 512 * MIB) -> Reply:
    """`head`, then `chunk` again and again until the reader goes away (or `limit` bytes)."""

    def parts() -> Iterator[bytes]:
        yield head
        for _ in range(limit // len(chunk)):
            yield chunk

    return Reply(parts(), pause_s)


def chunked_forever() -> Reply:
    piece = b"[]," * 10_000
    return streamed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b'%x\r\n{"status": 200, "response": [\r\n' % 28,
        b"%x\r\n%s\r\n" % (len(piece), piece),
    )


def framed(head: str, body: bytes = b"") -> Reply:
    return Reply([head.encode() + body])


MODES: list[Mode] = [
    # Size: a declared size, a real one, and bodies that never end.
    Mode("declared-32gib", every(lambda: framed("HTTP/1.1 200 OK\r\nContent-Length: 34359738368\r\n\r\n"))),
    Mode("lists-32mib", every(lambda: http(LISTS_32MIB()))),
    Mode(
        "lists-32mib-chunked",
        every(lambda: framed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", LISTS_32MIB_CHUNKED())),
    ),
    Mode("lists-900k", every(lambda: http(LISTS_900K()))),
    Mode("strings-900k", every(lambda: http(STRINGS_900K()))),
    Mode("lists-at-the-bound", every(lambda: http(LISTS_AT_THE_BOUND()))),
    Mode("strings-at-the-bound", every(lambda: http(STRINGS_AT_THE_BOUND()))),
    Mode(
        "endless",
        every(lambda: streamed(b'HTTP/1.1 200 OK\r\n\r\n{"status": 200, "response": [', b"[]," * 10_000)),
    ),
    Mode("endless-chunked", every(chunked_forever)),
    Mode(
        "endless-headers",
        every(lambda: streamed(b"HTTP/1.1 200 OK\r\n", b"X-Padding: " + b"a" * 1000 + b"\r\n")),
        BROKEN,
    ),
    # Compressed: small on the wire, huge once decoded.
    Mode(
        "gzip-bomb",
        every(lambda: http(GZIP_BOMB(), headers=["Content-Encoding: gzip"])),
    ),
    Mode("deflate-bomb", every(lambda: http(DEFLATE_BOMB(), headers=["Content-Encoding: deflate"]))),
    Mode(
        "gzip-garbage", every(lambda: http(b"\x1f\x8b\x08\x00 not gzip", headers=["Content-Encoding: gzip"]))
    ),
    Mode("unknown-encoding", every(lambda: http(envelope([]), headers=["Content-Encoding: br"]))),
    # Slow: a byte at a time, until the caller's deadline.
    Mode(
        "slow-body",
        every(lambda: streamed(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"[", pause_s=0.2)),
        SLOW,
        slow=True,
    ),
    Mode("slow-head", every(lambda: streamed(b"HTTP/1.1 200 OK\r\n", b"X", pause_s=0.2)), SLOW, slow=True),
    Mode("silent", every(lambda: Reply([], pause_s=0.2)), SLOW, slow=True),
    # Deep: nesting that Python's json recurses into.
    Mode("deep-body", every(lambda: http(deep(100_000).encode()))),
    Mode("deep-response", shaped(lambda op: json.loads(deep(500)))),
    Mode(
        "deep-response-100k",
        every(lambda: http(b'{"status": 200, "response": ' + deep(100_000).encode() + b"}")),
    ),
    Mode("deep-scopes-string", lists_only(key_with(scopes=deep(100_000)))),
    Mode(
        "deep-error-payload",
        every(
            lambda: http(
                b'{"status": 400, "response": ["INVALID_ARGUMENTS_ERROR"], "payload": '
                + deep(100_000).encode()
                + b"}"
            )
        ),
    ),
    # Unicode: lone surrogates, escaped and raw; bytes that are not UTF-8.
    Mode("surrogate-key", shaped(key_with(api_key="\ud800" + new_key()))),
    Mode("surrogate-key-raw", raw_surrogate_key),
    Mode("surrogate-title", lists_only(key_with(title="a \udfff title"))),
    Mode("surrogate-scope", lists_only(key_with(scopes=["label.read", "\ud800"]))),
    Mode("surrogate-key-hash", lists_only(key_with(key_hash="\ud800"))),
    Mode("surrogate-code", every(lambda: http(error(["\ud800"])))),
    Mode(
        "surrogate-payload",
        every(lambda: http(error(["INVALID_ARGUMENTS_ERROR"], payload="bad \ud800 title"))),
    ),
    Mode("not-utf8", every(lambda: http(b'{"status": 200, "response": "\xff\xfe\xfd"}'))),
    # Encord's error codes: long, with line breaks, not codes at all, a key where a code should be.
    Mode("long-code", every(lambda: http(error(["A" * 500_000 + "_ERROR"])))),
    Mode("crlf-code", every(lambda: http(error(["BAD_ERROR\r\nX-Injected: yes"])))),
    Mode("lower-case-code", every(lambda: http(error(["not a code"])))),
    Mode("key-as-error", every(lambda: http(json.dumps({"status": 201, "response": KEY_AS_ERROR}).encode()))),
    Mode("key-in-code-list", every(lambda: http(error([KEY_AS_ERROR], status=201)))),
    Mode("error-object", every(lambda: http(error({"code": "RESOURCE_NOT_FOUND_ERROR"})))),
    Mode("error-empty-list", every(lambda: http(error([])))),
    Mode("error-no-response", every(lambda: http(b'{"status": 400}'))),
    Mode("error-many-codes", every(lambda: http(error(["UNKNOWN_ERROR"] * 100_000)))),
    # Shapes: many keys, many scopes, many values, odd statuses and types.
    Mode("many-keys", lists_only(lambda op: [project_key("k", title="t", scopes=[])] * 20_000)),
    Mode("many-unknown-scopes", lists_only(key_with(scopes=[f"s.{n}" for n in range(60_000)]))),
    # Scopes newer than the gateway are left out of the key, and logged: once per answer, bounded.
    Mode("unknown-scopes", lists_only(many_keys_with_unknown_scopes), ACCEPTED),
    Mode("many-values", every(lambda: http(b'{"status": 200, "response": [' + b"1," * 400_000 + b"1]}"))),
    Mode("huge-int", every(lambda: http(b'{"status": 200' + b"0" * 10_000 + b', "response": []}'))),
    Mode("nan-status", every(lambda: http(b'{"status": NaN, "response": ["UNKNOWN_ERROR"]}'))),
    Mode("string-status", every(lambda: http(b'{"status": "200", "response": []}'))),
    Mode("not-an-envelope", every(lambda: http(b'[{"status": 200}]'))),
    Mode("html", every(lambda: http(b"<html><body>Bad gateway</body></html>"))),
    Mode("wrong-types", lists_only(key_with(api_key=12345, title=None))),
    Mode("empty-key", shaped(key_with(api_key=""))),
    Mode("long-key", shaped(key_with(api_key="k" * 600_000))),
    Mode("long-title", lists_only(key_with(title="t" * 600_000))),
    Mode("control-key", shaped(key_with(api_key="abc\r\ndef\x00"))),
    Mode("object-resource-hash", datasets_only(key_with(resource_hash={"a": [1, 2]}))),
    # Framing.
    Mode("garbage-status-line", every(lambda: framed("HELLO THERE\r\n\r\n")), BROKEN),
    Mode("close-at-once", every(lambda: Reply([])), BROKEN),
    Mode(
        "short-body",
        every(lambda: framed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b'{"status"')),
        BROKEN,
    ),
    Mode(
        "two-lengths",
        every(lambda: framed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", b"[]")),
        BROKEN,
    ),
    Mode(
        "negative-length",
        every(lambda: framed("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", b"[]")),
        BROKEN,
    ),
    Mode(
        "bad-chunk",
        every(lambda: framed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\n[]\r\n")),
        BROKEN,
    ),
    Mode(
        "chunk-overrun",
        every(
            lambda: framed(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"2\r\n[]]]]\r\n0\r\n\r\n"
            )
        ),
        BROKEN,
    ),
    Mode("interim-flood", every(lambda: framed("HTTP/1.1 100 Continue\r\n\r\n" * 100)), BROKEN),
    Mode(
        "huge-header",
        every(lambda: framed("HTTP/1.1 200 OK\r\nX-Big: " + "a" * 200_000 + "\r\n\r\n")),
        BROKEN,
    ),
    Mode("many-headers", every(lambda: framed("HTTP/1.1 200 OK\r\n" + "X-A: b\r\n" * 5000 + "\r\n")), BROKEN),
    Mode(
        "trailing-bytes",
        every(lambda: framed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"[]HTTP/1.1 200 OK\r\n\r\n")),
    ),
]

# A string shaped like an API key, answered where an error code belongs; it must not be echoed anywhere.
KEY_AS_ERROR: str = "Kq7" + secrets.token_urlsafe(30)


def _chunked(body: bytes, size: int = 64 * 1024) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


# The server -----------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request the server answered: the trace id it carried, the operation, and whether it was hostile."""

    trace_id: str
    op: Op
    hostile: bool


@dataclass
class MaliciousUpstream:
    """Answers each POST in the mode set for its trace id (honestly when none is) and records what it did.

    Modes go by trace id, so that calls in different modes can run at the same time.
    """

    modes: dict[str, Mode] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    address: str = ""
    _server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> MaliciousUpstream:
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream._serve(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.address = f"127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, name="malicious-upstream", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def hostile_for(self, trace_id: str) -> list[bool]:
        """For each request of the call with this trace id: whether it got a hostile answer."""
        return [s.hostile for s in list(self.seen) if s.trace_id == trace_id]

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        buffer = b""
        try:
            while not self.stopping.is_set():
                request = _read_request(sock, buffer)
                if request is None:
                    return
                trace_id, op, buffer = request
                mode = self.modes.get(trace_id)
                reply = mode.answer(op) if mode is not None else None
                self.seen.append(Seen(trace_id, op, reply is not None))
                self._send(sock, reply or http(envelope(honest_value(op))))
                if reply is not None and not reply.framed:
                    return  # after an answer that is not framed, what would follow it is undefined
        except OSError:
            return  # the gateway hung up, as it should on most of these answers

    def _send(self, sock: socket.socket, reply: Reply) -> None:
        for n, part in enumerate(reply.parts):
            if self.stopping.is_set():
                return
            if n and reply.pause_s:
                time.sleep(reply.pause_s)
            if part:
                sock.sendall(part)
        if reply.pause_s:  # a slow answer never ends on its own: hold it until the gateway gives up
            while not self.stopping.is_set() and not _closed(sock):
                time.sleep(reply.pause_s)


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    finally:
        sock.settimeout(30)


def _read_request(sock: socket.socket, buffer: bytes) -> tuple[str, Op, bytes] | None:
    """(trace id, operation, bytes left over) of the next request, or None when the peer closed."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None
        rest += data
    body, rest = rest[:length], rest[length:]
    query = json.loads(body)
    op = Op((query["query_type"], query["query_method"]))
    trace_id = headers.get("x-cloud-trace-context", "").split("/", 1)[0]
    return trace_id, op, rest


def modes_by_name() -> dict[str, Mode]:
    return {mode.name: mode for mode in MODES}
