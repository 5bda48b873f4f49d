"""A reload never loosens a policy silently, never lifts a rate limit, and never blocks shutdown."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from encord_gateway.dev.devstack import Stack, running_stack
from support.secured import callers_toml, sha256, wait_for_output

TOKEN = secrets.token_urlsafe(24)
LIMITED: dict[str, Any] = {
    "name": "ops",
    "tokens": [{"sha256": sha256(TOKEN)}],
    "methods": ["ListProjectApiKeys"],
    "projects": ["*"],
    "rate_limit": {"per_second": 1, "burst": 2},
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    config = tmp_path / "gateway.toml"
    config.write_text(callers_toml([LIMITED]))
    args = ["--config", str(config), "--audit-log", str(tmp_path / "audit.jsonl"), "--grace-period", "2"]
    with running_stack(tmp_path, gateway_args=args) as running:
        yield running


def reload(stack: Stack, text: str, expect: str) -> str:
    (stack.workdir / "gateway.toml").write_text(text)
    seen = len(stack.gateway.output)
    stack.gateway.process.send_signal(signal.SIGHUP)
    return wait_for_output(stack.gateway, expect, after=seen)


def test_a_file_cut_before_its_rate_limit_is_refused(stack: Stack) -> None:
    full = callers_toml([LIMITED])
    cut = full[: full.index("[callers.rate_limit]")] if "[callers.rate_limit]" in full else None
    without_limit = {k: v for k, v in LIMITED.items() if k != "rate_limit"}
    line = reload(stack, cut or callers_toml([without_limit]), "config reload refused")
    assert "drops the rate_limit of 'ops'" in line
    assert '"level": "error"' in line
    assert stack.gateway.process.poll() is None


def test_an_accepted_loosening_is_logged_per_caller(stack: Stack) -> None:
    wider = {**LIMITED, "rate_limit": {"per_second": 5, "burst": 10}, "reveal_keys": True}
    seen = len(stack.gateway.output)
    reload(stack, callers_toml([wider]), "config reloaded")
    warning = wait_for_output(stack.gateway, "loosens caller 'ops'", after=seen)
    assert "rate_limit raised" in warning
    assert "reveal_keys on" in warning
    assert '"level": "warning"' in warning
    assert sha256(TOKEN) not in warning


def test_a_fifo_in_place_of_the_config_neither_wedges_reload_nor_shutdown(stack: Stack) -> None:
    config = stack.workdir / "gateway.toml"
    config.unlink()
    os.mkfifo(config)
    seen = len(stack.gateway.output)
    stack.gateway.process.send_signal(signal.SIGHUP)
    line = wait_for_output(stack.gateway, "config reload refused", after=seen)
    assert "not a regular file" in line
    stack.gateway.process.send_signal(signal.SIGTERM)
    try:
        code = stack.gateway.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stack.gateway.process.kill()
        pytest.fail("the gateway ignored SIGTERM after a reload from a FIFO")
    assert code == 0
