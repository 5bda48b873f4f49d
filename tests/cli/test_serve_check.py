"""`encord-gateway serve --check`: start-up checks without serving; a summary, never a secret; exit 0 or 2."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest
import tomli_w
from encord_gateway.dev.devstack import cli_argv
from support.pki import Authority
from support.recorder import recording_server

UNREACHABLE = "http://127.0.0.1:9"
TOKEN = "check-token-do-not-print-0123456789"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
POLICY = tomli_w.dumps({
    "callers": [
        {"name": "ops", "tokens": [{"sha256": DIGEST}], "methods": ["ListProjectApiKeys"], "projects": ["*"]},
        {"name": "vendor", "certificates": ["vendor.example.com"], "methods": ["*"]},
    ]
})  # fmt: skip


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORD_SSH", "ENCORD_GATEWAY"))}
    argv = cli_argv("serve", "--check", "--encord-domain", UNREACHABLE, *args)
    try:
        return subprocess.run(argv, env={**base, **(env or {})}, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("serve --check did not exit (did it start serving?)") from exc


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("encord-gateway: error: ")
    for text in expected:
        assert text in lines[0]
    assert "config ok" not in result.stdout
    assert "listening on" not in result.stdout


def assert_no_secret(result: subprocess.CompletedProcess[str], ssh_key_file: Path) -> None:
    output = result.stdout + result.stderr
    assert DIGEST not in output
    assert TOKEN not in output
    for line in ssh_key_file.read_text().splitlines()[1:-1]:
        assert line not in output


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(POLICY)
    return path


def test_a_good_config_passes_with_a_summary(ssh_key_file: Path, config_file: Path, tmp_path: Path) -> None:
    result = check("--ssh-key-file", str(ssh_key_file), "--config", str(config_file),
                   "--audit-log", str(tmp_path / "audit.jsonl"), "--listen", "127.0.0.1:0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"config ok: {config_file}"
    assert "listen: 127.0.0.1:0 (no TLS)" in lines
    assert "exposure: loopback only" in lines
    assert "callers: ops, vendor" in lines
    assert "state store: memory (this process only)" in lines
    assert f"audit log: {tmp_path / 'audit.jsonl'} (to be created)" in lines
    assert f"encord: {UNREACHABLE} not contacted (--check-upstream to)" in lines
    assert not (tmp_path / "audit.jsonl").exists(), "--check created the audit log"
    assert_no_secret(result, ssh_key_file)


def test_key_text_from_the_environment_is_never_printed(ssh_key_file: Path) -> None:
    result = check(env={"ENCORD_SSH_KEY": ssh_key_file.read_text()})
    assert result.returncode == 0, result.stderr
    assert "signing key: Ed25519 " in result.stdout
    assert "from $ENCORD_SSH_KEY" in result.stdout
    assert_no_secret(result, ssh_key_file)


def test_tls_and_sqlite_store_pass(ssh_key_file: Path, config_file: Path, tmp_path: Path) -> None:
    cert, key = Authority().issue("gw", ips=("127.0.0.1",), server=True).write(tmp_path, "server")
    result = check("--ssh-key-file", str(ssh_key_file), "--config", str(config_file),
                   "--tls-cert", str(cert), "--tls-key", str(key),
                   "--state-url", f"sqlite:///{tmp_path / 'state.db'}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "listen: 127.0.0.1:50051 (TLS)" in result.stdout
    assert f"state store: sqlite {tmp_path / 'state.db'} (to be created)" in result.stdout
    assert "PRIVATE KEY" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("no-key", ("no SSH key",)),
        ("bad-key", ("not an OpenSSH private key",)),
        ("bad-policy", ("64 hex digits",)),
        ("tls-mismatch", ("is not the key of the certificate",)),
        ("audit-dir-missing", ("audit_log", "cannot be opened")),
        ("audit-is-a-directory", ("audit_log", "Is a directory")),
        ("bad-state-url", ("state_url must be memory://",)),
        ("sqlite-dir-missing", ("state_url sqlite file", "directory does not exist")),
        ("redis-unreachable", ("state_url redis at 127.0.0.1:9 is not reachable",)),
        ("bad-health-listen", ("health_listen must be HOST:PORT",)),
        ("open-on-a-public-address", ("refusing to start",)),
    ],
)
def test_a_bad_setup_exits_2_with_one_line(
    ssh_key_file: Path, config_file: Path, tmp_path: Path, setup: str, expected: tuple[str, ...]
) -> None:
    args = ["--ssh-key-file", str(ssh_key_file), "--config", str(config_file)]
    if setup == "no-key":
        args = ["--config", str(config_file)]
    elif setup == "bad-key":
        bad = tmp_path / "id_bad"
        bad.write_text(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"
        )
        args = ["--ssh-key-file", str(bad), "--config", str(config_file)]
    elif setup == "bad-policy":
        config_file.write_text(POLICY.replace(DIGEST, DIGEST[:20]))
    elif setup == "tls-mismatch":
        ca = Authority()
        cert, _ = ca.issue("gw", ips=("127.0.0.1",), server=True).write(tmp_path, "server")
        _, other = ca.issue("gw", ips=("127.0.0.1",), server=True).write(tmp_path, "other")
        args += ["--tls-cert", str(cert), "--tls-key", str(other)]
    elif setup == "audit-dir-missing":
        args += ["--audit-log", str(tmp_path / "missing" / "audit.jsonl")]
    elif setup == "audit-is-a-directory":
        args += ["--audit-log", str(tmp_path)]
    elif setup == "bad-state-url":
        args += ["--state-url", "postgres://user:hunter2@db/x"]
    elif setup == "sqlite-dir-missing":
        args += ["--state-url", f"sqlite:///{tmp_path / 'missing' / 'state.db'}"]
    elif setup == "redis-unreachable":
        args += ["--state-url", "redis://:hunter2@127.0.0.1:9/0"]
    elif setup == "bad-health-listen":
        args += ["--health-listen", "nowhere"]
    elif setup == "open-on-a-public-address":
        args = ["--ssh-key-file", str(ssh_key_file), "--listen", "0.0.0.0:0"]
    result = check(*args)
    assert_refused(result, *expected)
    assert "hunter2" not in result.stderr + result.stdout
    assert_no_secret(result, ssh_key_file)


def test_check_upstream_reports_an_unreachable_domain(ssh_key_file: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        domain = f"http://127.0.0.1:{holder.getsockname()[1]}"
        result = check("--ssh-key-file", str(ssh_key_file), "--check-upstream", "--encord-domain", domain)
    assert_refused(result, "encord_domain", "is not reachable")


def test_check_upstream_accepts_any_http_answer_and_sends_nothing_signed(ssh_key_file: Path) -> None:
    with recording_server(lambda body: (200, b"{}")) as (url, seen):
        result = check("--ssh-key-file", str(ssh_key_file), "--check-upstream", "--encord-domain", url)
    assert result.returncode == 0, result.stderr
    # The recorder answers only POST; the check's GET gets a 501, which still proves Encord is there.
    assert f"encord: {url} reachable (HTTP 501)" in result.stdout
    assert seen == []  # no signed POST to /public/user


def test_without_check_upstream_encord_is_not_contacted(ssh_key_file: Path) -> None:
    with recording_server(lambda body: (200, b"{}")) as (url, seen):
        result = check("--ssh-key-file", str(ssh_key_file), "--encord-domain", url)
    assert result.returncode == 0, result.stderr
    assert "not contacted" in result.stdout
    assert seen == []
