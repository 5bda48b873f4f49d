"""A small HTTP/1.1 client for one origin: pooled keep-alive connections, a deadline on every exchange.

The gateway's upstream transport. Framing follows RFC 9112; anything it cannot
frame is refused with a typed error rather than guessed at. A module per concern:
`pool` (Http1Client), `framing` (heads, bodies, chunks), `decoding` (gzip, deflate),
`proxy` (Proxy, the CONNECT tunnel), `origin`, `limits` and `errors`.
"""

from __future__ import annotations

from encord_gateway.upstream.http1.errors import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    ExchangeTimeout,
    HttpError,
    MalformedResponse,
)
from encord_gateway.upstream.http1.framing import Clock, Response
from encord_gateway.upstream.http1.limits import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    MAX_HEADER_LINES,
    MAX_INTERIM_ANSWERS,
)
from encord_gateway.upstream.http1.origin import Origin
from encord_gateway.upstream.http1.pool import MAX_IDLE_S, Http1Client
from encord_gateway.upstream.http1.proxy import Proxy

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_LINES",
    "MAX_HEAD_BYTES",
    "MAX_IDLE_S",
    "MAX_INTERIM_ANSWERS",
    "Clock",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionLost",
    "ExchangeTimeout",
    "Http1Client",
    "HttpError",
    "MalformedResponse",
    "Origin",
    "Proxy",
    "Response",
]
