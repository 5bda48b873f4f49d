"""`encord-gateway keys`: create, list and get-or-create API keys through a running gateway."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from encord_gateway_client import (
    DatasetApiKey,
    DatasetScope,
    GatewayClient,
    GatewayError,
    ProjectApiKey,
    ProjectScope,
    connect,
)

from encord_gateway.config.sources import Layers

DEFAULT_GATEWAY = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 30.0
PROG = "encord-gateway keys"

# flag destination -> (flag, metavar, environment variable, help)
CONNECTION_FLAGS: dict[str, tuple[str, str, str, str]] = {
    "gateway": (
        "--gateway",
        "HOST:PORT",
        "ENCORD_GATEWAY_ADDRESS",
        f"the gateway (default {DEFAULT_GATEWAY})",
    ),
    "token": (
        "--token",
        "TOKEN",
        "ENCORD_GATEWAY_TOKEN",
        "caller token, sent as a bearer token; prefer the env",
    ),
    "tls_ca": (
        "--tls-ca",
        "PATH",
        "ENCORD_GATEWAY_TLS_CA",
        "CA bundle (PEM) to verify the gateway; turns on TLS",
    ),
    "client_cert": (
        "--client-cert",
        "PATH",
        "ENCORD_GATEWAY_CLIENT_CERT",
        "client certificate (PEM), mutual TLS",
    ),
    "client_key": (
        "--client-key",
        "PATH",
        "ENCORD_GATEWAY_CLIENT_KEY",
        "client private key (PEM), mutual TLS",
    ),
}

EPILOG = (
    "Output is a table, or JSON with --json. Lists mask each key (its first 4 characters and its "
    "fingerprint) unless --show-keys; create-* and master-* print the one key they hand out in full, "
    "since handing it out is what they are for. JSON is for scripts and always holds full keys. "
    "On error: one line on stderr naming the gRPC code and reason, and exit code 1 (2 for bad usage)."
)

Key = ProjectApiKey | DatasetApiKey
Answer = Key | list[ProjectApiKey] | list[DatasetApiKey]


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the gateway, from flags, else the environment, else defaults."""

    gateway: str = DEFAULT_GATEWAY
    token: str | None = dataclasses.field(default=None, repr=False)
    tls_ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    # Where each connection setting came from (flag, env or default), by its flag's dest.
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str]) -> Connection:
        """Each setting from its flag, else its variable, else the default (the one lookup `serve` uses)."""
        layers = Layers(vars(args), environ)
        picks = {dest: layers.pick(dest, env=env) for dest, (_, _, env, _) in CONNECTION_FLAGS.items()}
        # An empty value is no value: `--token ""` sends no token, `--tls-ca ""` means plaintext.
        values: dict[str, Any] = {dest: picked.value or None for dest, picked in picks.items()}
        values["gateway"] = values["gateway"] or DEFAULT_GATEWAY
        return cls(**values, timeout=args.timeout, sources={d: p.source for d, p in picks.items()})

    def open(self) -> GatewayClient:
        return connect(
            self.gateway,
            token=self.token,
            tls_ca=self.tls_ca,
            client_cert=self.client_cert,
            client_key=self.client_key,
            default_timeout=self.timeout,
        )


# --- the actions ------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    name: str
    help: str
    resource: str  # "project" or "dataset"
    creates: bool  # takes --title and --scope
    call: Callable[[GatewayClient, argparse.Namespace], Answer]
    # Whether the table shows full keys without --show-keys: true where handing out a key is the point.
    reveals: bool


ACTIONS = (
    Action(
        "create-project-key",
        "mint a new API key for a project",
        "project",
        True,
        lambda c, a: c.create_project_api_key(
            a.project, a.title, a.scope, request_id=a.request_id, trace_id=a.trace_id
        ),
        True,
    ),
    Action(
        "list-project-keys",
        "list a project's API keys",
        "project",
        False,
        lambda c, a: c.list_project_api_keys(a.project, trace_id=a.trace_id),
        False,
    ),
    Action(
        "master-project-key",
        "get (or create) the project's key with every scope",
        "project",
        False,
        lambda c, a: c.get_or_create_project_api_key(a.project, trace_id=a.trace_id),
        True,
    ),
    Action(
        "create-dataset-key",
        "mint a new API key for a dataset",
        "dataset",
        True,
        lambda c, a: c.create_dataset_api_key(
            a.dataset, a.title, a.scope, request_id=a.request_id, trace_id=a.trace_id
        ),
        True,
    ),
    Action(
        "list-dataset-keys",
        "list a dataset's API keys",
        "dataset",
        False,
        lambda c, a: c.list_dataset_api_keys(a.dataset, trace_id=a.trace_id),
        False,
    ),
    Action(
        "master-dataset-key",
        "get (or create) the dataset's key with both scopes",
        "dataset",
        False,
        lambda c, a: c.get_or_create_dataset_api_key(a.dataset, trace_id=a.trace_id),
        True,
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    _common_flags(parser, suppress=False)
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    for action in ACTIONS:
        sub = actions.add_parser(action.name, help=action.help, description=action.help, epilog=EPILOG)
        flag = f"--{action.resource}"
        sub.add_argument(flag, required=True, metavar="HASH", help=f"the {action.resource}'s hash (a UUID)")
        if action.creates:
            scopes = ProjectScope if action.resource == "project" else DatasetScope
            sub.add_argument("--title", required=True, help="the key's title")
            sub.add_argument(
                "--scope",
                required=True,
                action="append",
                choices=[str(s) for s in scopes],
                metavar="SCOPE",
                help=f"a scope, repeatable: {', '.join(scopes)}",
            )
            sub.add_argument(
                "--request-id",
                type=_request_id,
                default=None,
                metavar="UUID",
                help="makes the create safe to retry: the same id gets the same key (default: a new UUID)",
            )
        # The common flags are accepted after the action too; SUPPRESS keeps an absent
        # one there from overwriting the value given before the action.
        _common_flags(sub, suppress=True)
        sub.set_defaults(keys=action)


def _common_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    for dest, (flag, metavar, env, help_text) in CONNECTION_FLAGS.items():
        parser.add_argument(
            flag, dest=dest, default=default(None), metavar=metavar, help=f"{help_text} [env {env}]"
        )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"the call's deadline (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--trace-id", default=default(None), help="32 hex digits, sent as x-cloud-trace-context"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON, for scripts")
    parser.add_argument(
        "--show-keys", action="store_true", default=default(False), help="show full keys in list tables"
    )


# After these a create's outcome is unknown: the key may exist. The same request id settles it.
UNKNOWN_OUTCOME = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"})


def _request_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be a UUID such as 3f2c1a9e-8d4b-4c7e-9a1f-2b3c4d5e6f70"
        ) from None
    if str(parsed) != value.lower() or parsed.int == 0:
        raise argparse.ArgumentTypeError("must be a UUID in its 8-4-4-4-12 hex form, not all zeros")
    return value.lower()


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    action: Action = args.keys
    if action.creates and not getattr(args, "request_id", None):
        args.request_id = str(uuid.uuid4())  # made here, so that it can be printed for a retry
    try:
        connection = Connection.from_args(args, os.environ)
        with connection.open() as client:
            answer = action.call(client, args)
    except GatewayError as exc:
        trace = f" [trace {exc.trace_id}]" if exc.trace_id else ""
        print(f"{PROG}: error: {exc.summary()}{trace}", file=sys.stderr)
        if action.creates and exc.code.name in UNKNOWN_OUTCOME and exc.reason != "UPSTREAM_UNREACHABLE":
            print(
                f"{PROG}: the key may have been made; retry with the same request id to get it, never a "
                f"second one:\n  {retry_command(sys.argv[1:] if argv is None else argv, args.request_id)}",
                file=sys.stderr,
            )
        return 1
    except (ValueError, OSError) as exc:
        # Before any call: flags that do not fit together, or an unreadable certificate file.
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(render_json(answer) + "\n")
    else:
        sys.stdout.write(render_table(answer, reveal=action.reveals or args.show_keys))
    return 0


# Left out of the printed retry command: the id is replaced, and a token is never echoed.
_DROPPED_FLAGS = ("--request-id", "--token")


def retry_command(argv: Sequence[str], request_id: str) -> str:
    """The command line that was run, with its --request-id set to the id used (and no --token)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _DROPPED_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in _DROPPED_FLAGS)):
            kept.append(arg)
    return shlex.join(["encord-gateway", *kept, "--request-id", request_id])


# --- output -----------------------------------------------------------------------


def mask(api_key: str) -> str:
    """The first 4 characters and an ellipsis; "-" where the gateway sent none (policy hides it)."""
    if not api_key:
        return "-"
    return f"{api_key[:4]}…" if len(api_key) > 8 else "…"


def render_json(answer: Answer) -> str:
    if isinstance(answer, list):
        return json.dumps([dataclasses.asdict(k) for k in answer], indent=2)
    return json.dumps(dataclasses.asdict(answer), indent=2)


def render_table(answer: Answer, *, reveal: bool) -> str:
    if isinstance(answer, list):
        return _list_table(answer, reveal=reveal)
    rows = _columns(answer, reveal=reveal, resource=True)
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name.ljust(width)}  {value}\n" for name, value in rows)


def printable(text: str) -> str:
    """Text safe for a terminal: controls, separators and bidi characters (a title from Encord may hold
    ESC sequences) shown as \\uXXXX escapes instead of acting on the screen."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _columns(key: Key, *, reveal: bool, resource: bool = False) -> list[tuple[str, str]]:
    """(name, value) pairs; a list leaves out the project or dataset, which every row shares."""
    shown = (key.api_key or "-") if reveal else mask(key.api_key)
    columns = [("title", printable(key.title)), ("scopes", ",".join(key.scopes) or "-")]
    if isinstance(key, ProjectApiKey):
        columns += [("project", key.project_hash)] if resource else []
    else:
        columns += [("dataset", key.dataset_hash)] if resource else []
        columns += [("key hash", key.key_hash)]
    return [*columns, ("fingerprint", key.fingerprint or "-"), ("api key", shown)]


def _list_table(keys: Sequence[Key], *, reveal: bool) -> str:
    if not keys:
        return "no keys\n"
    rows = [[value for _, value in _columns(k, reveal=reveal)] for k in keys]
    header = [name.upper() for name, _ in _columns(keys[0], reveal=reveal)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    return "\n".join(lines) + "\n"
