"""`encord-gateway serve`: settings, policy and signing key; serve; reload on SIGHUP; stop on a signal.

`serve --check` and `--check-upstream` are in `check.py`.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from encord_gateway import config, logs
from encord_gateway.access.exposure import exposure, is_loopback
from encord_gateway.access.policy import Policy
from encord_gateway.access.policy_toml import load_policy
from encord_gateway.access.security import Security
from encord_gateway.api.metrics import GatewayMetrics
from encord_gateway.api.metrics_fleet import share_values
from encord_gateway.api.server import GatewayServer, HealthPortError
from encord_gateway.api.tracing import TracingConfig
from encord_gateway.api.tracing import start as tracing_start
from encord_gateway.signals import SignalInbox
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
    # Actions, not settings: no environment variable could sensibly keep a gateway from serving.
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the settings, signing key, [[callers]], TLS files, audit log and state store, "
        "print a summary and exit: 0 if the gateway would start, 2 (with the reason) if not",
    )
    parser.add_argument(
        "--check-upstream",
        action="store_true",
        help="--check, and also send one unsigned GET to the Encord domain (exit 2 if it does not answer)",
    )


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
        if caller.max_in_flight >= settings.workers:
            # Its calls hanging upstream would take every worker from the other callers.
            log.warning("caller may hold every worker: its max_in_flight is not below --workers",
                        extra=_fields(caller=caller.name, max_in_flight=caller.max_in_flight,
                                      workers=settings.workers))  # fmt: skip
    if policy.callers and not settings.tls_cert and not is_loopback(settings.listen_host):
        log.warning("no TLS on a non-loopback address: bearer tokens cross the network in clear text",
                    extra=_fields(listen=settings.listen))  # fmt: skip


def configure(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[config.Settings, Policy]:
    """The settings and the [[callers]] policy of their TOML file, built and checked together, once.

    The one place either is built, at start-up and at each reload; a ConfigError names the first problem.
    """
    settings = config.load(args, env)
    return settings, load_policy(settings.document)


def run(args: argparse.Namespace) -> int:
    try:
        settings, policy = configure(args, os.environ)
        # The standard OTEL_* variables, not the gateway's own: they have no flag and no TOML key.
        traced = TracingConfig.from_env(os.environ)
    except config.ConfigError as exc:
        return fail(str(exc))
    logs.configure(settings.log_level)
    if getattr(args, "check", False) or getattr(args, "check_upstream", False):
        # Imported only when asked for: check.py uses this module's fail() and warn_about().
        from encord_gateway.cli.check import check

        return check(settings, policy, upstream=bool(getattr(args, "check_upstream", False)), traced=traced)
    if settings.processes > 1:
        # Here, before any gRPC object exists: the supervisor forks the workers, each a serve() below
        # (each with its own exporter threads, started after the fork).
        from encord_gateway.cli.processes import supervise

        return supervise(
            settings,
            lambda worker, say, shared: serve(args, worker, policy, say, settings, shared, traced=traced),
        )
    return serve(args, settings, policy, _print_line, settings, traced=traced)


def _print_line(line: str) -> None:
    print(line, flush=True)


def serve(
    args: argparse.Namespace,
    settings: config.Settings,
    policy: Policy,
    announce: Callable[[str], None],
    configured: config.Settings,
    metrics_dir: str | None = None,
    *,
    traced: TracingConfig | None = None,
) -> int:
    """One gateway process: `announce` prints (or reports to a supervisor) `listening on ...`; reloads
    compare with the `configured` settings (a worker's own differ in the address and CPUs it was given).
    A worker given `metrics_dir` writes its metrics there, for its supervisor's /metrics to sum."""
    if settings.cpus:
        try:
            # Before any thread starts: threads inherit the affinity.
            os.sched_setaffinity(0, config.parse_cpus(settings.cpus))
        except OSError as exc:
            return fail(f"cannot run on CPUs {settings.cpus}: {exc.strerror}")
    try:
        security = Security.from_settings(settings, policy)
    except config.ConfigError as exc:
        return fail(str(exc))
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
    try:
        # Only now, and only when asked for, is OpenTelemetry imported.
        tracing = tracing_start(traced) if traced is not None else None
    except config.ConfigError as exc:
        return fail(str(exc))
    if metrics_dir is not None:
        share_values(metrics_dir)
        metrics: GatewayMetrics | None = GatewayMetrics(process=False)
    else:
        metrics = GatewayMetrics() if settings.metrics_listen else None
    try:
        server = GatewayServer(
            settings,
            key,
            security=security,
            observers=[metrics] if metrics else [],
            interceptors=[metrics.interceptor()] if metrics else [],
            on_attempt=metrics.upstream_attempt if metrics else None,
            on_request_id_event=metrics.request_id_event if metrics else None,
            tracing=tracing,
        )
    except (UpstreamSetupError, config.ConfigError) as exc:
        return fail(str(exc))
    if metrics is not None:
        metrics.watch(server.store, security.limits)
    if metrics is not None and metrics_dir is None and settings.metrics_listen:
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
        if isinstance(exc, HealthPortError):
            return fail(str(exc))
        return fail(f"cannot listen on {settings.listen}: {exc}")
    # The main thread acts on each signal, so a reload never runs inside a handler, and it hears of a
    # SIGTERM even when the kernel delivered it to a gRPC thread.
    signals = SignalInbox((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    audit_target = security.audit.target if security.audit else None
    log.info("serving", extra=_fields(address=address, encord_domain=settings.encord_domain,
                                      public_key=key.public_key_hex, tls=bool(settings.tls_cert),
                                      mutual_tls=bool(settings.client_ca), callers=len(policy.callers),
                                      audit_log=audit_target))  # fmt: skip
    if server.health_address:
        announce(f"health on {server.health_address}")
    announce(f"listening on {address}")
    reloads = start_reloader(args, configured, security)
    while signals.get() == signal.SIGHUP:
        reloads.put(None)
    # A second SIGTERM while the calls drain changes nothing: the inbox stays open until they have.
    stuck = server.stop(
        refusing=lambda: log.info(
            "stopping: draining in-flight calls", extra=_fields(grace_s=settings.grace_period)
        )
    )
    signals.close()
    if metrics is not None:
        metrics.close()
    if tracing is not None:
        tracing.shutdown()  # the spans still queued, the last calls' among them
    if stuck:
        # A normal exit would wait for them (the thread pool joins its workers at interpreter exit),
        # holding the process until their upstream deadline; their callers are already cut off.
        log.warning("stopped; abandoning calls stuck past the grace period", extra=_fields(calls=stuck))
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    log.info("stopped")
    return 0


def start_reloader(
    args: argparse.Namespace, running: config.Settings, security: Security
) -> queue.SimpleQueue[None]:
    """A thread that reloads once per item put; the main thread never waits for a reload.

    Whatever a reload gets stuck on (a file that blocks, a slow disk), SIGTERM still stops the gateway:
    the stuck thread is a daemon and is left behind. Reloads run one at a time, in the order asked.
    """
    asked: queue.SimpleQueue[None] = queue.SimpleQueue()

    def loop() -> None:
        while True:
            asked.get()
            reload(args, running, security)

    threading.Thread(target=loop, name="config-reload", daemon=True).start()
    return asked


def reload(args: argparse.Namespace, running: config.Settings, security: Security) -> None:
    """Re-reads the config; a broken one is refused and the policy in force stays."""
    try:
        new, policy = configure(args, os.environ)
        security.reload(policy, running)
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
