"""The request_id rules the other exactly-once tests leave out: dry runs, callers, revoked keys, the policy.

Real processes on loopback: the emulator (its keys in a SQLite file the tests read) and a gateway with two
token callers, an audit file and a SQLite state store; real gRPC channels; nothing mocked.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, Stack, running_stack
from encord_gateway.redaction import fingerprint
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.reliability import reason_of, stored_keys
from support.secured import callers_toml, sha256, wait_for_output

# A second project, so that a policy can grant one and not the other.
OTHER_PROJECT = "2f0c8e7a-4b1d-4e6f-9a3c-5d7b9e1f3a20"
READ = [pb.API_KEY_SCOPE_LABEL_READ]
DATASET_READ = [pb.DATASET_SCOPE_READ]
ALICE, BOB = secrets.token_urlsafe(24), secrets.token_urlsafe(24)


def caller(name: str, token: str, **overrides: Any) -> dict[str, Any]:
    """A caller that may do everything, unless `overrides` narrow it."""
    rule: dict[str, Any] = {
        "name": name,
        "tokens": [{"sha256": sha256(token)}],
        "methods": ["*"],
        "projects": ["*"],
        "datasets": ["*"],
        "project_scopes": ["*"],
        "dataset_scopes": ["*"],
        "reveal_keys": True,
    }
    return {**rule, **overrides}


@dataclass
class Rig:
    stack: Stack
    state: Path  # the emulator's SQLite: what Encord holds, whatever callers were told
    audit_log: Path
    config: Path

    def stub(self, channel: grpc.Channel) -> pb_grpc.ApiKeyServiceStub:
        return pb_grpc.ApiKeyServiceStub(channel)

    def titles(self, title: str) -> int:
        """How many keys Encord holds with this title."""
        return sum(1 for _, stored_title in stored_keys(self.state).values() if stored_title == title)

    def creates_sent(self) -> int:
        """Create calls that reached the emulator, of either kind, whatever their outcome."""
        stats = requests.get(f"http://{self.stack.emulator.address}/_emulator/stats", timeout=10)
        stats.raise_for_status()
        by_query = stats.json()["requests"]["by_query"]
        return sum(
            sum(by_query.get(kind, {}).get("POST", {}).values())
            for kind in ("projectapikey", "datasetapikey")
        )

    def audit(self, method: str = "CreateProjectApiKey") -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.audit_log.read_text().splitlines()]
        return [line for line in lines if line["method"] == method]

    def revoke(self, api_key: str) -> None:
        """What revoking the key in Encord's web app does: the emulator no longer has it."""
        with contextlib.closing(sqlite3.connect(self.state, timeout=10)) as db, db:
            deleted = db.execute("DELETE FROM api_keys WHERE api_key = ?", (api_key,)).rowcount
        assert deleted == 1
        assert api_key not in stored_keys(self.state)

    def reload(self, *callers: dict[str, Any]) -> None:
        self.config.write_text(callers_toml(callers))
        seen = len(self.stack.gateway.output)
        self.stack.gateway.process.send_signal(signal.SIGHUP)
        # A refused reload never prints this: the wait then fails, naming the last lines.
        wait_for_output(self.stack.gateway, "config reloaded", after=seen)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    state = tmp_path / "emulator.sqlite"
    config = tmp_path / "gateway.toml"
    config.write_text(callers_toml([caller("alice", ALICE), caller("bob", BOB)]))
    audit_log = tmp_path / "audit.jsonl"
    gateway_args = [
        "--config", str(config),
        "--audit-log", str(audit_log),
        "--state-url", f"sqlite:///{tmp_path / 'gateway-state.db'}",
    ]  # fmt: skip
    with running_stack(
        tmp_path,
        emulator_args=["--state", str(state)],
        gateway_args=gateway_args,
        projects=(DEMO_PROJECT, OTHER_PROJECT),
        datasets=(DEMO_DATASET,),
    ) as stack:
        yield Rig(stack, state, audit_log, config)


@pytest.fixture
def channel(rig: Rig) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(rig.stack.gateway.address) as opened:
        yield opened


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def create(
    stub: pb_grpc.ApiKeyServiceStub,
    token: str,
    title: str,
    request_id: str,
    *,
    validate_only: bool = False,
    project: str = DEMO_PROJECT,
) -> tuple[pb.ProjectApiKey, dict[str, Any]]:
    request = pb.CreateProjectApiKeyRequest(
        project_hash=project, title=title, scopes=READ, request_id=request_id, validate_only=validate_only
    )
    answer, call = stub.CreateProjectApiKey.with_call(request, timeout=20, metadata=bearer(token))
    return answer, dict(call.trailing_metadata() or ())


def refused(stub: pb_grpc.ApiKeyServiceStub, token: str, title: str, request_id: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        create(stub, token, title, request_id)
    return error.value


def error_metadata(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    raise AssertionError("no ErrorInfo in the status")


def flags(line: dict[str, Any]) -> tuple[Any, Any]:
    return line.get("created"), line.get("replayed")


# validate_only ----------------------------------------------------------------------------------------


def test_a_dry_run_with_a_request_id_sends_nothing_and_records_nothing(
    rig: Rig, channel: grpc.Channel
) -> None:
    stub = rig.stub(channel)
    same_title, other_title = str(uuid.uuid4()), str(uuid.uuid4())
    sent = rig.creates_sent()
    for request_id in (same_title, other_title):
        preview, trailers = create(stub, ALICE, "dry run", request_id, validate_only=True)
        assert preview.title == "dry run"
        assert preview.api_key == ""
        assert "encord-gateway-replayed" not in trailers
    assert rig.creates_sent() == sent
    assert rig.titles("dry run") == 0
    dry = rig.audit()
    assert [line.get("validate_only") for line in dry] == [True, True]
    assert not any(line.get("fingerprint") for line in dry)

    # Had a dry run left a record, these would be replays (there is no key to replay) or REQUEST_ID_REUSED.
    made, made_trailers = create(stub, ALICE, "dry run", same_title)
    other, other_trailers = create(stub, ALICE, "another title", other_title)
    assert "encord-gateway-replayed" not in made_trailers
    assert "encord-gateway-replayed" not in other_trailers
    assert rig.creates_sent() == sent + 2
    assert rig.titles("dry run") == 1
    assert rig.titles("another title") == 1
    real = rig.audit()[2:]
    assert [flags(line) for line in real] == [(True, False), (True, False)]
    assert [line["fingerprint"] for line in real] == [made.fingerprint, other.fingerprint]
    # And from now on the ids are recorded: the same call again is a replay, not a second key.
    again, again_trailers = create(stub, ALICE, "dry run", same_title)
    assert again.fingerprint == made.fingerprint
    assert again_trailers.get("encord-gateway-replayed") == "true"
    assert rig.titles("dry run") == 1


def test_a_dry_run_still_checks_the_request_ids_form(rig: Rig, channel: grpc.Channel) -> None:
    stub = rig.stub(channel)
    with pytest.raises(grpc.RpcError) as bad:
        create(stub, ALICE, "dry run", "not-a-uuid", validate_only=True)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in (bad.value.details() or "")


# The scope of an id: caller and method ----------------------------------------------------------------


def test_two_callers_may_use_one_request_id_and_each_gets_its_own_key(
    rig: Rig, channel: grpc.Channel
) -> None:
    stub = rig.stub(channel)
    request_id = str(uuid.uuid4())
    alices, alice_trailers = create(stub, ALICE, "shared id", request_id)
    bobs, bob_trailers = create(stub, BOB, "shared id", request_id)
    assert "encord-gateway-replayed" not in alice_trailers
    assert "encord-gateway-replayed" not in bob_trailers
    assert alices.fingerprint != bobs.fingerprint
    assert rig.titles("shared id") == 2
    stored = stored_keys(rig.state)
    assert stored[alices.api_key] == (DEMO_PROJECT, "shared id")
    assert stored[bobs.api_key] == (DEMO_PROJECT, "shared id")
    # Each caller's retry replays its own key, never the other's.
    alice_again, alice_replayed = create(stub, ALICE, "shared id", request_id)
    bob_again, bob_replayed = create(stub, BOB, "shared id", request_id)
    assert alice_again.api_key == alices.api_key
    assert bob_again.api_key == bobs.api_key
    assert alice_replayed.get("encord-gateway-replayed") == "true"
    assert bob_replayed.get("encord-gateway-replayed") == "true"
    assert rig.titles("shared id") == 2
    # The id is Alice's and Bob's separately: Bob using it for another title is no reuse of Alice's.
    bobs_other, _ = create(stub, BOB, "bob's other title", str(uuid.uuid4()))
    assert bobs_other.fingerprint
    audit = [(line["caller"], flags(line), line["fingerprint"]) for line in rig.audit()]
    assert audit[:4] == [
        ("alice", (True, False), alices.fingerprint),
        ("bob", (True, False), bobs.fingerprint),
        ("alice", (False, True), alices.fingerprint),
        ("bob", (False, True), bobs.fingerprint),
    ]


def test_one_request_id_on_two_methods_is_two_creates(rig: Rig, channel: grpc.Channel) -> None:
    stub = rig.stub(channel)
    request_id = str(uuid.uuid4())
    project_key, _ = create(stub, ALICE, "one id, two methods", request_id)
    dataset_key, call = stub.CreateDatasetApiKey.with_call(
        pb.CreateDatasetApiKeyRequest(
            dataset_hash=DEMO_DATASET, title="one id, two methods", scopes=DATASET_READ, request_id=request_id
        ),
        timeout=20,
        metadata=bearer(ALICE),
    )
    assert "encord-gateway-replayed" not in dict(call.trailing_metadata() or ())
    assert dataset_key.fingerprint != project_key.fingerprint
    stored = stored_keys(rig.state)
    assert stored[project_key.api_key] == (DEMO_PROJECT, "one id, two methods")
    assert stored[dataset_key.api_key] == (DEMO_DATASET, "one id, two methods")


# A replayed key that Encord no longer has ----------------------------------------------------------------


def test_a_replay_of_a_revoked_key_is_replayed_key_gone_and_mints_nothing(
    rig: Rig, channel: grpc.Channel
) -> None:
    stub = rig.stub(channel)
    request_id = str(uuid.uuid4())
    made, _ = create(stub, ALICE, "revoked later", request_id)
    rig.revoke(made.api_key)
    sent = rig.creates_sent()
    for _ in range(2):  # the record stays: every retry says so, none mints a replacement
        gone = refused(stub, ALICE, "revoked later", request_id)
        assert gone.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(gone) == "REPLAYED_KEY_GONE"
        assert error_metadata(gone)["fingerprint"] == made.fingerprint == fingerprint(made.api_key)
    assert rig.creates_sent() == sent
    assert rig.titles("revoked later") == 0
    lines = rig.audit()
    assert len(lines) == 3
    assert not any(line.get("fingerprint") for line in lines[1:]), lines[1:]
    # A new id is a new create.
    fresh, _ = create(stub, ALICE, "revoked later", str(uuid.uuid4()))
    assert fresh.fingerprint != made.fingerprint
    assert rig.titles("revoked later") == 1


# Replays and the policy in force ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("narrowed", "reason"),
    [
        ({"methods": ["ListProjectApiKeys"]}, "METHOD_NOT_ALLOWED_FOR_CALLER"),
        ({"projects": [OTHER_PROJECT]}, "RESOURCE_NOT_ALLOWED"),
        ({"project_scopes": ["label.write"]}, "SCOPE_ABOVE_CEILING"),
    ],
    ids=["method", "project", "scopes"],
)
def test_a_replay_is_checked_against_the_policy_in_force(
    rig: Rig, channel: grpc.Channel, narrowed: dict[str, Any], reason: str
) -> None:
    stub = rig.stub(channel)
    request_id = str(uuid.uuid4())
    made, _ = create(stub, ALICE, "granted then taken", request_id)
    rig.reload(caller("alice", ALICE, **narrowed), caller("bob", BOB))
    sent = rig.creates_sent()
    denied = refused(stub, ALICE, "granted then taken", request_id)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(denied) == reason
    assert error_metadata(denied)["caller"] == "alice"
    assert made.api_key not in str(denied.details())
    assert rig.creates_sent() == sent
    assert rig.titles("granted then taken") == 1
    [first, refusal] = rig.audit()
    assert first["fingerprint"] == made.fingerprint
    assert not refusal.get("fingerprint"), refusal
    assert not refusal.get("replayed"), refusal
    # Granted again, the record is still there: the replay answers the key that was made, once.
    rig.reload(caller("alice", ALICE), caller("bob", BOB))
    again, trailers = create(stub, ALICE, "granted then taken", request_id)
    assert again.api_key == made.api_key
    assert trailers.get("encord-gateway-replayed") == "true"
    assert rig.titles("granted then taken") == 1
