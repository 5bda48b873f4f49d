"""Settings: the one frozen value `serve` runs with, each field's default taken from its Option."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from encord_gateway.config.options import DEFAULTS as D
from encord_gateway.config.options import OPTIONS, check_range
from encord_gateway.config.values import split_host_port


@dataclass(frozen=True)
class Settings:
    """Everything the gateway is started with. Secrets are kept out of its repr."""

    listen: str = D["listen"]
    encord_domain: str = D["encord_domain"]
    ssh_key_file: str | None = D["ssh_key_file"]
    ssh_key_text: str | None = field(default=None, repr=False)
    ssh_key_source: str = ""
    ssh_key_passphrase: str | None = field(default=None, repr=False)
    ssh_key_passphrase_file: str | None = D["ssh_key_passphrase_file"]
    encord_ca_file: str | None = D["encord_ca_file"]
    config: str | None = D["config"]
    log_level: str = D["log_level"]
    default_deadline: float = D["default_deadline"]
    max_deadline: float = D["max_deadline"]
    grace_period: float = D["grace_period"]
    workers: int = D["workers"]
    processes: int = D["processes"]
    cpus: str | None = D["cpus"]
    upstream_pool_size: int = D["upstream_pool_size"]
    upstream_connect_timeout: float = D["upstream_connect_timeout"]
    upstream_retries: int = D["upstream_retries"]
    readiness_probe_interval: float = D["readiness_probe_interval"]
    max_message_bytes: int = D["max_message_bytes"]
    request_message_timeout: float = D["request_message_timeout"]
    tls_cert: str | None = D["tls_cert"]
    tls_key: str | None = D["tls_key"]
    client_ca: str | None = D["client_ca"]
    insecure: bool = D["insecure"]
    audit_log: str | None = D["audit_log"]
    metrics_listen: str | None = D["metrics_listen"]
    health_listen: str | None = D["health_listen"]
    state_url: str = D["state_url"]
    state_ca_file: str | None = D["state_ca_file"]
    state_password_file: str | None = D["state_password_file"]
    state_password: str | None = field(default=None, repr=False)
    state_prefix: str = D["state_prefix"]
    state_timeout: float = D["state_timeout"]
    request_id_ttl: float = D["request_id_ttl"]
    reconcile_after: float = D["reconcile_after"]
    # HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY (either case) as the environment had them; a proxy URL
    # may carry a password, so they stay out of the repr.
    proxy_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The raw TOML document, for the sections other modules own (e.g. [[callers]]).
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # Where each option's value came from (flag, env, toml or default): what, not the value itself.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # `listen` split once, here; every user of the address takes these.
    listen_host: str = field(init=False, repr=False)
    listen_port: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Here rather than in validate(): no Settings, however built, holds a NaN deadline or a 1 TiB limit.
        for option in OPTIONS:
            check_range(option, getattr(self, option.name))
        host, port = split_host_port(self.listen, "listen")
        object.__setattr__(self, "listen_host", host)
        object.__setattr__(self, "listen_port", port)
