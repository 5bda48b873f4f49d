"""Undoing a body's Content-Encoding (gzip, deflate) within the body limit, so a small bomb stays small."""

from __future__ import annotations

import zlib

from encord_gateway.upstream.http1 import limits
from encord_gateway.upstream.http1.errors import MalformedResponse


def decoded(content: bytes, encoding: str) -> bytes:
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
    limit = limits.MAX_BODY_BYTES
    parts: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(content, limit + 1 - size)
        except zlib.error as exc:
            raise _Undecodable(f"the answer's {encoding} body does not decode") from exc
        size += len(data)
        if size > limit or inflater.unconsumed_tail:
            raise MalformedResponse(f"the answer's {encoding} body decodes to more than {limit} bytes")
        if not inflater.eof:
            raise MalformedResponse(f"the answer's {encoding} body is truncated")
        parts.append(data)
        content = inflater.unused_data
        if not content:
            return b"".join(parts)
        if wbits != 16 + zlib.MAX_WBITS:
            raise MalformedResponse(f"the answer's {encoding} body has bytes after its end")
