"""An audit file deleted under a running gateway is recreated at its path: no record goes to a dead inode."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import grpc
from encord_gateway.dev.devstack import DEMO_PROJECT
from encord_gateway_client.v1 import api_keys_pb2 as pb
from support.secured import call, secured_stack, sha256

TOKEN = secrets.token_urlsafe(24)
CALLER = {
    "name": "writer",
    "tokens": [{"sha256": sha256(TOKEN)}],
    "methods": ["*"],
    "projects": ["*"],
    "project_scopes": ["label.read"],
    "reveal_keys": True,
}


def test_a_deleted_audit_file_is_recreated_and_gets_the_next_records(tmp_path: Path) -> None:
    with secured_stack(tmp_path, [CALLER], mutual=False) as gateway:
        stub = gateway.stub(token=TOKEN)
        request = pb.CreateProjectApiKeyRequest(
            project_hash=DEMO_PROJECT, title="before", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        assert call(stub.CreateProjectApiKey, request).code == grpc.StatusCode.OK
        gateway.audit_log.unlink()  # a clean-up job, or an operator, removed it
        after = call(
            stub.CreateProjectApiKey,
            pb.CreateProjectApiKeyRequest(
                project_hash=DEMO_PROJECT, title="after", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
            ),
        )
        assert after.code == grpc.StatusCode.OK
        assert gateway.audit_log.exists()
        [line] = [json.loads(x) for x in gateway.audit_log.read_text().splitlines()]
        assert (line["trace_id"], line["title"], line["key_returned"]) == (after.trace_id, "after", True)
        log = (gateway.stack.workdir / "gateway.log").read_text()
        assert "the audit trail file was deleted; recreated it" in log
