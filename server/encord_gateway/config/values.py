"""Parsers of single setting values: HOST:PORT, a CPU list, a state_url's kind; ConfigError otherwise."""

from __future__ import annotations

from urllib.parse import urlsplit

from encord_gateway.config.options import DEFAULT_STATE_URL, ConfigError


def split_host_port(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} must be HOST:PORT with a port from 0 to 65535, not {address!r}")
    return host.strip("[]"), int(port)


def parse_cpus(text: str) -> set[int]:
    """CPU numbers from `1`, `0,2` or `0-3`."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ConfigError(f"cpus must be like 1, 0,2 or 0-3, not {text!r}") from None
    if not cpus:
        raise ConfigError(f"cpus names no CPU: {text!r}")
    return cpus


def state_kind(url: str) -> str:
    """The store kind (memory, sqlite or redis) of a usable state_url; ConfigError never echoes the URL."""
    # Not the URL in the messages: a redis:// URL may carry a password.
    if url == DEFAULT_STATE_URL:
        return "memory"
    if url.startswith("sqlite:///"):
        if not url[len("sqlite:///") :]:
            raise ConfigError("state_url sqlite:/// needs a file path: sqlite:///PATH")
        return "sqlite"
    if url.startswith(("redis://", "rediss://")):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError:
            raise ConfigError("state_url is not a valid redis:// URL") from None
        if not parts.hostname:
            raise ConfigError("state_url redis:// needs a host: redis://HOST[:PORT][/DB]")
        return "redis"
    scheme = url.partition("://")[0] if "://" in url else ""
    shown = f" (scheme {scheme!r})" if scheme.isalnum() else ""
    raise ConfigError(f"state_url must be memory://, sqlite:///PATH or redis://HOST[:PORT]{shown}")
