"""Settings: one frozen value built once from flags, environment and a TOML file (in that order)."""

from encord_gateway.config.files import (
    read_document,
    read_passphrase,
    read_regular_file,
    read_state_password,
)
from encord_gateway.config.load import add_arguments, convert, load, option_names
from encord_gateway.config.options import (
    BY_NAME,
    DEFAULT_DOMAIN,
    DEFAULT_LISTEN,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_STATE_PREFIX,
    DEFAULT_STATE_URL,
    DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
    DEFAULT_UPSTREAM_POOL_SIZE,
    DEFAULTS,
    OPTIONS,
    PROXY_VARIABLES,
    ConfigError,
    Option,
    check_range,
)
from encord_gateway.config.settings import Settings
from encord_gateway.config.sources import DEFAULT, ENV, FILE, FLAG, Layers, Picked, parse_bool
from encord_gateway.config.validate import validate
from encord_gateway.config.values import parse_cpus, split_host_port, state_kind

__all__ = [
    "BY_NAME",
    "DEFAULT",
    "DEFAULTS",
    "DEFAULT_DOMAIN",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_STATE_PREFIX",
    "DEFAULT_STATE_URL",
    "DEFAULT_UPSTREAM_CONNECT_TIMEOUT",
    "DEFAULT_UPSTREAM_POOL_SIZE",
    "ENV",
    "FILE",
    "FLAG",
    "OPTIONS",
    "PROXY_VARIABLES",
    "ConfigError",
    "Layers",
    "Option",
    "Picked",
    "Settings",
    "add_arguments",
    "check_range",
    "convert",
    "load",
    "option_names",
    "parse_bool",
    "parse_cpus",
    "read_document",
    "read_passphrase",
    "read_regular_file",
    "read_state_password",
    "split_host_port",
    "state_kind",
    "validate",
]
