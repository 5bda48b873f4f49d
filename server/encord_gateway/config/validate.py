"""Checks across settings (pairs that go together, kinds of store, addresses) once all are known."""

from __future__ import annotations

from pathlib import Path

from encord_gateway.config.options import ConfigError
from encord_gateway.config.settings import Settings
from encord_gateway.config.values import parse_cpus, split_host_port, state_kind


def validate(settings: Settings) -> None:
    """ConfigError for the first setting that, given the others, cannot work. (listen: Settings splits it.)"""
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
