"""Reading one answer off a socket (RFC 9112): the status line and headers, then a body by its framing."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from encord_gateway.upstream.http1 import limits
from encord_gateway.upstream.http1.errors import ConnectionLost, MalformedResponse

# The time source deadlines are measured on: time.monotonic, or a test's fake.
Clock = Callable[[], float]

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_STATUS = re.compile(rb"[1-5][0-9][0-9]")
# Headers that frame the body: a repeat that disagrees means the framing cannot be trusted.
_FRAMING = ("content-length", "transfer-encoding")
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


def socket_timeout(deadline: float, now: float) -> float:
    """Time left to `deadline`, as a socket timeout: never zero, which would mean non-blocking."""
    return max(deadline - now, 0.001)


class Reader:
    """Buffered reads from a socket, each bounded by the exchange's deadline, not by a per-recv timeout.

    Its own buffer (not io.BufferedReader's) so that bytes left over after an
    answer are seen: a connection holding them is not reused.
    """

    def __init__(self, sock: socket.socket, clock: Clock) -> None:
        self.sock = sock
        self.clock = clock
        self.buffer = bytearray()
        self.deadline = 0.0

    def fill(self) -> bool:
        """Reads what has arrived, waiting until the deadline at most; False at end of stream."""
        left = self.deadline - self.clock()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        self.sock.settimeout(left)
        data = self.sock.recv(limits.RECV_BYTES)
        if not data:
            return False
        self.buffer += data
        return True

    def take(self, size: int) -> bytes:
        """The buffer's first `size` bytes, removed from it."""
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readline(self, limit: int) -> bytes:
        """A line with its `\\n`; shorter than that when `limit` is reached or the stream ends."""
        start = 0
        while True:
            end = self.buffer.find(b"\n", start, limit)
            if end >= 0:
                return self.take(end + 1)
            if len(self.buffer) >= limit:
                return self.take(limit)
            start = len(self.buffer)
            if not self.fill():
                return self.take(len(self.buffer))

    def read(self, size: int) -> bytes:
        """`size` bytes; fewer when the stream ends first."""
        while len(self.buffer) < size and self.fill():
            pass
        return self.take(size)

    def read_to_end(self, limit: int) -> bytes:
        """Everything until the stream ends; at most `limit` + 1 bytes."""
        while len(self.buffer) <= limit and self.fill():
            pass
        return self.take(limit + 1)


def read_head(reader: Reader) -> tuple[int, str, dict[str, str]]:
    """The final answer's status, version and headers, past any interim (1xx) answers."""
    budget = limits.MAX_HEAD_BYTES
    for _ in range(limits.MAX_INTERIM_ANSWERS + 1):
        status, version, headers, budget = _read_one_head(reader, budget)
        if not 100 <= status < 200:
            return status, version, headers
    raise MalformedResponse(f"more than {limits.MAX_INTERIM_ANSWERS} interim answers")


def _read_one_head(reader: Reader, budget: int) -> tuple[int, str, dict[str, str], int]:
    whole = _whole_head(reader, budget)
    if whole is not None:
        # The usual answer: its head arrived whole, in CRLF lines, within the limits; parsed in one go.
        lines = whole[:-4].split(b"\r\n")
        status, version = _status_line(lines[0])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            _add_header(headers, line)
        return status, version, headers, budget - len(whole)
    line = _head_line(reader, budget, first=True)
    budget -= len(line)
    status, version = _status_line(line.rstrip(b"\r\n"))
    headers = {}
    for _ in range(limits.MAX_HEADER_LINES + 1):
        line = _head_line(reader, budget)
        budget -= len(line)
        if line in (b"\r\n", b"\n"):
            return status, version, headers, budget
        _add_header(headers, line.rstrip(b"\r\n"))
    raise MalformedResponse("the answer has too many header lines")


def _whole_head(reader: Reader, budget: int) -> bytes | None:
    """The head with its blank line, taken from the buffer, if it is there whole and needs no care.

    Else None, and nothing is taken: the line-by-line reading then sees exactly what it would have,
    bare-LF lines, too many lines, a head too large or cut short included.
    """
    end = reader.buffer.find(b"\r\n\r\n", 0, budget)
    if end < 0 and len(reader.buffer) < budget:
        if not reader.fill():
            return None
        end = reader.buffer.find(b"\r\n\r\n", 0, budget)
    if end < 0:
        return None
    size = end + 4
    newlines = reader.buffer.count(b"\n", 0, size)
    # A bare LF would end a line of its own; more lines than allowed get the line-by-line error.
    if newlines != reader.buffer.count(b"\r\n", 0, size) or newlines - 2 > limits.MAX_HEADER_LINES:
        return None
    return reader.take(size)


def _status_line(line: bytes) -> tuple[int, str]:
    parts = line.split(None, 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not _STATUS.fullmatch(parts[1]):
        raise MalformedResponse(f"not an HTTP/1.x status line: {line[:80]!r}")
    return int(parts[1]), parts[0].decode("ascii")


def _add_header(headers: dict[str, str], line: bytes) -> None:
    """One header line (without its line break) into `headers`; a framing header repeated must agree."""
    name, sep, value = line.partition(b":")
    if not sep or not name or name != name.strip():
        raise MalformedResponse(f"not a header line: {line[:80]!r}")
    key, text = name.lower().decode("latin-1"), value.strip().decode("latin-1")
    if key in _FRAMING and key in headers:
        if key == "content-length" and headers[key] != text:
            raise MalformedResponse("the answer has two different Content-Length headers")
        text = f"{headers[key]}, {text}" if key == "transfer-encoding" else text
    headers[key] = text


def _head_line(reader: Reader, budget: int, *, first: bool = False) -> bytes:
    line = reader.readline(budget + 1)
    if line.endswith(b"\n"):
        return line
    if len(line) > budget:
        raise MalformedResponse("the answer's headers are too large")
    if first and not line:
        raise ConnectionLost("the server closed the connection without answering")
    raise ConnectionLost("the connection closed inside the answer's headers")


def read_body(reader: Reader, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
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
        if size > limits.MAX_BODY_BYTES:
            raise MalformedResponse(f"an answer of {size} bytes is too large")
        content = reader.read(size)
        if len(content) != size:
            raise ConnectionLost(f"the connection closed after {len(content)} of {size} body bytes")
        return content, True
    content = reader.read_to_end(limits.MAX_BODY_BYTES)
    if len(content) > limits.MAX_BODY_BYTES:
        raise MalformedResponse("the answer is too large")
    return content, False


def _read_chunked(reader: Reader) -> bytes:
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
            for _ in range(limits.MAX_HEADER_LINES + 1):
                trailer = reader.readline(limits.MAX_HEAD_BYTES)
                if trailer in (b"\r\n", b"\n"):
                    return b"".join(chunks)  # trailers: nothing of Encord's travels in them
                if not trailer.endswith(b"\n"):
                    raise ConnectionLost("the connection closed inside a chunked body's trailers")
            raise MalformedResponse("a chunked body has too many trailer lines")
        total += size
        if total > limits.MAX_BODY_BYTES:
            raise MalformedResponse("the answer is too large")
        chunk = reader.read(size + 2)
        if len(chunk) != size + 2:
            raise ConnectionLost("the connection closed inside a chunk")
        if chunk[size:] != b"\r\n":
            raise MalformedResponse("a chunk is longer than its size says")
        chunks.append(chunk[:size])
