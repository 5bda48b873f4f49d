"""The `encord-gateway` command line: serve, emulator, keys and audit."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from encord_gateway import __version__

# Each subcommand lives in its own module with `add_arguments(parser)` and
# `run(args) -> int`; it is imported only when chosen, so `keys` does not load
# the server and `serve` does not load the emulator.
SUBCOMMANDS = {
    "serve": ("encord_gateway.cli.serve", "run the gRPC gateway"),
    "emulator": ("encord_gateway.emulator.cli", "run the local Encord emulator"),
    "keys": ("encord_gateway.cli.keys", "create and list API keys through a running gateway"),
    "audit": ("encord_gateway.cli.audit", "search the audit trail (who minted a key?)"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encord-gateway", description="A gRPC gateway that mints Encord API keys."
    )
    parser.add_argument("--version", action="version", version=f"encord-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return int(args.run(args))
