"""One precedence, flag > environment > TOML > default, for serve, the emulator and the keys CLI alike."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from encord_gateway import config
from encord_gateway.cli import keys
from encord_gateway.config import DEFAULT, ENV, FILE, FLAG
from encord_gateway.emulator import cli as emulator_cli
from encord_gateway.emulator.options import FAULT_FLAGS, OptionsError, build_options

LAYERS = (FLAG, ENV, FILE)


@dataclass(frozen=True)
class Case:
    """One setting as each layer spells it, and the value each layer should yield."""

    name: str  # the setting (and argparse dest)
    flag: tuple[str, ...]  # argv that sets it
    env: tuple[str, str]  # (variable, text)
    toml: str | None  # the TOML line (the emulator's [faults] table, serve's file); None: no file layer
    want: Mapping[str, Any]  # layer -> the value it yields, DEFAULT included


def combinations(cases: list[Case]) -> list[tuple[Case, tuple[str, ...]]]:
    """Every subset of the layers a case has, each with its case: 2**3 or 2**2 rows per setting."""
    rows: list[tuple[Case, tuple[str, ...]]] = []
    for case in cases:
        layers = [layer for layer in LAYERS if layer != FILE or case.toml is not None]
        for n in range(len(layers) + 1):
            rows.extend((case, given) for given in itertools.combinations(layers, n))
    return rows


def expected(case: Case, given: tuple[str, ...]) -> tuple[Any, str]:
    source = next((layer for layer in LAYERS if layer in given), DEFAULT)
    return case.want[source], source


def row_id(row: tuple[Case, tuple[str, ...]]) -> str:
    case, given = row
    return f"{case.name}:{'+'.join(given) or 'none'}"


def parser_for(add_arguments: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    return parser


# serve -------------------------------------------------------------------------------------------------

SERVE = [
    Case("listen", ("--listen", "127.0.0.1:1"), ("ENCORD_GATEWAY_LISTEN", "127.0.0.1:2"),
         'listen = "127.0.0.1:3"',
         {FLAG: "127.0.0.1:1", ENV: "127.0.0.1:2", FILE: "127.0.0.1:3", DEFAULT: "127.0.0.1:50051"}),
    Case("workers", ("--workers", "5"), ("ENCORD_GATEWAY_WORKERS", "6"), "workers = 7",
         {FLAG: 5, ENV: 6, FILE: 7, DEFAULT: 64}),
    Case("default_deadline", ("--default-deadline", "1.5"), ("ENCORD_GATEWAY_DEFAULT_DEADLINE", "2.5"),
         "default_deadline = 3.5", {FLAG: 1.5, ENV: 2.5, FILE: 3.5, DEFAULT: 30.0}),
    # A flag can only turn a switch on; the variable here turns it off, so each layer is told apart.
    Case("insecure", ("--insecure",), ("ENCORD_GATEWAY_INSECURE", "off"), "insecure = true",
         {FLAG: True, ENV: False, FILE: True, DEFAULT: False}),
    Case("log_level", ("--log-level", "debug"), ("ENCORD_GATEWAY_LOG_LEVEL", "warning"),
         'log_level = "error"', {FLAG: "debug", ENV: "warning", FILE: "error", DEFAULT: "info"}),
    Case("state_prefix", ("--state-prefix", "f:"), ("ENCORD_GATEWAY_STATE_PREFIX", "e:"),
         'state_prefix = "t:"', {FLAG: "f:", ENV: "e:", FILE: "t:", DEFAULT: "encord-gateway:"}),
    Case("health_listen", ("--health-listen", "127.0.0.1:4"), ("ENCORD_GATEWAY_HEALTH_LISTEN", "127.0.0.1:5"),
         'health_listen = "127.0.0.1:6"',
         {FLAG: "127.0.0.1:4", ENV: "127.0.0.1:5", FILE: "127.0.0.1:6", DEFAULT: None}),
]  # fmt: skip


def load_serve(tmp_path: Path, argv: list[str], env: dict[str, str], toml: list[str]) -> config.Settings:
    if toml:
        path = tmp_path / "gateway.toml"
        path.write_text("\n".join(toml) + "\n")
        argv = [*argv, "--config", str(path)]
    return config.load(parser_for(config.add_arguments).parse_args(argv), env)


@pytest.mark.parametrize("row", combinations(SERVE), ids=row_id)
def test_serve_precedence(tmp_path: Path, row: tuple[Case, tuple[str, ...]]) -> None:
    case, given = row
    argv = list(case.flag) if FLAG in given else []
    env = dict([case.env]) if ENV in given else {}
    settings = load_serve(tmp_path, argv, env, [case.toml] if FILE in given and case.toml else [])
    value, source = expected(case, given)
    assert getattr(settings, case.name) == value
    assert settings.sources[case.name] == source


def test_serve_listen_is_split_once_into_host_and_port(tmp_path: Path) -> None:
    settings = load_serve(tmp_path, ["--listen", "[::1]:0"], {}, [])
    assert (settings.listen_host, settings.listen_port) == ("::1", 0)
    moved = config.Settings(listen="10.1.2.3:8443")
    assert (moved.listen_host, moved.listen_port) == ("10.1.2.3", 8443)


def test_an_empty_variable_is_unset(tmp_path: Path) -> None:
    settings = load_serve(tmp_path, [], {"ENCORD_GATEWAY_WORKERS": ""}, ["workers = 7"])
    assert (settings.workers, settings.sources["workers"]) == (7, FILE)


def test_the_config_flag_wins_over_its_variable(tmp_path: Path) -> None:
    (tmp_path / "flag.toml").write_text("workers = 1\n")
    (tmp_path / "env.toml").write_text("workers = 2\n")
    env = {"ENCORD_GATEWAY_CONFIG": str(tmp_path / "env.toml")}
    args = parser_for(config.add_arguments).parse_args(["--config", str(tmp_path / "flag.toml")])
    settings = config.load(args, env)
    assert (settings.workers, settings.config, settings.sources["config"]) == (1, str(args.config), FLAG)
    settings = config.load(parser_for(config.add_arguments).parse_args([]), env)
    assert (settings.workers, settings.sources["config"]) == (2, ENV)


# The SDK's order for the signing key: --ssh-key-file, $ENCORD_SSH_KEY_FILE, $ENCORD_SSH_KEY, the file's.
SSH_KEY = [
    ({"flag", "env_file", "env_text", "toml"}, "/f", None, "--ssh-key-file /f"),
    ({"env_file", "env_text", "toml"}, "/e", None, "$ENCORD_SSH_KEY_FILE (/e)"),
    ({"env_text", "toml"}, None, "KEY TEXT", "$ENCORD_SSH_KEY"),
    ({"toml"}, "/t", None, "ssh_key_file in {path} (/t)"),
    (set(), None, None, ""),
]


@pytest.mark.parametrize(("given", "file", "text", "source"), SSH_KEY, ids=lambda v: str(v))
def test_serve_signing_key_precedence(
    tmp_path: Path, given: set[str], file: str | None, text: str | None, source: str
) -> None:
    argv = ["--ssh-key-file", "/f"] if "flag" in given else []
    env = {"ENCORD_SSH_KEY_FILE": "/e"} if "env_file" in given else {}
    env |= {"ENCORD_SSH_KEY": "KEY TEXT"} if "env_text" in given else {}
    settings = load_serve(tmp_path, argv, env, ['ssh_key_file = "/t"'] if "toml" in given else [])
    assert (settings.ssh_key_file, settings.ssh_key_text) == (file, text)
    assert settings.ssh_key_source == source.format(path=tmp_path / "gateway.toml")


SERVE_INVALID = [
    ([], {"ENCORD_GATEWAY_WORKERS": "many"}, None,
     "workers from $ENCORD_GATEWAY_WORKERS must be int, not 'many'"),
    (["--workers", "0"], {}, None, "workers from --workers must be from 1 to 1024, not 0"),
    ([], {}, "workers = 1.5", "workers from {path} must be int, not 1.5"),
    ([], {"ENCORD_GATEWAY_INSECURE": "maybe"}, None,
     "insecure from $ENCORD_GATEWAY_INSECURE must be bool, not 'maybe'"),
    ([], {}, 'insecure = "sometimes"', "insecure from {path} must be bool, not 'sometimes'"),
    ([], {}, "listen = 50051", "listen from {path} must be str, not 50051"),
    (["--listen", "nowhere"], {}, None,
     "listen must be HOST:PORT with a port from 0 to 65535, not 'nowhere'"),
    ([], {}, "lisen = 'x'", "config file {path} has unknown settings: lisen"),
    ([], {}, '[[callers]]\nname = "ci"', None),  # the policy is the next layer's: not a settings error
]  # fmt: skip


@pytest.mark.parametrize(("argv", "env", "toml", "message"), SERVE_INVALID)
def test_serve_invalid_values_are_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], toml: str | None, message: str | None
) -> None:
    if message is None:
        load_serve(tmp_path, argv, env, [toml] if toml else [])
        return
    with pytest.raises(config.ConfigError) as refused:
        load_serve(tmp_path, argv, env, [toml] if toml else [])
    assert str(refused.value) == message.format(path=tmp_path / "gateway.toml")


# the emulator -------------------------------------------------------------------------------------------

EMULATOR = [
    Case("listen", ("--listen", "127.0.0.1:1"), ("ENCORD_EMULATOR_LISTEN", "127.0.0.1:2"), None,
         {FLAG: ("127.0.0.1", 1), ENV: ("127.0.0.1", 2), DEFAULT: ("127.0.0.1", 8080)}),
    Case("state", ("--state", "/f.db"), ("ENCORD_EMULATOR_STATE", "/e.db"), None,
         {FLAG: Path("/f.db"), ENV: Path("/e.db"), DEFAULT: None}),
    Case("quiet", ("--quiet",), ("ENCORD_EMULATOR_QUIET", "No"), None,
         {FLAG: True, ENV: False, DEFAULT: False}),
    Case("mirror_status", ("--mirror-status",), ("ENCORD_EMULATOR_MIRROR_STATUS", " YES "), None,
         {FLAG: True, ENV: True, DEFAULT: False}),
    # The fixture's [faults] table is the emulator's file layer.
    Case("latency_ms", ("--latency-ms", "5"), ("ENCORD_EMULATOR_LATENCY_MS", "6"), "latency_ms = 7",
         {FLAG: 5, ENV: 6, FILE: 7, DEFAULT: 0}),
    Case("error_rate", ("--error-rate", "0.1"), ("ENCORD_EMULATOR_ERROR_RATE", "0.2"), "error_rate = 0.3",
         {FLAG: 0.1, ENV: 0.2, FILE: 0.3, DEFAULT: 0.0}),
]  # fmt: skip


def emulator_value(options: Any, name: str) -> Any:
    if name == "listen":
        return (options.host, options.port)
    if name in FAULT_FLAGS:
        return getattr(options.faults, name)
    return getattr(options, name)


def build_emulator(tmp_path: Path, argv: list[str], env: dict[str, str], faults: list[str]) -> Any:
    # A fixture of our own: the bundled demo one spells out every fault, at its default.
    path = tmp_path / "fixture.toml"
    path.write_text("[faults]\n" + "".join(f"{line}\n" for line in faults))
    argv = [*argv, "--fixture", str(path)]
    return build_options(parser_for(emulator_cli.add_arguments).parse_args(argv), env)


@pytest.mark.parametrize("row", combinations(EMULATOR), ids=row_id)
def test_emulator_precedence(tmp_path: Path, row: tuple[Case, tuple[str, ...]]) -> None:
    case, given = row
    argv = list(case.flag) if FLAG in given else []
    env = dict([case.env]) if ENV in given else {}
    options = build_emulator(tmp_path, argv, env, [case.toml] if FILE in given and case.toml else [])
    value, source = expected(case, given)
    assert emulator_value(options, case.name) == value
    assert options.sources[case.name] == source


EMULATOR_INVALID = [
    ([], {"ENCORD_EMULATOR_LATENCY_MS": "soon"}, [],
     "ENCORD_EMULATOR_LATENCY_MS: invalid literal for int() with base 10: 'soon'"),
    ([], {"ENCORD_EMULATOR_QUIET": "maybe"}, [],
     "ENCORD_EMULATOR_QUIET: ENCORD_EMULATOR_QUIET must be true or false, not 'maybe'"),
    (["--listen", "nowhere"], {}, [], "--listen must be HOST:PORT, not 'nowhere'"),
    ([], {"ENCORD_EMULATOR_LISTEN": "127.0.0.1:70000"}, [], "--listen: port 70000 is out of range"),
    (["--tls-cert", "/c.pem"], {}, [], "--tls-cert and --tls-key go together"),
    ([], {"ENCORD_EMULATOR_ERROR_RATE": "2"}, [],
     "fault setting: error_rate must be a number from 0.0 to 1.0"),
    ([], {}, ["drop_rate = 'often'"], "{path}: [faults]: drop_rate must be a number from 0.0 to 1.0"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "env", "faults", "message"), EMULATOR_INVALID)
def test_emulator_invalid_values_are_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], faults: list[str], message: str
) -> None:
    with pytest.raises(OptionsError) as refused:
        build_emulator(tmp_path, argv, env, faults)
    assert str(refused.value) == message.format(path=tmp_path / "fixture.toml")


# the keys CLI -------------------------------------------------------------------------------------------

KEYS = [
    Case("gateway", ("--gateway", "10.0.0.1:1"), ("ENCORD_GATEWAY_ADDRESS", "10.0.0.2:2"), None,
         {FLAG: "10.0.0.1:1", ENV: "10.0.0.2:2", DEFAULT: "127.0.0.1:50051"}),
    Case("token", ("--token", "flag-token"), ("ENCORD_GATEWAY_TOKEN", "env-token"), None,
         {FLAG: "flag-token", ENV: "env-token", DEFAULT: None}),
    Case("tls_ca", ("--tls-ca", "/f.pem"), ("ENCORD_GATEWAY_TLS_CA", "/e.pem"), None,
         {FLAG: "/f.pem", ENV: "/e.pem", DEFAULT: None}),
    Case("client_key", ("--client-key", "/f.key"), ("ENCORD_GATEWAY_CLIENT_KEY", "/e.key"), None,
         {FLAG: "/f.key", ENV: "/e.key", DEFAULT: None}),
]  # fmt: skip
LISTING = ["list-project-keys", "--project", "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"]


@pytest.mark.parametrize("row", combinations(KEYS), ids=row_id)
@pytest.mark.parametrize("where", ["before", "after"])
def test_keys_precedence(row: tuple[Case, tuple[str, ...]], where: str) -> None:
    case, given = row
    flag = list(case.flag) if FLAG in given else []
    # The connection flags are accepted before the action and after it.
    argv = [*flag, *LISTING] if where == "before" else [*LISTING, *flag]
    env = dict([case.env]) if ENV in given else {}
    connection = keys.Connection.from_args(parser_for(keys.add_arguments).parse_args(argv), env)
    value, source = expected(case, given)
    assert getattr(connection, case.name) == value
    assert connection.sources[case.name] == source


# the one boolean parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [(w, True) for w in ("1", "true", "TRUE", " yes ", "On")]
    + [(w, False) for w in ("0", "false", "No", " off", "FALSE")],
)
def test_parse_bool_words(text: str, value: bool) -> None:
    assert config.parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "2", "y", "truthy", "enable", "nope"])
def test_parse_bool_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        config.parse_bool(text)
