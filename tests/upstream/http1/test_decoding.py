"""Http1Client undoes gzip and deflate, member by member, and holds the decoded body to the body limit."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import pytest
from encord_gateway.upstream.http1 import MalformedResponse
from upstream.http1.peers import BODY, HEADERS, PLAIN, MakeClient, Serve, replying, soon


def test_multi_member_gzip_is_decoded_whole(serve: Serve, client: MakeClient) -> None:
    # RFC 1952 allows several members; urllib3 (so the SDK) decodes them all.
    encoded = gzip.compress(PLAIN[:100]) + gzip.compress(PLAIN[100:])
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(encoded)
    server = serve(replying(reply + encoded))
    assert client(server.url()).post(HEADERS, BODY, soon()).body == PLAIN


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [("gzip", gzip.compress(b"{}") + b"junk"), ("deflate", zlib.compress(b"{}") + b"junk")],
)
def test_bytes_after_the_compressed_body_are_malformed(
    serve: Serve, client: MakeClient, encoding: str, encoded: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
    server = serve(replying(head % (encoding.encode(), len(encoded)) + encoded))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("x-gzip", gzip.compress(PLAIN)),
        ("GZip", gzip.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN)),
        ("deflate", _raw_deflate(PLAIN)),
        ("identity", PLAIN),
    ],
    ids=["gzip", "x-gzip", "gzip-mixed-case", "deflate-zlib", "deflate-raw", "identity"],
)
def test_content_encoding_is_decoded(serve: Serve, client: MakeClient, encoding: str, encoded: bytes) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    assert client(server.url()).post(HEADERS, BODY, soon()).body == PLAIN


def test_gzip_inside_chunked(serve: Serve, client: MakeClient) -> None:
    encoded = gzip.compress(PLAIN)
    half = len(encoded) // 2
    parts = [encoded[:half], encoded[half:]]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n" + chunks
    server = serve(replying(reply + b"0\r\n\r\n"))
    assert client(server.url()).post(HEADERS, BODY, soon()).body == PLAIN


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [("br", b"\x0b\x02\x80hello\x03"), ("gzip", b"not gzip at all"), ("deflate", b"\xff\xfe\xfd")],
    ids=["unknown-br", "corrupt-gzip", "corrupt-deflate"],
)
def test_undecodable_content_encoding_is_malformed(
    serve: Serve, client: MakeClient, encoding: str, encoded: bytes
) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    with pytest.raises(MalformedResponse):
        client(server.url()).post(HEADERS, BODY, soon())


# A small limit keeps these fast: the limit is read when an answer is decoded, not at import.
SMALL_LIMIT = 1000


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate)],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
@pytest.mark.parametrize(
    ("size", "fits"), [(SMALL_LIMIT, True), (SMALL_LIMIT + 1, False), (50 * SMALL_LIMIT, False)]
)
def test_decoded_body_is_held_to_the_body_limit(
    serve: Serve,
    client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    encoding: str,
    compress: Callable[[bytes], bytes],
    size: int,
    fits: bool,
) -> None:
    monkeypatch.setattr("encord_gateway.upstream.http1.limits.MAX_BODY_BYTES", SMALL_LIMIT)
    plain = b"0" * size
    encoded = compress(plain)
    assert len(encoded) < SMALL_LIMIT // 4  # small on the wire: only decoding makes it large
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    http = client(server.url())
    if fits:
        assert http.post(HEADERS, BODY, soon()).body == plain
    else:
        # One byte more than the answer that decodes is refused: the limit is what refuses it.
        with pytest.raises(MalformedResponse):
            http.post(HEADERS, BODY, soon())
        assert http._idle == []


def test_chunked_gzip_bomb_is_malformed(
    serve: Serve, client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("encord_gateway.upstream.http1.limits.MAX_BODY_BYTES", SMALL_LIMIT)
    encoded = gzip.compress(b"0" * 100 * SMALL_LIMIT)
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
    server = serve(replying(reply + b"%x\r\n%s\r\n0\r\n\r\n" % (len(encoded), encoded)))
    with pytest.raises(MalformedResponse, match="decodes to more than"):
        client(server.url()).post(HEADERS, BODY, soon())


@pytest.mark.parametrize(
    "cut",
    [lambda encoded: encoded[: len(encoded) // 2], lambda encoded: encoded[:-4]],
    ids=["mid-stream", "in-the-trailer"],
)
def test_truncated_gzip_is_malformed(serve: Serve, client: MakeClient, cut: Callable[[bytes], bytes]) -> None:
    # A valid prefix: every byte decodes, but the stream never ends.
    encoded = cut(gzip.compress(PLAIN))
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(encoded)}\r\n\r\n"
    server = serve(replying(head.encode() + encoded))
    with pytest.raises(MalformedResponse, match="truncated"):
        client(server.url()).post(HEADERS, BODY, soon())
