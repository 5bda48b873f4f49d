"""Each setting of `serve`: its flag, environment variable, TOML key, type, one default and range."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DOMAIN = "https://api.encord.com"
DEFAULT_STATE_URL = "memory://"
DEFAULT_STATE_PREFIX = "encord-gateway:"
# The one default of each of these: Option, Settings and the upstream client use it.
DEFAULT_UPSTREAM_POOL_SIZE = 64
DEFAULT_UPSTREAM_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
# Proxy variables read once, here, into Settings.proxy_env (lower-case ones win, as in requests and the SDK).
PROXY_VARIABLES = tuple(
    name for base in ("https_proxy", "http_proxy", "all_proxy", "no_proxy") for name in (base, base.upper())
)
# Longest deadline or grace period any setting may name: an hour. Beyond that a "deadline" is a typo.
_HOUR = 3600.0


class ConfigError(Exception):
    """The settings are unusable; the message says which one and why, in one line."""


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its environment variable, its TOML key (= the Settings field) and type."""

    name: str
    env: str
    kind: type
    default: Any
    help: str
    metavar: str | None = None
    # For int and float settings: the closed range a value must lie in (NaN and infinities never do).
    low: float | None = None
    high: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "listen",
        "ENCORD_GATEWAY_LISTEN",
        str,
        DEFAULT_LISTEN,
        "gRPC address HOST:PORT (port 0: any free port)",
        "HOST:PORT",
    ),
    Option(
        "encord_domain",
        "ENCORD_GATEWAY_ENCORD_DOMAIN",
        str,
        DEFAULT_DOMAIN,
        "Encord API base URL (the emulator's, e.g. http://127.0.0.1:8080)",
        "URL",
    ),
    Option(
        "ssh_key_file",
        "ENCORD_SSH_KEY_FILE",
        str,
        None,
        "OpenSSH Ed25519 private key of the gateway's Encord user (else $ENCORD_SSH_KEY holds the key text)",
        "PATH",
    ),
    Option(
        "ssh_key_passphrase_file",
        "ENCORD_SSH_KEY_PASSPHRASE_FILE",
        str,
        None,
        "file holding the key's passphrase (else $ENCORD_SSH_KEY_PASSPHRASE)",
        "PATH",
    ),
    Option(
        "encord_ca_file",
        "ENCORD_GATEWAY_ENCORD_CA_FILE",
        str,
        None,
        "CA bundle to trust for the Encord domain (e.g. an emulator's self-signed certificate)",
        "PATH",
    ),
    Option(
        "config",
        "ENCORD_GATEWAY_CONFIG",
        str,
        None,
        "TOML file with any of these settings and the callers",
        "FILE",
    ),
    Option("log_level", "ENCORD_GATEWAY_LOG_LEVEL", str, "info", "debug, info, warning or error", "LEVEL"),
    Option(
        "default_deadline",
        "ENCORD_GATEWAY_DEFAULT_DEADLINE",
        float,
        30.0,
        "seconds a call may take when the caller sets no deadline",
        "SECONDS",
        low=0.001,
        high=_HOUR,
    ),
    Option(
        "max_deadline",
        "ENCORD_GATEWAY_MAX_DEADLINE",
        float,
        120.0,
        "longest a call may take, whatever deadline the caller sets",
        "SECONDS",
        low=0.001,
        high=_HOUR,
    ),
    Option(
        "grace_period",
        "ENCORD_GATEWAY_GRACE_PERIOD",
        float,
        10.0,
        "seconds in-flight calls get to finish on SIGTERM",
        "SECONDS",
        low=0.001,
        high=_HOUR,
    ),
    Option(
        "workers", "ENCORD_GATEWAY_WORKERS", int, 64, "calls served at once (threads)", "N", low=1, high=1024
    ),
    Option(
        "processes",
        "ENCORD_GATEWAY_PROCESSES",
        int,
        1,
        "gateway processes serving the one port (above 1: a supervisor forks them; needs a shared store)",
        "N",
        low=1,
        high=64,
    ),
    Option(
        "cpus",
        "ENCORD_GATEWAY_CPUS",
        str,
        None,
        "run on these CPUs only (e.g. 1 or 0-1); on one CPU the threads pass the GIL without crossing cores",
        "LIST",
    ),
    Option(
        "upstream_pool_size",
        "ENCORD_GATEWAY_UPSTREAM_POOL_SIZE",
        int,
        DEFAULT_UPSTREAM_POOL_SIZE,
        "keep-alive connections to Encord at most",
        "N",
        low=1,
        high=1024,
    ),
    Option(
        "upstream_connect_timeout",
        "ENCORD_GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
        float,
        DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        "seconds to wait for a connection to Encord",
        "SECONDS",
        low=0.001,
        high=300.0,
    ),
    Option(
        "upstream_retries",
        "ENCORD_GATEWAY_UPSTREAM_RETRIES",
        int,
        4,
        "attempts for list calls; creates only when no connection could be opened",
        "N",
        low=1,
        high=20,
    ),
    Option(
        "readiness_probe_interval",
        "ENCORD_GATEWAY_READINESS_PROBE_INTERVAL",
        float,
        0.0,
        "if > 0, health is SERVING only while Encord answers a probe this often",
        "SECONDS",
        low=0.0,
        high=_HOUR,
    ),
    Option(
        "max_message_bytes",
        "ENCORD_GATEWAY_MAX_MESSAGE_BYTES",
        int,
        DEFAULT_MAX_MESSAGE_BYTES,
        "largest request message accepted",
        "BYTES",
        low=1024,
        high=64 * 1024 * 1024,
    ),
    Option(
        "request_message_timeout",
        "ENCORD_GATEWAY_REQUEST_MESSAGE_TIMEOUT",
        float,
        5.0,
        "seconds a call may wait for its request message (a stream sending none is cancelled)",
        "SECONDS",
        low=0.1,
        high=_HOUR,
    ),
    Option(
        "tls_cert", "ENCORD_GATEWAY_TLS_CERT", str, None, "server certificate chain (PEM) for TLS", "PATH"
    ),
    Option("tls_key", "ENCORD_GATEWAY_TLS_KEY", str, None, "server private key (PEM) for TLS", "PATH"),
    Option(
        "client_ca",
        "ENCORD_GATEWAY_CLIENT_CA",
        str,
        None,
        "CA bundle for client certificates: turns on mutual TLS",
        "PATH",
    ),
    Option(
        "insecure",
        "ENCORD_GATEWAY_INSECURE",
        bool,
        False,
        "allow a non-loopback listen address without TLS and callers",
    ),
    Option(
        "audit_log",
        "ENCORD_GATEWAY_AUDIT_LOG",
        str,
        None,
        "append one JSON line per authorized or denied call here ('-' for stdout)",
        "FILE",
    ),
    Option(
        "metrics_listen",
        "ENCORD_GATEWAY_METRICS_LISTEN",
        str,
        None,
        "serve Prometheus metrics on HOST:PORT",
        "HOST:PORT",
    ),
    Option(
        "health_listen",
        "ENCORD_GATEWAY_HEALTH_LISTEN",
        str,
        None,
        "also serve grpc.health.v1 alone, in plaintext, on HOST:PORT, for probes (empty: off)",
        "HOST:PORT",
    ),
    Option(
        "state_url",
        "ENCORD_GATEWAY_STATE_URL",
        str,
        DEFAULT_STATE_URL,
        "request ids, create locks, rate buckets: memory:// (one process), sqlite:///PATH (one host, "
        "durable) or redis://HOST:PORT/DB, rediss:// (a fleet)",
        "URL",
    ),
    Option(
        "state_ca_file",
        "ENCORD_GATEWAY_STATE_CA_FILE",
        str,
        None,
        "CA bundle to trust for a rediss:// state store's certificate (default: the system's)",
        "PATH",
    ),
    Option(
        "state_password_file",
        "ENCORD_GATEWAY_STATE_PASSWORD_FILE",
        str,
        None,
        "file holding the redis:// state store's password (instead of one in the URL)",
        "PATH",
    ),
    Option(
        "state_prefix",
        "ENCORD_GATEWAY_STATE_PREFIX",
        str,
        DEFAULT_STATE_PREFIX,
        "namespace of every key this gateway writes to a redis:// state store",
        "PREFIX",
    ),
    Option(
        "state_timeout",
        "ENCORD_GATEWAY_STATE_TIMEOUT",
        float,
        2.0,
        "seconds to wait for a redis:// state store to connect or answer, then the call fails closed",
        "SECONDS",
        low=0.01,
        high=60.0,
    ),
    Option(
        "request_id_ttl",
        "ENCORD_GATEWAY_REQUEST_ID_TTL",
        float,
        24 * _HOUR,
        "seconds a create's request id is remembered (a retry within it gets the same key)",
        "SECONDS",
        low=1.0,
        high=30 * 24 * _HOUR,
    ),
    Option(
        "reconcile_after",
        "ENCORD_GATEWAY_RECONCILE_AFTER",
        float,
        5.0,
        "seconds after a create's answer was lost before a retry with its request id reconciles",
        "SECONDS",
        low=0.0,
        high=_HOUR,
    ),
)


def check_range(option: Option, value: Any, origin: str = "") -> None:
    """A numeric setting must be finite and inside the option's range; ConfigError says which and why."""
    if option.low is None or option.high is None or not isinstance(value, int | float):
        return
    where = f" from {origin}" if origin else ""
    unit = " seconds" if option.metavar == "SECONDS" else ""

    def show(bound: float) -> str:
        return f"{bound:g}" if isinstance(bound, float) else str(bound)

    if not math.isfinite(value) or not option.low <= value <= option.high:
        raise ConfigError(
            f"{option.name}{where} must be from {show(option.low)} to {show(option.high)}{unit}, "
            f"not {value!r}"
        )


# The one default of each setting, by name: Settings' fields take theirs from here.
DEFAULTS: dict[str, Any] = {option.name: option.default for option in OPTIONS}
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
