"""Start-up refusal, SIGHUP reload (good, bad, under load) and an audit trail that fails closed."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import (
    DEMO_DATASET,
    DEMO_PROJECT,
    Stack,
    cli_argv,
    running_stack,
    start_service,
)
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.pki import Authority
from support.reliability import stored_keys
from support.secured import call, callers_toml, secured_stack, sha256, wait_for_output

OPS, AUDITOR = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
SERVING = health_pb2.HealthCheckResponse.SERVING
OPS_CALLER: dict[str, Any] = {
    "name": "ops",
    "tokens": [{"sha256": sha256(OPS)}],
    "methods": ["ListProjectApiKeys"],
    "projects": ["*"],
}


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


# Start-up ---------------------------------------------------------------------------------------------


def serve(ssh_key_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = cli_argv(
        "serve", "--encord-domain", "http://127.0.0.1:9", "--ssh-key-file", str(ssh_key_file), *args
    )
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_an_open_gateway_on_a_public_address_is_refused(ssh_key_file: Path, tmp_path: Path) -> None:
    result = serve(ssh_key_file, "--listen", "0.0.0.0:0")
    assert result.returncode == 2
    assert "refusing to start" in result.stderr
    assert "--insecure" in result.stderr
    # TLS alone does not say who the caller is: still an open relay.
    cert, key = Authority().issue("gw", ips=("127.0.0.1",), server=True).write(tmp_path, "server")
    result = serve(ssh_key_file, "--listen", "0.0.0.0:0", "--tls-cert", str(cert), "--tls-key", str(key))
    assert result.returncode == 2
    assert "TLS without client certificates" in result.stderr


def test_insecure_starts_anyway_and_says_so(ssh_key_file: Path) -> None:
    argv = cli_argv("serve", "--listen", "0.0.0.0:0", "--insecure", "--encord-domain", "http://127.0.0.1:9",
                    "--ssh-key-file", str(ssh_key_file))  # fmt: skip
    gateway = start_service("gateway", argv)
    try:
        warning = next(line for line in gateway.output if "--insecure" in line)
        assert '"level": "warning"' in warning
        assert "anyone who reaches it could mint admin keys" in warning
    finally:
        assert gateway.stop() == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[callers]]\nname = "x"\n', "needs certificates or tokens"),
        ('[[callers]]\nname = "x"\ntokens = [{ sha256 = "abc" }]\n', "64 hex digits"),
    ],
)
def test_a_broken_policy_stops_start_up(ssh_key_file: Path, tmp_path: Path, extra: str, message: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(extra)
    result = serve(ssh_key_file, "--listen", "127.0.0.1:0", "--config", str(config))
    assert result.returncode == 2
    assert message in result.stderr


def test_unusable_tls_or_audit_files_stop_start_up(ssh_key_file: Path, tmp_path: Path) -> None:
    result = serve(
        ssh_key_file, "--listen", "127.0.0.1:0", "--audit-log", str(tmp_path / "missing" / "a.jsonl")
    )
    assert result.returncode == 2
    assert "audit_log" in result.stderr
    ca = Authority()
    cert, _ = ca.issue("gw", ips=("127.0.0.1",), server=True).write(tmp_path, "server")
    _, other_key = ca.issue("gw", ips=("127.0.0.1",), server=True).write(tmp_path, "other")
    result = serve(
        ssh_key_file, "--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(other_key)
    )
    assert result.returncode == 2
    assert "is not the key of the certificate" in result.stderr
    assert "PRIVATE KEY" not in result.stderr


# SIGHUP -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reloadable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("reload")
    config = workdir / "gateway.toml"
    config.write_text(callers_toml([OPS_CALLER]))
    args = ["--config", str(config), "--audit-log", str(workdir / "audit.jsonl")]
    with running_stack(workdir, gateway_args=args) as stack:
        yield stack


def reload(stack: Stack, text: str, expect: str) -> str:
    (stack.workdir / "gateway.toml").write_text(text)
    seen = len(stack.gateway.output)
    stack.gateway.process.send_signal(signal.SIGHUP)
    return wait_for_output(stack.gateway, expect, after=seen)


def list_datasets(stack: Stack, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        return call(
            stub.ListDatasetApiKeys,
            pb.ListDatasetApiKeysRequest(dataset_hash=DEMO_DATASET),
            metadata=bearer(token),
        ).code


def test_a_good_reload_takes_effect(reloadable: Stack) -> None:
    assert list_datasets(reloadable, OPS) == grpc.StatusCode.PERMISSION_DENIED
    assert list_datasets(reloadable, AUDITOR) == grpc.StatusCode.UNAUTHENTICATED
    wider = {**OPS_CALLER, "methods": ["ListProjectApiKeys", "ListDatasetApiKeys"], "datasets": ["*"]}
    auditor = {"name": "auditor", "tokens": [{"sha256": sha256(AUDITOR)}], "methods": ["ListDatasetApiKeys"],
               "datasets": [DEMO_DATASET]}  # fmt: skip
    line = reload(reloadable, callers_toml([wider, auditor]), "config reloaded")
    assert '"callers": 2' in line
    assert list_datasets(reloadable, OPS) == grpc.StatusCode.OK
    assert list_datasets(reloadable, AUDITOR) == grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[[callers]\nname = ", "not valid TOML"),
        ('[[callers]]\nname = "ops"\ntokens = [{ sha256 = "zz" }]\n', "64 hex digits"),
        ('workers = "many"\n', "workers from"),
        ("callers = []\n", "would open the gateway"),
    ],
)
def test_a_bad_reload_is_refused_and_the_old_policy_stays(reloadable: Stack, text: str, why: str) -> None:
    before = list_datasets(reloadable, OPS)
    line = reload(reloadable, text, "config reload refused")
    assert why in line
    assert '"level": "error"' in line
    assert list_datasets(reloadable, OPS) == before
    assert reloadable.gateway.process.poll() is None


def test_reloads_drop_no_calls_and_can_revoke_a_caller(reloadable: Stack) -> None:
    failures: list[grpc.StatusCode] = []
    done = threading.Event()
    calls = [0]

    def hammer() -> None:
        with grpc.insecure_channel(reloadable.gateway.address) as channel:
            stub = pb_grpc.ApiKeyServiceStub(channel)
            request = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)
            while not done.is_set():
                outcome = call(stub.ListProjectApiKeys, request, metadata=bearer(OPS))
                calls[0] += 1
                if outcome.code != grpc.StatusCode.OK:
                    failures.append(outcome.code)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        for _ in range(3):
            reload(reloadable, callers_toml([OPS_CALLER]), "config reloaded")
    finally:
        done.set()
        worker.join(30)
    assert calls[0] > 0
    assert failures == []
    # The policy is the file's: a caller dropped from it is a stranger from then on.
    reload(reloadable, callers_toml([{**OPS_CALLER, "name": "other", "tokens": [{"sha256": "0" * 64}]}]),
           "config reloaded")  # fmt: skip
    assert list_datasets(reloadable, OPS) == grpc.StatusCode.UNAUTHENTICATED


def test_sighup_rotates_the_server_certificate(tmp_path: Path) -> None:
    with secured_stack(tmp_path, [OPS_CALLER], mutual=False) as gateway:
        request = health_pb2.HealthCheckRequest()
        assert health_pb2_grpc.HealthStub(gateway.channel()).Check(request, timeout=10).status == SERVING
        rotated = Authority("rotated CA")
        rotated.issue("gateway", ips=("127.0.0.1",), server=True).write(tmp_path, "server")
        seen = len(gateway.stack.gateway.output)
        gateway.sighup()
        wait_for_output(gateway.stack.gateway, "config reloaded", after=seen)
        # New connections get the new certificate: only the new CA's clients accept it.
        assert (
            health_pb2_grpc.HealthStub(gateway.channel(ca=rotated)).Check(request, timeout=10).status
            == SERVING
        )
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(gateway.channel()).Check(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


# Fail closed ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a file every write to fails")
def test_no_key_leaves_when_the_audit_cannot_be_written(tmp_path: Path) -> None:
    state = tmp_path / "emulator.sqlite"
    with (
        running_stack(
            tmp_path, gateway_args=["--audit-log", "/dev/full"], emulator_args=["--state", str(state)]
        ) as stack,
        grpc.insecure_channel(stack.gateway.address) as channel,
    ):
        stub = pb_grpc.ApiKeyServiceStub(channel)
        request = pb.CreateProjectApiKeyRequest(
            project_hash=DEMO_PROJECT, title="unaudited", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        outcome = call(stub.CreateProjectApiKey, request)
        assert outcome.code == grpc.StatusCode.UNAVAILABLE
        assert outcome.reason == "AUDIT_UNAVAILABLE"
        master = call(
            stub.GetOrCreateDatasetApiKey, pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=DEMO_DATASET)
        )
        assert master.code == grpc.StatusCode.UNAVAILABLE
        # A list that would hand out key strings is a reveal: refused the same way, not a back door
        # to the key whose create was withheld.
        for listing in (
            call(stub.ListProjectApiKeys, pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)),
            call(stub.ListDatasetApiKeys, pb.ListDatasetApiKeysRequest(dataset_hash=DEMO_DATASET)),
        ):
            assert (listing.code, listing.reason) == (grpc.StatusCode.UNAVAILABLE, "AUDIT_UNAVAILABLE")
    # Encord did mint the key; the gateway withheld it.
    [withheld] = [key for key, (_, title) in stored_keys(state).items() if title == "unaudited"]
    log = (tmp_path / "gateway.log").read_text()
    assert withheld not in log
    fingerprint = hashlib.sha256(withheld.encode()).hexdigest()[:16]
    assert f'"fingerprint": "{fingerprint}"' in log
    assert "withheld" in log
