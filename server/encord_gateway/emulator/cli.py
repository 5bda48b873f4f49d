"""`encord-gateway emulator`: flags, start-up, the `listening on` line, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
from pathlib import Path

from encord_gateway.emulator.options import DEFAULT_LISTEN, OptionsError, build_options

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults are None so that build_options can tell a flag from an ENCORD_EMULATOR_* variable.
    env = "env ENCORD_EMULATOR_"
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"address to serve on; port 0 picks a free port (default {DEFAULT_LISTEN}; {env}LISTEN)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help=f"SQLite file that keeps keys across restarts (default: in memory; {env}STATE)",
    )
    parser.add_argument(
        "--fixture",
        type=Path,
        metavar="FILE",
        help=f"TOML fixture of users, projects, datasets and faults "
        f"(default: the bundled demo fixture; {env}FIXTURE)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help=f"serve HTTPS with this PEM certificate ({env}TLS_CERT)"
    )
    parser.add_argument(
        "--tls-key", type=Path, metavar="FILE", help=f"the certificate's PEM private key ({env}TLS_KEY)"
    )
    parser.add_argument(
        "--mirror-status",
        action="store_const",
        const=True,
        help=f"put the JSON status of "
        f"error answers into the HTTP status line (default: HTTP 200; {env}MIRROR_STATUS)",
    )
    parser.add_argument(
        "--scopes-as-string",
        action="store_const",
        const=True,
        help=f"list keys' scopes as a JSON-encoded string instead of a list ({env}SCOPES_AS_STRING)",
    )
    parser.add_argument(
        "--quiet", action="store_const", const=True, help=f"no per-request log lines ({env}QUIET)"
    )
    parser.add_argument(
        "--admin-any-host",
        action="store_const",
        const=True,
        help=f"let non-loopback clients use /_emulator/ ({env}ADMIN_ANY_HOST)",
    )
    faults = parser.add_argument_group(
        "fault injection (off by default; flags win over variables and [faults])"
    )
    faults.add_argument(
        "--latency-ms", type=int, metavar="N", help=f"added latency per API call ({env}LATENCY_MS)"
    )
    faults.add_argument(
        "--error-rate", type=float, metavar="F", help=f"share of HTTP 503 answers ({env}ERROR_RATE)"
    )
    faults.add_argument(
        "--drop-rate",
        type=float,
        metavar="F",
        help=f"share of connections closed without an answer ({env}DROP_RATE)",
    )
    faults.add_argument(
        "--garbage-rate", type=float, metavar="F", help=f"share of non-JSON answers ({env}GARBAGE_RATE)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = build_options(args, os.environ)
    except OptionsError as exc:
        print(f"encord-gateway emulator: {exc}", file=sys.stderr)
        return 2
    # Blocked before any thread starts, so every thread inherits the mask and the stop
    # signals reach only sigwait() below, which then shuts down in order.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        from encord_gateway.emulator.app import Emulator

        try:
            emulator = Emulator(options)
        except OptionsError as exc:
            print(f"encord-gateway emulator: {exc}", file=sys.stderr)
            return 2
        except (OSError, sqlite3.Error) as exc:
            print(f"encord-gateway emulator: cannot start: {exc}", file=sys.stderr)
            return 1
        print(f"listening on {emulator.address}", flush=True)
        signal.sigwait(STOP_SIGNALS)
        emulator.stop()
        return 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
