"""The emulator's settings: one frozen value built from flags, ENCORD_EMULATOR_* variables and the fixture."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from encord_gateway.emulator.faults import FaultSettings
from encord_gateway.emulator.fixture import Fixture, FixtureError, load_fixture

ENV_PREFIX = "ENCORD_EMULATOR_"
DEFAULT_LISTEN = "127.0.0.1:8080"
# Each fault flag: its argparse dest, the FaultSettings field and the value parser.
FAULT_FLAGS: dict[str, Callable[[str], Any]] = {
    "latency_ms": int,
    "error_rate": float,
    "drop_rate": float,
    "garbage_rate": float,
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
T = TypeVar("T")


class OptionsError(ValueError):
    """A flag, variable or fixture setting is wrong or conflicts with another."""


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    port: int = 8080
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


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise OptionsError(f"{name} must be true or false, not {value!r}")


def _pick(flag: T | None, env: Mapping[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    """The flag if given, else the environment variable, else None."""
    if flag is not None:
        return flag
    raw = env.get(ENV_PREFIX + name.upper())
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise OptionsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc


def _flag_bool(args: argparse.Namespace, env: Mapping[str, str], name: str) -> bool:
    value = _pick(getattr(args, name), env, name, lambda raw: parse_bool(ENV_PREFIX + name.upper(), raw))
    return bool(value)


def build_options(args: argparse.Namespace, env: Mapping[str, str]) -> Options:
    """Flags win over ENCORD_EMULATOR_* variables, which win over the fixture's [faults] table."""
    host, port = parse_listen(_pick(args.listen, env, "listen", str) or DEFAULT_LISTEN)
    state = _pick(args.state, env, "state", Path)
    fixture_path = _pick(args.fixture, env, "fixture", Path)
    tls_cert = _pick(args.tls_cert, env, "tls_cert", Path)
    tls_key = _pick(args.tls_key, env, "tls_key", Path)
    if (tls_cert is None) != (tls_key is None):
        raise OptionsError("--tls-cert and --tls-key go together")
    try:
        fixture = load_fixture(fixture_path)
    except FixtureError as exc:
        raise OptionsError(str(exc)) from exc
    try:
        faults = FaultSettings.from_mapping(fixture.faults)
    except (ValueError, TypeError) as exc:
        raise OptionsError(f"{fixture_path or 'demo fixture'}: [faults]: {exc}") from exc
    overrides = {}
    for name, parse in FAULT_FLAGS.items():
        value = _pick(getattr(args, name), env, name, parse)
        if value is not None:
            overrides[name] = value
    try:
        faults = FaultSettings.from_mapping(overrides, faults)
    except ValueError as exc:
        raise OptionsError(f"fault setting: {exc}") from exc
    return replace(
        Options(),
        host=host,
        port=port,
        state=state,
        fixture_path=fixture_path,
        fixture=fixture,
        tls_cert=tls_cert,
        tls_key=tls_key,
        mirror_status=_flag_bool(args, env, "mirror_status"),
        quiet=_flag_bool(args, env, "quiet"),
        scopes_as_string=_flag_bool(args, env, "scopes_as_string"),
        admin_any_host=_flag_bool(args, env, "admin_any_host"),
        faults=faults,
    )
