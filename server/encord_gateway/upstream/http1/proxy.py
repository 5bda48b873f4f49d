"""An HTTP proxy in front of the origin: its URL parsed without quoting secrets, and the CONNECT tunnel."""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from encord_gateway.upstream.http1.errors import ConnectFailed, HttpError
from encord_gateway.upstream.http1.framing import Clock, Reader, read_head, socket_timeout
from encord_gateway.upstream.http1.origin import Origin


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: HTTPS origins are reached through a CONNECT tunnel, HTTP ones in absolute form."""

    origin: Origin
    authorization: str | None = None

    @classmethod
    def of(cls, url: str) -> Proxy:
        """ValueError for all but `http://[user:password@]host[:port][/]`; its text never holds the URL."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise ValueError(f"only http:// proxies are supported, not {parts.scheme}://")
        try:
            port = parts.port
            if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
                raise ValueError
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            origin = Origin.of(f"http://{host}:{port or 80}")
        except ValueError:
            # Not the parser's words: they can quote a piece of the password.
            raise ValueError(
                "it is not http://[user:password@]host:port "
                "(percent-encode '/', '?', '#' and '@' in the user and password)"
            ) from None
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            # Latin-1 when it can be, as requests (and so the SDK) encodes Basic credentials.
            data = pair.encode("latin-1") if all(ord(c) < 256 for c in pair) else pair.encode()
            auth = "Basic " + base64.b64encode(data).decode()
        return cls(origin, auth)


def open_tunnel(sock: socket.socket, proxy: Proxy, target: Origin, deadline: float, clock: Clock) -> None:
    """Asks the proxy on `sock` for a tunnel to `target`; ConnectFailed unless it opens one, clean."""
    host_port = target.host_port
    lines = [f"CONNECT {host_port} HTTP/1.1", f"Host: {host_port}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.settimeout(socket_timeout(deadline, clock()))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    reader = Reader(sock, clock)
    reader.deadline = deadline
    try:
        status, _, _ = read_head(reader)
    except HttpError as exc:
        raise ConnectFailed(f"the proxy did not open a tunnel to {host_port}: {exc}") from exc
    if status != 200:
        raise ConnectFailed(f"the proxy refused the tunnel to {host_port} (HTTP {status})")
    if reader.buffer:
        raise ConnectFailed(f"the proxy sent bytes of its own into the tunnel to {host_port}")
