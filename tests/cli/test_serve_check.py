"""`serve --check` goes as far as start-up would without binding: 0 with a summary, or 2 with one line."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from auth.harness import callers_toml, sha256
from encord_gateway.dev.devstack import cli_argv, write_ssh_key

TOKEN = secrets.token_urlsafe(24)
CALLER = {"name": "billing", "tokens": [{"sha256": sha256(TOKEN)}], "methods": ["*"], "projects": ["*"]}


def check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORD_SSH", "ENCORD_GATEWAY"))}
    return subprocess.run(
        cli_argv("serve", "--check", *args), capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "gateway_key"
    write_ssh_key(path)
    return path


def test_a_good_configuration_passes_with_a_summary_and_no_secret(key: Path, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(callers_toml([CALLER]))
    done = check(
        "--ssh-key-file", str(key), "--config", str(config),
        "--audit-log", str(tmp_path / "audit.jsonl"), "--state-url", f"sqlite:///{tmp_path}/state.db",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "callers: billing" in done.stdout
    assert "state store: sqlite" in done.stdout
    assert "not contacted" in done.stdout  # no --check-upstream: Encord is left alone
    output = done.stdout + done.stderr
    assert TOKEN not in output
    assert sha256(TOKEN) not in output
    assert "PRIVATE KEY" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ssh-key-file", "/nonexistent/key"], "does not exist"),
        (["--state-url", "sqlite:///nonexistent-dir/state.db"], "directory does not exist"),
        (["--state-url", "ftp://somewhere"], "state_url must be"),
        (["--audit-log", "/nonexistent-dir/audit.jsonl"], "audit_log"),
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "cert"),
    ],
)
def test_a_bad_setting_fails_with_one_line_and_exit_2(key: Path, args: list[str], message: str) -> None:
    done = check("--ssh-key-file", str(key), *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]


def test_check_upstream_reports_an_unreachable_domain(key: Path) -> None:
    done = check("--ssh-key-file", str(key), "--encord-domain", "http://127.0.0.1:9", "--check-upstream")
    assert done.returncode == 2
    assert "127.0.0.1:9" in done.stderr
