"""Reading a request body within limits: Content-Length or chunked, an oversized one drained first."""

from __future__ import annotations

from email.message import Message
from io import BufferedIOBase

from encord_gateway.emulator import errors as e

MAX_BODY_BYTES = 1 << 20
# An oversized body up to this size is read and thrown away before the refusal, so that the
# close that follows is a FIN and not a reset that could destroy the answer in flight.
DRAIN_LIMIT_BYTES = 16 << 20
MAX_LINE_BYTES = 65_536


class BodyError(Exception):
    """The request body cannot be read; the connection is closed after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed the connection mid-body."""


def read_body(headers: Message, rfile: BufferedIOBase) -> bytes:
    """The body the headers announce, whole; BodyError if it is malformed or too large."""
    encoding = headers.get("Transfer-Encoding")
    if encoding is not None:
        if encoding.strip().lower() != "chunked":
            raise BodyError(400, "Only chunked Transfer-Encoding is supported.")
        return _read_chunked(rfile)
    raw = headers.get("Content-Length")
    if raw is None:
        return b""
    try:
        length = int(raw)
    except ValueError:
        raise BodyError(400, e.MSG_BAD_CONTENT_LENGTH) from None
    if length < 0:
        raise BodyError(400, e.MSG_BAD_CONTENT_LENGTH)
    if length > MAX_BODY_BYTES:
        if length <= DRAIN_LIMIT_BYTES:
            while length > 0:
                chunk = rfile.read(min(length, 1 << 16))
                if not chunk:
                    raise ClientGone
                length -= len(chunk)
        raise BodyError(413, e.MSG_BODY_TOO_LARGE)
    return _read_exactly(rfile, length)


def _read_exactly(rfile: BufferedIOBase, length: int) -> bytes:
    data = rfile.read(length)
    if len(data) < length:
        raise ClientGone
    return data


def _read_chunked(rfile: BufferedIOBase) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(MAX_LINE_BYTES)
        if not line:
            raise ClientGone
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError(400, "Malformed chunked body.") from None
        if size == 0:
            while rfile.readline(MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
                pass  # trailers carry nothing the emulator uses
            return b"".join(chunks)
        total += size
        if size < 0 or total > MAX_BODY_BYTES:
            raise BodyError(413, e.MSG_BODY_TOO_LARGE)
        chunks.append(_read_exactly(rfile, size))
        rfile.readline(MAX_LINE_BYTES)
