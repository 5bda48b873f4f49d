"""The Python client against a real gateway and emulator: all six RPCs, one decoded error, the example."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import tomli_w
from encord_gateway.dev.devstack import running_stack
from encord_gateway_client import DatasetScope, GatewayClient, GatewayError, ProjectScope, connect
from interop.fakes import make_pki

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "client_stubs/python/example.py"
README = ROOT / "client_stubs/python/README.md"


# A caller with every right, for the gateway this module starts with TLS and caller tokens.
CALLER_TOKEN = secrets.token_urlsafe(24)
CALLERS_TOML = tomli_w.dumps({
    "callers": [{
        "name": "interop",
        "tokens": [{"sha256": hashlib.sha256(CALLER_TOKEN.encode()).hexdigest()}],
        **{key: ["*"] for key in ("methods", "projects", "datasets", "project_scopes", "dataset_scopes")},
        "reveal_keys": True,
    }]
})  # fmt: skip


@dataclass(frozen=True)
class Target:
    """A gateway to test, the demo resources behind it, and how to connect to it."""

    env: dict[str, str]
    token: str | None = None
    tls_ca: Path | None = None

    def connect(self, **overrides: Any) -> GatewayClient:
        options: dict[str, Any] = {"token": self.token, "tls_ca": self.tls_ca, "default_timeout": 20}
        return connect(self.env["ENCORD_GATEWAY_ADDRESS"], **{**options, **overrides})


@pytest.fixture(scope="module")
def gateway_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The stack's variables: the shared script's (`python -m encord_gateway.dev.devstack -- pytest ...`)
    when it started this run, else a stack of this module's own."""
    # ENCORD_EMULATOR_URL too, so that a developer's ENCORD_GATEWAY_ADDRESS pointing at a
    # real gateway (and real Encord) is never used to mint test keys.
    if os.environ.get("ENCORD_GATEWAY_ADDRESS") and os.environ.get("ENCORD_EMULATOR_URL"):
        names = ("ENCORD_GATEWAY_ADDRESS", "ENCORD_DEMO_PROJECT", "ENCORD_DEMO_DATASET")
        return {name: os.environ[name] for name in names}
    return dict(request.getfixturevalue("stack").env)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A gateway of this module's own that wants TLS and a caller token."""
    workdir, pki = tmp_path_factory.mktemp("secured"), make_pki()
    for name, pem in [("ca.pem", pki.ca), ("cert.pem", pki.server_cert), ("key.pem", pki.server_key)]:
        (workdir / name).write_bytes(pem)
    (workdir / "gateway.toml").write_text(CALLERS_TOML)
    args = ["--tls-cert", str(workdir / "cert.pem"), "--tls-key", str(workdir / "key.pem")]
    with running_stack(workdir, gateway_args=[*args, "--config", str(workdir / "gateway.toml")]) as stack:
        yield Target(stack.env, CALLER_TOKEN, workdir / "ca.pem")


@pytest.fixture(scope="module", params=["plaintext", "tls+token"])
def target(request: pytest.FixtureRequest, gateway_env: dict[str, str]) -> Target:
    if request.param == "tls+token":
        secured_target: Target = request.getfixturevalue("secured")
        return secured_target
    # Where the shared script's gateway has caller tokens, it hands one over.
    return Target(gateway_env, os.environ.get("ENCORD_GATEWAY_TOKEN"))


@pytest.fixture(scope="module")
def client(target: Target) -> Iterator[GatewayClient]:
    with target.connect() as gateway:
        yield gateway


def fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def test_project_keys_create_list_and_master(client: GatewayClient, target: Target) -> None:
    project = target.env["ENCORD_DEMO_PROJECT"]
    title = f"interop {uuid.uuid4().hex[:8]}"

    created = client.create_project_api_key(project, title, [ProjectScope.LABEL_READ, "label.write"])
    assert created.api_key
    assert (created.title, created.project_hash) == (title, project)
    assert set(created.scopes) == {ProjectScope.LABEL_READ, ProjectScope.LABEL_WRITE}
    assert all(isinstance(s, ProjectScope) for s in created.scopes)
    assert created.fingerprint == fingerprint(created.api_key)

    listed = {k.fingerprint: k for k in client.list_project_api_keys(project)}
    assert listed[created.fingerprint] == created

    master = client.get_or_create_project_api_key(project)
    assert set(master.scopes) == set(ProjectScope)
    assert master.fingerprint == fingerprint(master.api_key)
    assert client.get_or_create_project_api_key(project) == master
    assert master.fingerprint in {k.fingerprint for k in client.list_project_api_keys(project)}


def test_dataset_keys_create_list_and_master(client: GatewayClient, target: Target) -> None:
    dataset = target.env["ENCORD_DEMO_DATASET"]
    title = f"interop {uuid.uuid4().hex[:8]}"

    created = client.create_dataset_api_key(dataset, title, [DatasetScope.READ])
    assert created.api_key
    assert created.key_hash
    assert (created.title, created.dataset_hash, created.scopes) == (title, dataset, (DatasetScope.READ,))
    assert created.fingerprint == fingerprint(created.api_key)

    listed = {k.key_hash: k for k in client.list_dataset_api_keys(dataset)}
    assert listed[created.key_hash] == created

    master = client.get_or_create_dataset_api_key(dataset)
    assert set(master.scopes) == {DatasetScope.READ, DatasetScope.WRITE}
    assert client.get_or_create_dataset_api_key(dataset) == master
    assert master.key_hash in {k.key_hash for k in client.list_dataset_api_keys(dataset)}


def test_an_empty_project_hash_is_invalid_argument_with_a_field_violation(client: GatewayClient) -> None:
    trace_id = uuid.uuid4().hex
    with pytest.raises(GatewayError) as caught:
        client.create_project_api_key("", "no project", [ProjectScope.LABEL_READ], trace_id=trace_id)
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.reason, error.domain) == ("INVALID_REQUEST", "encord-gateway")
    assert "project_hash" in {v.field for v in error.field_violations}
    assert all(v.description for v in error.field_violations)
    # The gateway logged the call under the trace id this client sent.
    assert error.trace_id == trace_id


def test_a_token_gateway_turns_away_a_call_without_the_token(secured: Target) -> None:
    project = secured.env["ENCORD_DEMO_PROJECT"]
    for token in (None, "not-the-token"):
        with secured.connect(token=token) as anonymous, pytest.raises(GatewayError) as caught:
            anonymous.list_project_api_keys(project)
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.reason


def test_the_example_runs_and_prints_no_key(gateway_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env={**os.environ, **gateway_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    created = re.search(r"^created ([0-9a-f]{16}) label\.read$", result.stdout, re.MULTILINE)
    assert created, result.stdout
    assert "error INVALID_ARGUMENT INVALID_REQUEST ['project_hash']" in result.stdout
    with Target(gateway_env, os.environ.get("ENCORD_GATEWAY_TOKEN")).connect() as client:
        keys = client.list_project_api_keys(gateway_env["ENCORD_DEMO_PROJECT"])
    assert created.group(1) in {k.fingerprint for k in keys}
    assert not [k for k in keys if k.api_key and k.api_key in result.stdout + result.stderr]


def test_the_readme_example_is_the_example_file() -> None:
    block = re.search(r"## Example\n.*?```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block, "README has no python example"
    assert block.group(1) in EXAMPLE.read_text()
    assert len(block.group(1).splitlines()) <= 10
