"""The README stays true: every setting, every make target and the Python example are what the code has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from encord_gateway.config import OPTIONS, Option

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_every_setting_is_documented(option: Option) -> None:
    flag, env = option.flag, option.env
    assert f"`{flag}`" in README
    assert f"`{env}`" in README


def test_every_make_command_in_the_readme_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    mentioned = set(re.findall(r"`make ([a-z-]+)", README))
    assert {"run", "test"} <= mentioned
    assert mentioned <= targets


def test_python_example_is_taken_from_the_example_the_tests_run() -> None:
    example = (ROOT / "client_stubs/python/example.py").read_text()
    block = README.split("**Python**", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    for line in block.strip().splitlines():
        assert line in example


def test_every_grpc_code_of_the_error_table_is_documented() -> None:
    for code in (
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "FAILED_PRECONDITION",
        "ALREADY_EXISTS",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "UNKNOWN",
    ):
        assert f"| {code}" in README
