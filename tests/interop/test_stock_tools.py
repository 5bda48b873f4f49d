"""The stock operator tools against a live gateway: grpcurl through reflection, grpc-health-probe."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from encord_gateway.dev.devstack import DEMO_PROJECT, Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
TOKEN = secrets.token_urlsafe(24)
SERVICE = "encord_gateway.v1.ApiKeyService"


def tool(name: str) -> str:
    """The tool built by tools/install_go_tools.sh (or one on PATH); in CI a missing tool fails."""
    built = ROOT / ".tools" / "bin" / name
    found = str(built) if built.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: run tools/install_go_tools.sh")
        pytest.skip(f"{name} is not built (tools/install_go_tools.sh)")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    workdir = tmp_path_factory.mktemp("stock-tools")
    args = ["--health-listen", "127.0.0.1:0"]
    with running_stack(workdir, gateway_args=args, caller_token=TOKEN) as running:
        line = running.gateway.wait_for_line(lambda text: text.startswith("health on "))
        assert line is not None
        yield running, line.split()[-1]


def test_grpcurl_lists_and_describes_the_services_through_reflection(stack: tuple[Stack, str]) -> None:
    address = stack[0].gateway.address
    listed = run(tool("grpcurl"), "-plaintext", address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {SERVICE, "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = run(tool("grpcurl"), "-plaintext", address, "describe", f"{SERVICE}.CreateProjectApiKey")
    assert described.returncode == 0, described.stderr
    assert "CreateProjectApiKeyRequest" in described.stdout
    request = run(
        tool("grpcurl"), "-plaintext", address, "describe", "encord_gateway.v1.CreateProjectApiKeyRequest"
    )
    assert "request_id" in request.stdout


def test_grpcurl_calls_with_a_token_and_is_refused_without(stack: tuple[Stack, str]) -> None:
    address = stack[0].gateway.address
    bearer = f"authorization: Bearer {TOKEN}"
    create = json.dumps(
        {
            "project_hash": DEMO_PROJECT,
            "title": "made by grpcurl",
            "scopes": ["API_KEY_SCOPE_LABEL_READ"],
            "request_id": str(uuid.uuid4()),
        }
    )
    made = [
        run(
            tool("grpcurl"),
            "-plaintext",
            "-H",
            bearer,
            "-d",
            create,
            address,
            f"{SERVICE}/CreateProjectApiKey",
        )
        for _ in range(2)  # the same request_id twice: one key, the same one
    ]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    first, again = (json.loads(m.stdout) for m in made)
    assert first["fingerprint"] == again["fingerprint"]
    assert first["scopes"] == ["API_KEY_SCOPE_LABEL_READ"]
    body = json.dumps({"project_hash": DEMO_PROJECT})
    method = f"{SERVICE}/ListProjectApiKeys"
    answered = run(tool("grpcurl"), "-plaintext", "-H", bearer, "-d", body, address, method)
    assert answered.returncode == 0, answered.stderr
    keys = json.loads(answered.stdout)["api_keys"]  # grpcurl prints the proto field names
    assert [k["title"] for k in keys].count("made by grpcurl") == 1
    assert all(k["project_hash"] == DEMO_PROJECT and len(k["fingerprint"]) == 16 for k in keys)
    refused = run(tool("grpcurl"), "-plaintext", "-d", body, address, method)
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr
    assert "NO_CREDENTIALS" in refused.stderr or "client certificate" in refused.stderr


@pytest.mark.parametrize("port", ["main", "health"])
def test_grpc_health_probe_reads_serving(stack: tuple[Stack, str], port: str) -> None:
    address = stack[0].gateway.address if port == "main" else stack[1]
    probed = run(tool("grpc-health-probe"), f"-addr={address}")
    assert probed.returncode == 0, probed.stdout + probed.stderr
    assert "SERVING" in probed.stdout + probed.stderr
    named = run(tool("grpc-health-probe"), f"-addr={address}", f"-service={SERVICE}")
    assert named.returncode == 0, named.stdout + named.stderr


def test_grpc_health_probe_fails_on_an_unknown_service(stack: tuple[Stack, str]) -> None:
    probed = run(tool("grpc-health-probe"), f"-addr={stack[1]}", "-service=no.such.Service")
    assert probed.returncode != 0
