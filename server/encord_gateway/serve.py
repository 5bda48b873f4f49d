"""`encord-gateway serve`: load settings and the signing key, start the server, stop on a signal."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from encord_gateway import config, logs
from encord_gateway.server import GatewayServer
from encord_gateway.signing import SigningKeyError, load_signing_key

log = logging.getLogger("encord_gateway.serve")

EXIT_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the encord_gateway.v1.ApiKeyService gRPC API, signing Encord calls with one SSH key. "
        "Each setting comes from its flag, else its environment variable, else the --config TOML file."
    )
    config.add_arguments(parser)


def fail(message: str) -> int:
    print(f"encord-gateway: error: {message}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(args, os.environ)
    except config.ConfigError as exc:
        return fail(str(exc))
    logs.configure(settings.log_level)
    try:
        key = load_signing_key(
            key_file=settings.ssh_key_file,
            key_text=settings.ssh_key_text,
            passphrase=settings.ssh_key_passphrase,
            source=settings.ssh_key_source,
        )
    except SigningKeyError as exc:
        return fail(str(exc))
    server = GatewayServer(settings, key)
    try:
        address = server.start()
    except (OSError, RuntimeError) as exc:
        return fail(f"cannot listen on {settings.listen}: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("serving", extra={logs.FIELDS: {"address": address, "encord_domain": settings.encord_domain,
                                             "public_key": key.public_key_hex}})
    print(f"listening on {address}", flush=True)
    stop.wait()
    log.info("stopping: draining in-flight calls", extra={logs.FIELDS: {"grace_s": settings.grace_period}})
    server.stop()
    log.info("stopped")
    return 0
