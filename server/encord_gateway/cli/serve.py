"""`encord-gateway serve`: settings, policy and signing key; serve; reload on SIGHUP; stop on a signal."""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
from typing import Any

from encord_gateway import config, logs
from encord_gateway.access.exposure import exposure, is_loopback
from encord_gateway.access.policy import Policy
from encord_gateway.access.security import Security
from encord_gateway.api.metrics import GatewayMetrics
from encord_gateway.api.server import GatewayServer
from encord_gateway.upstream.client import UpstreamSetupError
from encord_gateway.upstream.signing import SigningKeyError, load_signing_key

log = logging.getLogger("encord_gateway.cli.serve")

EXIT_CONFIG = 2
# Settings that only take effect at start-up; the policy ([[callers]]) and the TLS files' contents reload.
_RELOADED = {"config", "document", "ssh_key_passphrase"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the encord_gateway.v1.ApiKeyService gRPC API, signing Encord calls with one SSH key. "
        "Each setting comes from its flag, else its environment variable, else the --config TOML file. "
        "SIGHUP reloads the [[callers]] policy and the TLS files, and reopens the audit log."
    )
    config.add_arguments(parser)


def fail(message: str) -> int:
    print(f"encord-gateway: error: {message}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


def _fields(**values: Any) -> dict[str, Any]:
    return {logs.FIELDS: values}


def warn_about(settings: config.Settings, policy: Policy) -> None:
    """Configurations that work but are probably not what was meant."""
    mutual = bool(settings.client_ca)
    for caller in policy.callers:
        if caller.certificates and not caller.tokens and not mutual:
            log.warning("caller is identified by certificate only, but mutual TLS is off (no client_ca)",
                        extra=_fields(caller=caller.name))  # fmt: skip
        if any(t.require_mtls for t in caller.tokens) and not mutual:
            log.warning("caller has tokens valid only with mutual TLS, which is off (no client_ca)",
                        extra=_fields(caller=caller.name))  # fmt: skip
    host, _ = config.split_host_port(settings.listen, "listen")
    if policy.callers and not settings.tls_cert and not is_loopback(host):
        log.warning("no TLS on a non-loopback address: bearer tokens cross the network in clear text",
                    extra=_fields(listen=settings.listen))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(args, os.environ)
    except config.ConfigError as exc:
        return fail(str(exc))
    logs.configure(settings.log_level)
    if settings.cpus:
        try:
            # Before any thread starts: threads inherit the affinity.
            os.sched_setaffinity(0, config.parse_cpus(settings.cpus))
        except OSError as exc:
            return fail(f"cannot run on CPUs {settings.cpus}: {exc.strerror}")
    try:
        security = Security.from_settings(settings)
    except config.ConfigError as exc:
        return fail(str(exc))
    policy = security.holder.current
    problem = exposure(settings, policy)
    if problem and not settings.insecure:
        return fail(f"refusing to start: {problem}. Configure [[callers]] or --client-ca (with TLS), "
                    "or listen on 127.0.0.1, or pass --insecure to accept the risk")  # fmt: skip
    if problem:
        log.warning(f"--insecure: {problem}", extra=_fields(listen=settings.listen))
    warn_about(settings, policy)
    try:
        key = load_signing_key(
            key_file=settings.ssh_key_file,
            key_text=settings.ssh_key_text,
            passphrase=settings.ssh_key_passphrase,
            source=settings.ssh_key_source,
        )
    except SigningKeyError as exc:
        return fail(str(exc))
    metrics = GatewayMetrics() if settings.metrics_listen else None
    try:
        server = GatewayServer(
            settings,
            key,
            security=security,
            observers=[metrics] if metrics else [],
            interceptors=[metrics.interceptor()] if metrics else [],
            on_attempt=metrics.upstream_attempt if metrics else None,
        )
    except UpstreamSetupError as exc:
        return fail(str(exc))
    if metrics is not None and settings.metrics_listen:
        try:
            # Printed before `listening on`, so it is in the output once the gateway is up.
            print(f"metrics on {metrics.serve(settings.metrics_listen)}", flush=True)
        except OSError as exc:
            return fail(f"cannot serve metrics on {settings.metrics_listen}: {exc}")
    try:
        address = server.start()
    except (OSError, RuntimeError) as exc:
        if metrics is not None:
            metrics.close()
        return fail(f"cannot listen on {settings.listen}: {exc}")
    # The handlers only queue the signal (SimpleQueue.put is safe in a signal handler); the main
    # thread acts on it, so a reload never runs inside a handler.
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: signals.put(signum))
    audit_target = security.audit.target if security.audit else None
    log.info("serving", extra=_fields(address=address, encord_domain=settings.encord_domain,
                                      public_key=key.public_key_hex, tls=bool(settings.tls_cert),
                                      mutual_tls=bool(settings.client_ca), callers=len(policy.callers),
                                      audit_log=audit_target))  # fmt: skip
    print(f"listening on {address}", flush=True)
    while signals.get() == signal.SIGHUP:
        reload(args, settings, security)
    stuck = server.stop(
        refusing=lambda: log.info(
            "stopping: draining in-flight calls", extra=_fields(grace_s=settings.grace_period)
        )
    )
    if metrics is not None:
        metrics.close()
    if stuck:
        # A normal exit would wait for them (the thread pool joins its workers at interpreter exit),
        # holding the process until their upstream deadline; their callers are already cut off.
        log.warning("stopped; abandoning calls stuck past the grace period", extra=_fields(calls=stuck))
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    log.info("stopped")
    return 0


def reload(args: argparse.Namespace, running: config.Settings, security: Security) -> None:
    """Re-reads the config; a broken one is refused and the policy in force stays."""
    try:
        new = config.load(args, os.environ)
        policy = security.reload(new, running)
    except config.ConfigError as exc:
        log.error("config reload refused; the previous config stays in force", extra=_fields(error=str(exc)))
        return
    except Exception:
        # A bug here must not take the serving gateway down with it.
        log.exception("config reload failed; the previous config stays in force")
        return
    restart = sorted(
        name for name in config.option_names()
        if name not in _RELOADED and getattr(new, name) != getattr(running, name)
    )  # fmt: skip
    if restart:
        log.warning("these settings changed but take effect only on restart", extra=_fields(settings=restart))
    warn_about(running, policy)
    log.info("config reloaded", extra=_fields(callers=len(policy.callers)))
