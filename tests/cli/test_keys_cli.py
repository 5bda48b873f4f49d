"""`encord-gateway keys`, run as a command against a real emulator and gateway."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from encord_gateway.dev.devstack import Stack, running_stack
from interop.fakes import make_pki

ERROR_LINE = re.compile(r"^encord-gateway keys: error: [A-Z_]+( \([A-Z_]+\))?: .+$")


def keys(stack: Stack | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs `encord-gateway keys ARGS` with the stack's address in ENCORD_GATEWAY_ADDRESS."""
    # Only the caller token survives from the outer environment: a developer's own
    # gateway address or CA must not leak into these runs.
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENCORD_GATEWAY_")}
    if "ENCORD_GATEWAY_TOKEN" in os.environ:
        base["ENCORD_GATEWAY_TOKEN"] = os.environ["ENCORD_GATEWAY_TOKEN"]
    if stack is not None:
        base["ENCORD_GATEWAY_ADDRESS"] = stack.gateway.address
    return subprocess.run(
        [sys.executable, "-m", "encord_gateway", "keys", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def table_field(output: str, name: str) -> str:
    match = re.search(rf"^{name} +(\S.*)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def title() -> str:
    return f"cli {uuid.uuid4().hex[:8]}"


def test_a_create_shows_its_key_once_and_lists_mask_it(stack: Stack) -> None:
    project = stack.env["ENCORD_DEMO_PROJECT"]
    name = title()
    created = ok(
        keys(stack, "create-project-key", "--project", project, "--title", name, "--scope", "label.read")
    )
    api_key, fp = table_field(created, "api key"), table_field(created, "fingerprint")
    assert (table_field(created, "title"), table_field(created, "scopes")) == (name, "label.read")
    assert re.fullmatch(r"[0-9a-f]{16}", fp)

    listed = ok(keys(stack, "list-project-keys", "--project", project))
    assert listed.splitlines()[0].split() == ["TITLE", "SCOPES", "FINGERPRINT", "API", "KEY"]
    row = next(line for line in listed.splitlines() if fp in line)
    assert row.split() == [*name.split(), "label.read", fp, f"{api_key[:4]}…"]
    assert api_key not in listed

    assert api_key in ok(keys(stack, "list-project-keys", "--project", project, "--show-keys"))


def test_json_holds_full_keys_and_master_is_stable(stack: Stack) -> None:
    project = stack.env["ENCORD_DEMO_PROJECT"]
    scopes = ["--scope", "label.read", "--scope", "label.write"]
    created = json.loads(
        ok(keys(stack, "create-project-key", "--project", project, "--title", title(), *scopes, "--json"))
    )
    assert created["scopes"] == ["label.read", "label.write"]
    assert created["project_hash"] == project

    # --json before the action: the common flags are accepted on either side of it.
    listed: list[dict[str, Any]] = json.loads(
        ok(keys(stack, "--json", "list-project-keys", "--project", project))
    )
    assert created in listed

    first = json.loads(ok(keys(stack, "master-project-key", "--project", project, "--json")))
    again = json.loads(ok(keys(stack, "master-project-key", "--project", project, "--json")))
    assert first == again
    assert sorted(first["scopes"]) == sorted(
        ["label.read", "label.write", "model.inference", "model.train", "label_logs.read", "algo.library"]
    )


def test_dataset_keys(stack: Stack) -> None:
    dataset = stack.env["ENCORD_DEMO_DATASET"]
    created = json.loads(
        ok(
            keys(
                stack,
                *("create-dataset-key", "--dataset", dataset, "--title", title()),
                *("--scope", "dataset.read", "--json"),
            )
        )
    )
    assert (created["dataset_hash"], created["scopes"]) == (dataset, ["dataset.read"])
    assert created["api_key"]
    assert created["key_hash"]

    listed = ok(keys(stack, "list-dataset-keys", "--dataset", dataset))
    assert listed.splitlines()[0].split() == ["TITLE", "SCOPES", "KEY", "HASH", "FINGERPRINT", "API", "KEY"]
    assert created["key_hash"] in listed
    assert created["api_key"] not in listed

    master = ok(keys(stack, "master-dataset-key", "--dataset", dataset))
    master_json = json.loads(ok(keys(stack, "master-dataset-key", "--dataset", dataset, "--json")))
    assert table_field(master, "api key") == master_json["api_key"]
    assert table_field(master, "scopes") == "dataset.read,dataset.write"


def test_an_rpc_error_is_one_line_naming_code_reason_and_trace(stack: Stack) -> None:
    result = keys(stack, "list-project-keys", "--project", "", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert ERROR_LINE.match(line), line
    assert line.startswith("encord-gateway keys: error: INVALID_ARGUMENT (INVALID_REQUEST): ")
    assert "project_hash" in line
    assert re.search(r" \[trace [0-9a-f]{32}\]$", line)


def test_the_gateway_flag_wins_over_the_environment(stack: Stack) -> None:
    dataset = stack.env["ENCORD_DEMO_DATASET"]
    refused = keys(None, "list-dataset-keys", "--dataset", dataset, ENCORD_GATEWAY_ADDRESS="127.0.0.1:1")
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("encord-gateway keys: error: UNAVAILABLE: ")
    flagged = keys(
        None,
        *("list-dataset-keys", "--dataset", dataset, "--gateway", stack.gateway.address),
        ENCORD_GATEWAY_ADDRESS="127.0.0.1:1",
    )
    assert ok(flagged).startswith("TITLE")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--gateway", "10.0.0.1:50051", "--token", "t"), {}, "refusing to send a token in plaintext"),
        ((), {"ENCORD_GATEWAY_TLS_CA": "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"),
    ],
)
def test_a_connection_that_cannot_be_made_fails_before_any_call(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = keys(None, "list-project-keys", "--project", "p", *args, **env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("encord-gateway keys: error: ")
    assert message in line


def test_an_unknown_scope_is_a_usage_error() -> None:
    result = keys(None, "create-dataset-key", "--dataset", "d", "--title", "t", "--scope", "label.read")
    assert result.returncode == 2
    assert "invalid choice: 'label.read'" in result.stderr


def test_tls_ca_and_token_reach_a_secured_gateway(tmp_path: Path) -> None:
    pki, token = make_pki(), secrets.token_urlsafe(24)
    for name, pem in [("ca.pem", pki.ca), ("cert.pem", pki.server_cert), ("key.pem", pki.server_key)]:
        (tmp_path / name).write_bytes(pem)
    digest = hashlib.sha256(token.encode()).hexdigest()
    caller = {
        "name": "cli",
        "tokens": [{"sha256": digest}],
        "methods": ["ListDatasetApiKeys"],
        "datasets": ["*"],
    }
    (tmp_path / "gateway.toml").write_text(tomli_w.dumps({"callers": [caller]}))
    args = ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    args += ["--config", str(tmp_path / "gateway.toml")]
    with running_stack(tmp_path / "stack", gateway_args=args) as secured:
        listing = ("list-dataset-keys", "--dataset", secured.env["ENCORD_DEMO_DATASET"], "--timeout", "10")
        ca = str(tmp_path / "ca.pem")

        assert ok(keys(secured, *listing, "--tls-ca", ca, "--token", token)).startswith(("TITLE", "no keys"))
        assert ok(keys(secured, *listing, ENCORD_GATEWAY_TLS_CA=ca, ENCORD_GATEWAY_TOKEN=token))

        anonymous = keys(secured, *listing, "--tls-ca", ca, ENCORD_GATEWAY_TOKEN="")
        assert anonymous.returncode == 1
        assert anonymous.stderr.startswith("encord-gateway keys: error: UNAUTHENTICATED (")

        plaintext = keys(secured, *listing, ENCORD_GATEWAY_TOKEN=token)
        assert plaintext.returncode == 1
        assert plaintext.stderr.startswith("encord-gateway keys: error: UNAVAILABLE")
