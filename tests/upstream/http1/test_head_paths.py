"""A head that arrives whole is parsed in one go; the same head byte by byte, line by line: same answer."""

from __future__ import annotations

import time

import pytest
from encord_gateway.upstream.http1 import limits
from encord_gateway.upstream.http1.errors import HttpError
from encord_gateway.upstream.http1.framing import Reader, read_body, read_head

MANY = b"".join(b"X-%d: v\r\n" % i for i in range(limits.MAX_HEADER_LINES))
HEADS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",  # bare LF lines
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok",  # one bare LF among CRLFs
    b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok",  # a bare LF before the blank CRLF line
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + MANY + b"Content-Length: 0\r\n\r\n",  # one line too many
    b"HTTP/1.1 200 OK\r\n" + MANY[: -len(b"X-0: v\r\n")] + b"Content-Length: 0\r\n\r\n",  # at the limit
    b"HTTP/1.1 200 OK\r\n X-Folded: v\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * limits.MAX_HEAD_BYTES + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  # cut inside the head
]


class Segments:
    """A socket's receiving side that hands out `data` in segments of `size` bytes, then end of stream."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    def settimeout(self, timeout: float) -> None:
        pass

    def recv(self, limit: int) -> bytes:
        segment, self.data = self.data[: min(self.size, limit)], self.data[min(self.size, limit) :]
        return segment


def _answer(data: bytes, *, byte_by_byte: bool) -> tuple[object, ...]:
    """What read_head and read_body make of `data` received at once, or one byte per recv."""
    reader = Reader(Segments(data, 1 if byte_by_byte else len(data)), time.monotonic)  # type: ignore[arg-type]
    reader.deadline = time.monotonic() + 10
    try:
        status, version, headers = read_head(reader)
        body, reusable = read_body(reader, status, headers)
    except HttpError as exc:
        return (type(exc).__name__,)
    return (status, version, headers, body, reusable, bytes(reader.buffer))


@pytest.mark.parametrize("data", HEADS, ids=range(len(HEADS)))
def test_a_whole_head_reads_as_the_same_head_line_by_line(data: bytes) -> None:
    assert _answer(data, byte_by_byte=False) == _answer(data, byte_by_byte=True)


def test_the_cases_reach_both_outcomes() -> None:
    """The list holds heads that parse and heads refused, so the comparison above compares both."""
    outcomes = [len(_answer(data, byte_by_byte=False)) for data in HEADS]
    assert 1 in outcomes
    assert 6 in outcomes
