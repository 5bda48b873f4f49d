"""Building Settings once: each option from its flag, else env, else the TOML file, else its default."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from encord_gateway.config.files import read_document, read_passphrase, read_state_password
from encord_gateway.config.options import OPTIONS, PROXY_VARIABLES, ConfigError, Option, check_range
from encord_gateway.config.settings import Settings
from encord_gateway.config.sources import DEFAULT, ENV, FILE, FLAG, Layers, Picked, parse_bool
from encord_gateway.config.validate import validate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option; its default is None so that env and file can fill the gap."""
    for option in OPTIONS:
        help_text = f"{option.help} [env {option.env}; default {option.default}]"
        if option.kind is bool:
            parser.add_argument(option.flag, action="store_const", const=True, default=None, help=help_text)
        else:
            parser.add_argument(option.flag, default=None, metavar=option.metavar, help=help_text)


def convert(option: Option, picked: Picked) -> Any:
    """The picked value as the option's type, in range; a default is taken as it is."""
    if picked.source == DEFAULT:
        return option.default
    value = picked.value
    try:
        if option.kind is bool:
            # TOML has booleans; a flag is store_const True; a variable is text.
            converted: Any = value if isinstance(value, bool) else parse_bool(str(value))
        elif option.kind is str:
            if not isinstance(value, str):
                raise ValueError(value)
            converted = value
        elif isinstance(value, bool) or (option.kind is int and isinstance(value, float)):
            # TOML's 1.5 for a whole number would otherwise become 1 without a word.
            raise ValueError(value)
        else:
            converted = option.kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{option.name} from {picked.origin} must be {option.kind.__name__}, not {value!r}"
        ) from None
    check_range(option, converted, picked.origin)
    return converted


def load(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Flags > environment > TOML file > defaults, then validated."""
    flags = vars(args)
    config_pick = Layers(flags, env).pick("config", env="ENCORD_GATEWAY_CONFIG")
    config_path = config_pick.value or None
    document = read_document(config_path) if config_path else {}
    known = {o.name for o in OPTIONS} | {"callers"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigError(f"config file {config_path} has unknown settings: {', '.join(unknown)}")
    layers = Layers(flags, env, document, config_path or "")
    picks = {o.name: layers.pick(o.name, env=o.env, key=o.name, default=o.default) for o in OPTIONS}
    picks["config"] = config_pick  # the file cannot name itself
    values = {o.name: convert(o, picks[o.name]) for o in OPTIONS}
    values["config"] = config_path
    ssh_key_file, key_text, source = values["ssh_key_file"], None, ""
    key_text_pick = layers.pick("ssh_key_text", env="ENCORD_SSH_KEY")
    if ssh_key_file and picks["ssh_key_file"].source == FLAG:
        source = f"--ssh-key-file {ssh_key_file}"
    elif ssh_key_file and picks["ssh_key_file"].source == ENV:
        source = f"$ENCORD_SSH_KEY_FILE ({ssh_key_file})"
    elif key_text_pick.source == ENV:
        # The SDK's order: a key file first, then the key text itself (before a file the TOML names).
        values["ssh_key_file"], key_text, source = None, key_text_pick.value, "$ENCORD_SSH_KEY"
    elif ssh_key_file and picks["ssh_key_file"].source == FILE:
        source = f"ssh_key_file in {config_path} ({ssh_key_file})"
    state_password_file = values["state_password_file"]
    settings = Settings(
        **values,
        state_password=read_state_password(state_password_file) if state_password_file else None,
        ssh_key_text=key_text,
        ssh_key_source=source,
        ssh_key_passphrase=(
            read_passphrase(values["ssh_key_passphrase_file"])
            if values["ssh_key_passphrase_file"]
            else layers.pick("ssh_key_passphrase", env="ENCORD_SSH_KEY_PASSPHRASE").value
        ),
        proxy_env={name: env[name] for name in PROXY_VARIABLES if name in env},
        document=document,
        sources={name: picked.source for name, picked in picks.items()},
    )
    validate(settings)
    return settings


def option_names() -> list[str]:
    """The Settings fields a caller sets (or load fills): what a reload compares."""
    return [f.name for f in fields(Settings) if f.init and f.compare]
