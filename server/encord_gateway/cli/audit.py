"""`encord-gateway audit lookup`: which caller minted (or was handed) a key, when, and with which scopes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from encord_gateway.access.audit import BadQuery, lookup, query_prefix
from encord_gateway.config import BY_NAME, FLAG, Layers

EXIT_FOUND, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
# The variable `serve --audit-log` reads too: the lookup searches where the gateway writes.
AUDIT_LOG_ENV = BY_NAME["audit_log"].env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    find = actions.add_parser(
        "lookup",
        help="find the audit records of a key",
        description="Find who minted a key (the question a leaked key raises) in one or more audit logs. "
        "Give the key itself (it is fingerprinted, never printed), '-' to read the key from stdin, "
        "or a fingerprint prefix of at least 8 hex digits.",
    )
    find.add_argument(
        "key", metavar="KEY_OR_FINGERPRINT", help="an API key, '-' (read it from stdin) or a fingerprint"
    )
    find.add_argument(
        "--audit-log",
        action="append",
        metavar="FILE",
        help=f"audit log to search, repeatable for rotated files; '-' reads stdin [env {AUDIT_LOG_ENV}]",
    )
    find.add_argument("--json", action="store_true", help="print the matching audit records as JSON lines")


def _lines(paths: list[str]) -> Iterator[str]:
    for path in paths:
        if path == "-":
            yield from sys.stdin
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f


def _describe(line: dict[str, Any]) -> str:
    if line.get("created") is True:
        what = "minted"
    elif line.get("created") is False:
        what = "was handed the existing"
    else:
        what = "received"
    scopes = ", ".join(line.get("scopes_granted") or []) or "-"
    return (
        f"{line.get('time', '?')}  caller {line.get('caller') or '?'} {what} {line.get('resource_kind', '')} "
        f"key {line.get('fingerprint')} for {line.get('resource_hash', '?')} via {line.get('method', '?')}\n"
        f"    title {line.get('title', '')!r}; scopes {scopes}; peer {line.get('peer', '?')}; "
        f"auth {line.get('auth', '?')}; trace {line.get('trace_id', '?')}"
    )


def audit_logs(args: argparse.Namespace, env: Mapping[str, str]) -> list[str]:
    """The logs to search: each --audit-log given, else the one $ENCORD_GATEWAY_AUDIT_LOG names, else none."""
    picked = Layers(vars(args), env).pick("audit_log", env=AUDIT_LOG_ENV)
    if picked.value is None:
        return []
    return list(picked.value) if picked.source == FLAG else [picked.value]


def run(args: argparse.Namespace) -> int:
    paths = audit_logs(args, os.environ)
    if not paths:
        print(f"encord-gateway: error: give --audit-log FILE (or set {AUDIT_LOG_ENV})", file=sys.stderr)
        return EXIT_USAGE
    query = args.key
    if query == "-":
        if "-" in paths:
            print("encord-gateway: error: stdin cannot hold both the key and the audit log", file=sys.stderr)
            return EXIT_USAGE
        query = sys.stdin.readline()
    try:
        prefix = query_prefix(query)
        found = lookup(_lines(paths), prefix)
    except BadQuery as exc:
        print(f"encord-gateway: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"encord-gateway: error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for line in found:
        # ASCII, as the trail is written: a title with U+2028 or a bidi control prints escaped.
        print(json.dumps(line) if args.json else _describe(line))
    if not found:
        print(f"no audit record of a key with fingerprint {prefix}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_FOUND
