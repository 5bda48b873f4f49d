"""`encord-gateway serve --check` (like `nginx -t`): as far as start-up would go, without binding a port.

Settings, policy, TLS files, audit path, signing key, state store, and with `--check-upstream` one
unsigned GET to Encord.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

import requests

from encord_gateway import config
from encord_gateway.access.exposure import exposure, is_loopback
from encord_gateway.access.policy import Policy
from encord_gateway.access.tls import server_tls
from encord_gateway.api.tracing import TracingConfig
from encord_gateway.api.tracing import load as tracing_load
from encord_gateway.cli.serve import fail, warn_about
from encord_gateway.state import StateConfigError, StateUnavailable
from encord_gateway.upstream.signing import SigningKeyError, load_signing_key


def check(
    settings: config.Settings, policy: Policy, *, upstream: bool, traced: TracingConfig | None = None
) -> int:
    """What start-up would refuse, without binding a port; a summary without a secret on stdout."""
    try:
        server_tls(settings)
        audit = _check_audit_log(settings.audit_log)
        problem = exposure(settings, policy)
        if problem and not settings.insecure:
            raise config.ConfigError(f"refusing to start: {problem}")
        key = load_signing_key(
            key_file=settings.ssh_key_file,
            key_text=settings.ssh_key_text,
            passphrase=settings.ssh_key_passphrase,
            source=settings.ssh_key_source,
        )
        store = _reach_store(settings)
        if traced is not None:
            tracing_load()  # the extra is installed
        encord = _reach_encord(settings) if upstream else "not contacted (--check-upstream to)"
    except (config.ConfigError, SigningKeyError) as exc:
        return fail(str(exc))
    warn_about(settings, policy)
    tls = "mutual TLS" if settings.client_ca else "TLS" if settings.tls_cert else "no TLS"
    if problem:
        reach = "OPEN to anyone who reaches it (--insecure)"
    elif is_loopback(settings.listen_host):
        reach = "loopback only"
    elif policy.open:
        reach = "network, client certificates required"
    else:
        reach = "network, callers must authenticate"
    names = ", ".join(c.name for c in policy.callers) or "none (open: any caller may do anything)"
    lines = [
        f"config ok: {settings.config or '(no config file)'}",
        f"listen: {settings.listen} ({tls})",
        f"exposure: {reach}",
        f"callers: {names}",
        f"signing key: Ed25519 {key.public_key_hex} from {settings.ssh_key_source}",
        f"audit log: {audit}",
        f"state store: {store}",
        f"metrics: {settings.metrics_listen or 'off'}",
        f"health: {settings.health_listen or 'off'}",
        f"tracing: {traced.describe() if traced is not None else 'off'}",
        f"encord: {settings.encord_domain} {encord}",
    ]
    print("\n".join(lines), flush=True)
    return 0


def _check_audit_log(path: str | None) -> str:
    """Where audit lines would go, found out without creating the file."""
    if path in (None, "", "-"):
        return "stdout"
    assert path is not None
    target = Path(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        parent = target.parent
        if not parent.is_dir():
            raise config.ConfigError(
                f"audit_log {path} cannot be opened: No such file or directory"
            ) from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise config.ConfigError(f"audit_log {path} cannot be opened: Permission denied") from None
        return f"{path} (to be created)"
    except OSError as exc:
        raise config.ConfigError(f"audit_log {path} cannot be opened: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise config.ConfigError(f"audit_log {path} cannot be opened: Is a directory")
    if not os.access(path, os.W_OK):
        raise config.ConfigError(f"audit_log {path} cannot be opened: Permission denied")
    return path


def _reach_store(settings: config.Settings) -> str:
    """The store's kind and place (never its credentials), once it has been reached."""
    url = settings.state_url
    kind = config.state_kind(url)
    if kind == "memory":
        return "memory (this process only)"
    if kind == "sqlite":
        path = url[len("sqlite:///") :]
        if not Path(path).exists():
            if not Path(path).parent.is_dir():
                raise config.ConfigError(f"state_url sqlite file {path}: its directory does not exist")
            return f"sqlite {path} (to be created)"
        try:
            with contextlib.closing(sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True)) as db:
                db.execute("PRAGMA schema_version").fetchone()
        except sqlite3.Error as exc:
            raise config.ConfigError(f"state_url sqlite file {path} cannot be used: {exc}") from None
        return f"sqlite {path}"
    # The store itself, with its password and CA: what start-up would use, reached once.
    from encord_gateway.state.redis import RedisStore  # only a redis:// check loads the Redis client

    try:
        store = RedisStore(url, password=settings.state_password, ca_file=settings.state_ca_file,
                           prefix=settings.state_prefix, timeout_s=settings.state_timeout)  # fmt: skip
    except StateConfigError as exc:
        raise config.ConfigError(str(exc)) from None
    where = store.target.where  # the address, never the password
    try:
        store.ping()
    except StateConfigError as exc:
        raise config.ConfigError(str(exc)) from None
    except StateUnavailable as exc:
        raise config.ConfigError(f"state_url redis at {where} is not reachable: {exc}") from None
    finally:
        store.close()
    tls = " (TLS)" if url.startswith("rediss://") else ""
    return f"redis {where}{tls}, keys under {settings.state_prefix}"


def _reach_encord(settings: config.Settings) -> str:
    """One unsigned GET, as the readiness probe sends: any HTTP answer means Encord is reachable."""
    verify: bool | str = settings.encord_ca_file or True
    try:
        with requests.Session() as session:
            answer = session.get(
                settings.encord_domain, timeout=settings.upstream_connect_timeout, verify=verify
            )
    except requests.RequestException as exc:
        # The exception's text may hold a proxy URL with its password: only its kind.
        raise config.ConfigError(
            f"encord_domain {settings.encord_domain} is not reachable ({type(exc).__name__})"
        ) from None
    return f"reachable (HTTP {answer.status_code})"
