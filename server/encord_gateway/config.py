"""Settings: one frozen value built once from flags, environment and a TOML file (in that order)."""

from __future__ import annotations

import argparse
import math
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DOMAIN = "https://api.encord.com"
DEFAULT_STATE_URL = "memory://"
DEFAULT_STATE_PREFIX = "encord-gateway:"
# The one default of each of these: Option, Settings and (once they import it) the upstream client use it.
DEFAULT_UPSTREAM_POOL_SIZE = 64
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
        5.0,
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


@dataclass(frozen=True)
class Settings:
    """Everything the gateway is started with. Secrets are kept out of its repr."""

    listen: str = DEFAULT_LISTEN
    encord_domain: str = DEFAULT_DOMAIN
    ssh_key_file: str | None = None
    ssh_key_text: str | None = field(default=None, repr=False)
    ssh_key_source: str = ""
    ssh_key_passphrase: str | None = field(default=None, repr=False)
    ssh_key_passphrase_file: str | None = None
    encord_ca_file: str | None = None
    config: str | None = None
    log_level: str = "info"
    default_deadline: float = 30.0
    max_deadline: float = 120.0
    grace_period: float = 10.0
    workers: int = 64
    processes: int = 1
    cpus: str | None = None
    upstream_pool_size: int = DEFAULT_UPSTREAM_POOL_SIZE
    upstream_connect_timeout: float = 5.0
    upstream_retries: int = 4
    readiness_probe_interval: float = 0.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    insecure: bool = False
    audit_log: str | None = None
    metrics_listen: str | None = None
    health_listen: str | None = None
    state_url: str = DEFAULT_STATE_URL
    state_ca_file: str | None = None
    state_password_file: str | None = None
    state_password: str | None = field(default=None, repr=False)
    state_prefix: str = DEFAULT_STATE_PREFIX
    state_timeout: float = 2.0
    request_id_ttl: float = 24 * _HOUR
    reconcile_after: float = 5.0
    # HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY (either case) as the environment had them; a proxy URL
    # may carry a password, so they stay out of the repr.
    proxy_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The raw TOML document, for the sections other modules own (e.g. [[callers]]).
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Here rather than in validate(): no Settings, however built, holds a NaN deadline or a 1 TiB limit.
        for option in OPTIONS:
            check_range(option, getattr(self, option.name))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option; its default is None so that env and file can fill the gap."""
    for option in OPTIONS:
        help_text = f"{option.help} [env {option.env}; default {option.default}]"
        if option.kind is bool:
            parser.add_argument(option.flag, action="store_const", const=True, default=None, help=help_text)
        else:
            parser.add_argument(option.flag, default=None, metavar=option.metavar, help=help_text)


def _convert(option: Option, value: Any, origin: str) -> Any:
    if value is None:
        return None
    try:
        if option.kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if option.kind is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if isinstance(value, bool) or (option.kind is int and isinstance(value, float)):
            # TOML's 1.5 for a whole number would otherwise become 1 without a word.
            raise ValueError(value)
        converted = option.kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{option.name} from {origin} must be {option.kind.__name__}, not {value!r}"
        ) from None
    check_range(option, converted, origin)
    return converted


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


def read_regular_file(path: str, what: str) -> bytes:
    """The bytes of a regular file; anything else (a FIFO, a device, a directory) is refused, never waited on.

    A FIFO would block open() until a writer appears, and a reload stuck there would hold up shutdown.
    The check before open() refuses it; O_NONBLOCK and the check after open() cover a file swapped in
    between the two.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{what} {path} is not a regular file")
            return f.read()
        except OSError as exc:
            raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


def read_document(path: str) -> dict[str, Any]:
    data = read_regular_file(path, "config file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid TOML: not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def read_state_password(path: str) -> str:
    """The state store's password: the file's text less a final newline; errors never show it."""
    data = read_regular_file(path, "state password file")
    try:
        password = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"state password file {path} is not UTF-8 text") from None
    if not password:
        raise ConfigError(f"state password file {path} is empty")
    return password


def load(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Flags > environment > TOML file > defaults, then validated."""
    config_path = getattr(args, "config", None) or env.get("ENCORD_GATEWAY_CONFIG")
    document = read_document(config_path) if config_path else {}
    known = {o.name for o in OPTIONS} | {"callers"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigError(f"config file {config_path} has unknown settings: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for option in OPTIONS:
        flag_value = getattr(args, option.name, None)
        if flag_value is not None:
            values[option.name] = _convert(option, flag_value, option.flag)
        elif env.get(option.env) not in (None, ""):
            values[option.name] = _convert(option, env[option.env], f"${option.env}")
        elif option.name in document:
            values[option.name] = _convert(option, document[option.name], f"{config_path}")
        else:
            values[option.name] = option.default
    values["config"] = config_path
    source = ""
    key_text = None
    if getattr(args, "ssh_key_file", None):
        source = f"--ssh-key-file {values['ssh_key_file']}"
    elif env.get("ENCORD_SSH_KEY_FILE"):
        source = f"$ENCORD_SSH_KEY_FILE ({values['ssh_key_file']})"
    elif env.get("ENCORD_SSH_KEY"):
        # The SDK's order: a key file first, then the key text itself.
        values["ssh_key_file"], key_text, source = None, env["ENCORD_SSH_KEY"], "$ENCORD_SSH_KEY"
    elif values["ssh_key_file"]:
        source = f"ssh_key_file in {config_path} ({values['ssh_key_file']})"
    passphrase = env.get("ENCORD_SSH_KEY_PASSPHRASE") or None
    if values["ssh_key_passphrase_file"]:
        data = read_regular_file(values["ssh_key_passphrase_file"], "passphrase file")
        try:
            passphrase = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise ConfigError(
                f"passphrase file {values['ssh_key_passphrase_file']} is not UTF-8 text"
            ) from None
    state_password_file = values["state_password_file"]
    settings = Settings(
        **values,
        state_password=read_state_password(state_password_file) if state_password_file else None,
        ssh_key_text=key_text,
        ssh_key_source=source,
        ssh_key_passphrase=passphrase,
        proxy_env={name: env[name] for name in PROXY_VARIABLES if name in env},
        document=document,
    )
    validate(settings)
    return settings


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


def validate(settings: Settings) -> None:
    split_host_port(settings.listen, "listen")
    if settings.metrics_listen:
        split_host_port(settings.metrics_listen, "metrics_listen")
    if settings.health_listen:
        split_host_port(settings.health_listen, "health_listen")
    kind = state_kind(settings.state_url)
    if settings.processes > 1 and kind == "memory":
        raise ConfigError(
            "processes above 1 need a shared state_url (sqlite:///PATH or redis://): memory:// is one "
            "process's, and each would mint its own master keys and keep its own request ids"
        )
    if (settings.state_ca_file or settings.state_password_file) and kind != "redis":
        raise ConfigError("state_ca_file and state_password_file are for a redis:// or rediss:// state_url")
    if settings.state_ca_file and not settings.state_url.startswith("rediss://"):
        raise ConfigError("state_ca_file needs a rediss:// (TLS) state_url")
    if settings.state_ca_file and not Path(settings.state_ca_file).is_file():
        raise ConfigError(f"state_ca_file {settings.state_ca_file} does not exist")
    # Printable ASCII without spaces: the prefix appears in every key an operator scans for.
    prefix = settings.state_prefix
    if not prefix or len(prefix) > 64 or not all("!" <= c <= "~" for c in prefix):
        raise ConfigError("state_prefix must be 1 to 64 printable ASCII characters without spaces")
    if not settings.encord_domain.startswith(("http://", "https://")):
        raise ConfigError(
            f"encord_domain must start with http:// or https://, not {settings.encord_domain!r}"
        )
    if settings.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level must be debug, info, warning or error, not {settings.log_level!r}")
    # Each number is already within its option's range (Settings.__post_init__).
    if settings.max_deadline < settings.default_deadline:
        raise ConfigError("max_deadline may not be shorter than default_deadline")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("tls_cert and tls_key go together: give both or neither")
    if settings.client_ca and not settings.tls_cert:
        raise ConfigError("client_ca (mutual TLS) needs tls_cert and tls_key")
    if settings.encord_ca_file and not Path(settings.encord_ca_file).exists():
        # Otherwise it would be found out only at the first call, and every call would fail.
        raise ConfigError(f"encord_ca_file {settings.encord_ca_file} does not exist")
    if settings.cpus:
        parse_cpus(settings.cpus)


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


def option_names() -> list[str]:
    return [f.name for f in fields(Settings)]
