"""The pre-commit config is valid and runs the tools make lint runs, from the venv make builds."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".pre-commit-config.yaml"


def _hooks() -> dict[str, dict[str, object]]:
    config = yaml.safe_load(CONFIG.read_text())
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_config_is_valid_for_pre_commit() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hooks_cover_ruff_the_layers_and_the_stubs() -> None:
    assert set(_hooks()) == {"ruff-check", "ruff-format", "stubs-check", "import-layers"}
    assert _hooks()["stubs-check"]["entry"] == "make stubs-check"


def test_every_hook_runs_a_tool_that_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for hook_id, hook in _hooks().items():
        program = shlex.split(str(hook["entry"]))[0]
        if program == "make":
            target = shlex.split(str(hook["entry"]))[1]
            assert f"\n{target}:" in makefile, f"{hook_id}: no make target {target}"
        else:
            # The hooks name the venv's tools: the same versions make lint runs.
            assert program.startswith(".venv/bin/"), hook_id
            assert (ROOT / program).exists() or not (ROOT / ".venv").exists(), f"{hook_id}: {program} missing"
