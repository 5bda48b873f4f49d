"""Where connections go: scheme, host (in its ASCII form) and port, and how each is written on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Origin:
    """Where connections go: the origin itself, or an HTTP proxy in front of it."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        try:
            # An internationalised name goes on the wire (Host, SNI, CONNECT) in its ASCII form.
            host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode()
        except UnicodeError:
            raise ValueError(f"not a valid host name: {parts.hostname!r}") from None
        return cls(parts.scheme, host, parts.port or (443 if parts.scheme == "https" else 80))

    @property
    def host_port(self) -> str:
        """`host:port`, with an IPv6 literal in brackets: CONNECT's target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def authority(self) -> str:
        """`host_port` without the scheme's default port: the Host header."""
        default = 443 if self.scheme == "https" else 80
        return self.host_port.rpartition(":")[0] if self.port == default else self.host_port
