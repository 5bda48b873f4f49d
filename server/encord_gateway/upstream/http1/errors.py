"""The transport's exceptions, one tree: what failed, and whether anything reached the server.

    HttpError
     ├── ConnectFailed          nothing was sent
     │    └── ConnectTimeout    nothing was sent, and the time ran out
     ├── ConnectionLost         the request was (perhaps) sent: the outcome is unknown
     ├── ExchangeTimeout        the deadline passed mid-exchange
     └── MalformedResponse      an answer came that cannot be framed

The Encord client maps these to the gateway's errors in one place
(EncordClient._mapped_transport_errors).
"""

from __future__ import annotations


class HttpError(Exception):
    """The exchange failed below HTTP's semantics: no usable answer came."""


class ConnectFailed(HttpError):
    """No connection could be opened (refused, unreachable, TLS refused): nothing was sent."""


class ConnectTimeout(ConnectFailed):
    """No connection could be opened before the connect timeout or the deadline: nothing was sent."""


class ConnectionLost(HttpError):
    """The connection broke after the request was (perhaps) sent: the outcome is unknown."""


class ExchangeTimeout(HttpError):
    """The deadline passed while connecting, sending or waiting for the answer."""


class MalformedResponse(HttpError):
    """Bytes came back, but not an HTTP/1.x answer that can be framed."""
