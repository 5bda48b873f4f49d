"""A call that hands out a key string is a reveal: recorded by fingerprint, withheld without reveal_keys."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, cli_argv
from encord_gateway_client.v1 import api_keys_pb2 as pb
from support.secured import Secured, call, secured_stack, sha256

REVEALER_TOKEN = secrets.token_urlsafe(24)
HIDDEN_TOKEN = secrets.token_urlsafe(24)
EVERYTHING: dict[str, Any] = {
    "methods": ["*"],
    "projects": ["*"],
    "datasets": ["*"],
    "project_scopes": ["*"],
    "dataset_scopes": ["*"],
}
CALLERS = [
    {"name": "revealer", "tokens": [{"sha256": sha256(REVEALER_TOKEN)}], **EVERYTHING, "reveal_keys": True},
    {"name": "hidden", "tokens": [{"sha256": sha256(HIDDEN_TOKEN)}], **EVERYTHING, "reveal_keys": False},
]
LIST = pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT)


def fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_stack(tmp_path_factory.mktemp("reveals"), CALLERS, mutual=False) as running:
        yield running


def test_a_list_that_reveals_keys_records_their_fingerprints_and_lookup_finds_it(gateway: Secured) -> None:
    stub = gateway.stub(token=REVEALER_TOKEN)
    made = call(
        stub.CreateProjectApiKey,
        pb.CreateProjectApiKeyRequest(
            project_hash=DEMO_PROJECT, title="seen", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        ),
    )
    assert made.code == grpc.StatusCode.OK
    listed = call(stub.ListProjectApiKeys, LIST)
    assert listed.code == grpc.StatusCode.OK
    returned = [k.api_key for k in listed.response.api_keys]
    assert made.response.api_key in returned
    line = gateway.audit_for(listed.trace_id)
    assert line["key_returned"] is True
    assert sorted(line["fingerprints"]) == sorted(fingerprint(k) for k in returned)
    assert all(k not in json.dumps(line) for k in returned)
    # `audit lookup` of the key now shows both calls that handed it out: the create and the list.
    found = subprocess.run(
        cli_argv("audit", "lookup", fingerprint(made.response.api_key),
                 "--audit-log", str(gateway.audit_log), "--json"),
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    records = [json.loads(x) for x in found.stdout.splitlines()]
    assert {(r["method"], r["trace_id"]) for r in records} == {
        ("CreateProjectApiKey", made.trace_id),
        ("ListProjectApiKeys", listed.trace_id),
    }


def test_a_list_without_reveal_records_no_fingerprints(gateway: Secured) -> None:
    listed = call(gateway.stub(token=HIDDEN_TOKEN).ListProjectApiKeys, LIST)
    assert listed.code == grpc.StatusCode.OK
    assert listed.response.api_keys
    assert all(not k.api_key and k.fingerprint for k in listed.response.api_keys)
    line = gateway.audit_for(listed.trace_id)
    assert (line["key_returned"], line["fingerprints"]) == (False, [])


def test_get_or_create_without_reveal_mints_a_missing_master_key_but_never_hands_out_one(
    gateway: Secured,
) -> None:
    hidden = gateway.stub(token=HIDDEN_TOKEN)
    request = pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=DEMO_DATASET)
    minted = call(hidden.GetOrCreateDatasetApiKey, request)
    assert minted.code == grpc.StatusCode.OK  # there was none: minting one reveals nothing existing
    assert minted.response.api_key
    assert gateway.audit_for(minted.trace_id)["created"] is True
    before = gateway.key_counts()
    again = call(hidden.GetOrCreateDatasetApiKey, request)
    assert (again.code, again.reason) == (grpc.StatusCode.PERMISSION_DENIED, "EXISTING_KEY_NOT_REVEALED")
    assert again.response is None
    line = gateway.audit_for(again.trace_id)
    assert (line["outcome"], line["key_returned"]) == ("PERMISSION_DENIED", False)
    assert gateway.key_counts() == before  # nothing minted either
    # A caller allowed to see keys gets the existing one.
    shown = call(gateway.stub(token=REVEALER_TOKEN).GetOrCreateDatasetApiKey, request)
    assert shown.code == grpc.StatusCode.OK
    assert shown.response.api_key == minted.response.api_key
