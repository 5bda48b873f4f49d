"""The emulator's settings: one frozen value built from flags, ENCORD_EMULATOR_* variables and the fixture."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The gateway's bottom module of plain values: the one flag > env > TOML > default lookup and bool parser.
from encord_gateway.config.sources import ENV, FLAG, Layers, Picked, parse_bool
from encord_gateway.emulator.faults import FaultSettings
from encord_gateway.emulator.fixture import Fixture, FixtureError, load_fixture

ENV_PREFIX = "ENCORD_EMULATOR_"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
# Each fault flag: its argparse dest, the FaultSettings field and [faults] key, and the value parser.
FAULT_FLAGS: dict[str, Callable[[str], Any]] = {
    "latency_ms": int,
    "error_rate": float,
    "drop_rate": float,
    "garbage_rate": float,
}
PATHS = ("state", "fixture", "tls_cert", "tls_key")
SWITCHES = ("mirror_status", "quiet", "scopes_as_string", "admin_any_host")
_FAULT_DEFAULTS = FaultSettings()


class OptionsError(ValueError):
    """A flag, variable or fixture setting is wrong or conflicts with another."""


@dataclass(frozen=True)
class Options:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    state: Path | None = None
    fixture_path: Path | None = None  # None: the bundled demo fixture
    fixture: Fixture = field(default_factory=Fixture)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    mirror_status: bool = False
    quiet: bool = False
    scopes_as_string: bool = False
    admin_any_host: bool = False
    faults: FaultSettings = field(default_factory=FaultSettings)
    # Where each setting came from (flag, env, toml or default), by its flag's dest.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT`; port 0 picks a free port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise OptionsError(f"--listen must be HOST:PORT, not {value!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise OptionsError(f"--listen: {port_text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise OptionsError(f"--listen: port {port} is out of range")
    return host, port


def _value(picked: Picked, name: str, parse: Callable[[str], Any]) -> Any:
    """A flag's value as argparse typed it; a variable's text parsed, its error named after the variable."""
    if picked.source != ENV:
        return picked.value
    try:
        return parse(picked.value)
    except ValueError as exc:
        raise OptionsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc


def _switch(picked: Picked, name: str) -> bool:
    if picked.source == ENV:
        try:
            return parse_bool(picked.value)
        except ValueError:
            variable, text = ENV_PREFIX + name.upper(), picked.value
            raise OptionsError(f"{variable}: {variable} must be true or false, not {text!r}") from None
    return bool(picked.value)


def build_options(args: argparse.Namespace, env: Mapping[str, str]) -> Options:
    """Flags win over ENCORD_EMULATOR_* variables, which win over the fixture's [faults] table."""
    layers = Layers(vars(args), env)

    def pick(name: str, default: Any = None) -> Picked:
        return layers.pick(name, env=ENV_PREFIX + name.upper(), default=default)

    picks = {name: pick(name) for name in (*PATHS, *SWITCHES)}
    picks["listen"] = pick("listen", DEFAULT_LISTEN)
    host, port = parse_listen(picks["listen"].value)
    paths: dict[str, Path | None] = {name: _value(picks[name], name, Path) for name in PATHS}
    if (paths["tls_cert"] is None) != (paths["tls_key"] is None):
        raise OptionsError("--tls-cert and --tls-key go together")
    try:
        fixture = load_fixture(paths["fixture"])
    except FixtureError as exc:
        raise OptionsError(str(exc)) from exc
    try:
        faults = FaultSettings.from_mapping(fixture.faults)
    except (ValueError, TypeError) as exc:
        raise OptionsError(f"{paths['fixture'] or 'demo fixture'}: [faults]: {exc}") from exc
    # The fixture's [faults] is the file layer: a fault flag or variable wins over it.
    fault_layers = Layers(vars(args), env, fixture.faults, str(paths["fixture"] or "demo fixture"))
    overrides = {}
    for name, parse in FAULT_FLAGS.items():
        picks[name] = fault_layers.pick(
            name, env=ENV_PREFIX + name.upper(), key=name, default=getattr(_FAULT_DEFAULTS, name)
        )
        if picks[name].source in (FLAG, ENV):
            overrides[name] = _value(picks[name], name, parse)
    try:
        faults = FaultSettings.from_mapping(overrides, faults)
    except ValueError as exc:
        raise OptionsError(f"fault setting: {exc}") from exc
    return Options(
        host=host,
        port=port,
        state=paths["state"],
        fixture_path=paths["fixture"],
        fixture=fixture,
        tls_cert=paths["tls_cert"],
        tls_key=paths["tls_key"],
        mirror_status=_switch(picks["mirror_status"], "mirror_status"),
        quiet=_switch(picks["quiet"], "quiet"),
        scopes_as_string=_switch(picks["scopes_as_string"], "scopes_as_string"),
        admin_any_host=_switch(picks["admin_any_host"], "admin_any_host"),
        faults=faults,
        sources={name: picked.source for name, picked in picks.items()},
    )
