"""config/ is a package by concern whose __init__ re-exports the names the old config module had."""

from __future__ import annotations

import ast
import inspect
import pkgutil
from pathlib import Path

import pytest
from encord_gateway import config

# Every public name of the single config.py this package replaced: imports of them keep working.
FORMER_NAMES = {
    "DEFAULT_LISTEN", "DEFAULT_DOMAIN", "DEFAULT_STATE_URL", "DEFAULT_STATE_PREFIX",
    "DEFAULT_UPSTREAM_POOL_SIZE", "DEFAULT_MAX_MESSAGE_BYTES", "PROXY_VARIABLES", "ConfigError", "Option",
    "OPTIONS", "Settings", "add_arguments", "check_range", "read_regular_file", "read_document",
    "read_state_password", "load", "split_host_port", "parse_cpus", "validate", "state_kind",
    "option_names",
}  # fmt: skip
MODULES = sorted(m.name for m in pkgutil.iter_modules(config.__path__))


def test_all_names_exactly_the_public_names() -> None:
    names = vars(config).items()
    public = {name for name, value in names if not name.startswith("_") and not inspect.ismodule(value)}
    assert len(config.__all__) == len(set(config.__all__))
    assert set(config.__all__) == public


def test_the_former_names_are_still_exported() -> None:
    assert set(config.__all__) >= FORMER_NAMES


@pytest.mark.parametrize("module", MODULES)
def test_each_module_is_small_and_says_what_it_is_in_one_line(module: str) -> None:
    source = (Path(config.__path__[0]) / f"{module}.py").read_text()
    assert len(source.splitlines()) <= 400
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring is not None
    assert "\n" not in docstring
