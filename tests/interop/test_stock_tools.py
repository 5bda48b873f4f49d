"""grpcurl against a live gateway: reflection, each RPC called with JSON, refusals read with -format-error."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import tomli_w
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, Stack, running_stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from interop.stock_tools import SERVICE, grpcurl, run, stored_keys, tool

TOKEN = secrets.token_urlsafe(24)
READER_TOKEN = secrets.token_urlsafe(24)  # a caller that may only list project keys
CALLERS = [
    {
        "name": "operator",
        "tokens": [{"sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}],
        **{key: ["*"] for key in ("methods", "projects", "datasets", "project_scopes", "dataset_scopes")},
        "reveal_keys": True,
    },
    {
        "name": "reader",
        "tokens": [{"sha256": hashlib.sha256(READER_TOKEN.encode()).hexdigest()}],
        "methods": ["ListProjectApiKeys"],
        "projects": ["*"],
    },
]
# The oracle for scopes: the proto enum names grpcurl prints and Encord's strings the emulator stores.
ENCORD_SCOPE = {
    "API_KEY_SCOPE_LABEL_READ": "label.read",
    "API_KEY_SCOPE_LABEL_WRITE": "label.write",
    "API_KEY_SCOPE_MODEL_INFERENCE": "model.inference",
    "API_KEY_SCOPE_MODEL_TRAIN": "model.train",
    "API_KEY_SCOPE_LABEL_LOGS_READ": "label_logs.read",
    "API_KEY_SCOPE_ALGO_LIBRARY": "algo.library",
    "DATASET_SCOPE_READ": "dataset.read",
    "DATASET_SCOPE_WRITE": "dataset.write",
}
ALL_PROJECT_SCOPES = sorted(name for name in ENCORD_SCOPE if name.startswith("API_KEY_SCOPE_"))
ALL_DATASET_SCOPES = ["DATASET_SCOPE_READ", "DATASET_SCOPE_WRITE"]
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


@dataclass
class Plain:
    """A plaintext gateway with two callers, and the emulator's SQLite state."""

    stack: Stack
    state: Path

    @property
    def address(self) -> str:
        return self.stack.gateway.address

    def stored(self, resource: str) -> list[dict[str, Any]]:
        return stored_keys(self.state, resource)

    def call(
        self, method: str, body: dict[str, Any], *, token: str | None = TOKEN, trace: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return grpcurl(self.address, method, body, token=token, trace=trace)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    workdir = tmp_path_factory.mktemp("stock-tools")
    config, state = workdir / "callers.toml", workdir / "emulator.db"
    config.write_text(tomli_w.dumps({"callers": CALLERS}))
    args = ["--config", str(config)]
    with running_stack(workdir, emulator_args=["--state", str(state)], gateway_args=args) as running:
        # A key of each kind made through the Python stubs, so that the lists have something to show.
        with grpc.insecure_channel(running.gateway.address) as channel:
            stub, auth = pb_grpc.ApiKeyServiceStub(channel), (("authorization", f"Bearer {TOKEN}"),)
            scopes = [pb.API_KEY_SCOPE_LABEL_WRITE]
            project = pb.CreateProjectApiKeyRequest(project_hash=DEMO_PROJECT, title="seed", scopes=scopes)
            stub.CreateProjectApiKey(project, metadata=auth, timeout=15)
            dataset = pb.CreateDatasetApiKeyRequest(
                dataset_hash=DEMO_DATASET, title="seed", scopes=[pb.DATASET_SCOPE_READ]
            )
            stub.CreateDatasetApiKey(dataset, metadata=auth, timeout=15)
        yield Plain(running, state)


def test_grpcurl_lists_and_describes_the_services_through_reflection(stack: Plain) -> None:
    grpcurl_plain = (tool("grpcurl"), "-plaintext", stack.address)
    listed = run(*grpcurl_plain, "list")
    assert listed.returncode == 0, listed.stderr
    assert {SERVICE, "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = run(*grpcurl_plain, "describe", f"{SERVICE}.CreateProjectApiKey")
    assert described.returncode == 0, described.stderr
    assert "CreateProjectApiKeyRequest" in described.stdout
    request = run(*grpcurl_plain, "describe", "encord_gateway.v1.CreateProjectApiKeyRequest")
    assert request.returncode == 0, request.stderr
    assert "request_id" in request.stdout


@dataclass(frozen=True)
class Rpc:
    """One RPC called with JSON: what it mints, and the title and scopes the key it answers must have."""

    method: str
    body: dict[str, Any]
    minted: int
    title: str = ""
    scopes: list[str] = field(default_factory=list)

    @property
    def resource_field(self) -> str:
        return "dataset_hash" if "Dataset" in self.method else "project_hash"

    @property
    def resource(self) -> str:
        return str(self.body[self.resource_field])


RPCS = [
    Rpc(
        "CreateProjectApiKey",
        {
            "project_hash": DEMO_PROJECT,
            "title": "grpcurl project key",
            "scopes": ["API_KEY_SCOPE_MODEL_TRAIN", "API_KEY_SCOPE_LABEL_READ"],
        },
        minted=1,
        title="grpcurl project key",
        scopes=["API_KEY_SCOPE_LABEL_READ", "API_KEY_SCOPE_MODEL_TRAIN"],
    ),
    Rpc("ListProjectApiKeys", {"project_hash": DEMO_PROJECT}, minted=0),
    Rpc(
        "GetOrCreateProjectApiKey",
        {"project_hash": DEMO_PROJECT},
        minted=1,  # the seed key is not a master key, so one is made
        title=f"{DEMO_PROJECT} - admin key",
        scopes=ALL_PROJECT_SCOPES,
    ),
    Rpc(
        "CreateDatasetApiKey",
        {"dataset_hash": DEMO_DATASET, "title": "grpcurl dataset key", "scopes": ["DATASET_SCOPE_WRITE"]},
        minted=1,
        title="grpcurl dataset key",
        scopes=["DATASET_SCOPE_WRITE"],
    ),
    Rpc("ListDatasetApiKeys", {"dataset_hash": DEMO_DATASET}, minted=0),
    Rpc(
        "GetOrCreateDatasetApiKey",
        {"dataset_hash": DEMO_DATASET},
        minted=1,
        title=f"{DEMO_DATASET} - admin key",
        scopes=ALL_DATASET_SCOPES,
    ),
]


def assert_is_stored(rpc: Rpc, key: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The key grpcurl printed (proto field names, enum names) is the one the emulator holds."""
    assert key[rpc.resource_field] == rpc.resource
    assert key["fingerprint"] == hashlib.sha256(key["api_key"].encode()).hexdigest()[:16]
    [row] = [r for r in rows if r["api_key"] == key["api_key"]]
    assert key["title"] == row["title"]
    assert sorted(ENCORD_SCOPE[name] for name in key["scopes"]) == sorted(row["scopes"])
    if rpc.resource_field == "dataset_hash":
        assert key["key_hash"] == row["key_hash"]


@pytest.mark.parametrize("rpc", RPCS, ids=[r.method for r in RPCS])
def test_grpcurl_calls_each_rpc_with_json(stack: Plain, rpc: Rpc) -> None:
    before = stack.stored(rpc.resource)
    answered = stack.call(rpc.method, rpc.body)
    assert answered.returncode == 0, answered.stderr
    answer = json.loads(answered.stdout)
    rows = stack.stored(rpc.resource)
    assert len(rows) == len(before) + rpc.minted
    if rpc.method.startswith("List"):
        keys = answer["api_keys"]
        assert [k["api_key"] for k in keys] == [r["api_key"] for r in rows]  # all of them, in Encord's order
        for key in keys:
            assert_is_stored(rpc, key, rows)
    else:
        assert answer["title"] == rpc.title
        assert sorted(answer["scopes"]) == rpc.scopes
        assert_is_stored(rpc, answer, rows)
    if rpc.method.startswith("GetOrCreate"):
        again = stack.call(rpc.method, rpc.body)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == answer
        assert len(stack.stored(rpc.resource)) == len(rows)


def test_grpcurl_replays_a_create_sent_twice_with_one_request_id(stack: Plain) -> None:
    body = {
        "project_hash": DEMO_PROJECT,
        "title": "made by grpcurl",
        "scopes": ["API_KEY_SCOPE_LABEL_READ"],
        "request_id": str(uuid.uuid4()),
    }
    before = len(stack.stored(DEMO_PROJECT))
    first, again = (stack.call("CreateProjectApiKey", body, trace=secrets.token_hex(16)) for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "encord-gateway-replayed: true" not in first.stdout
    assert "encord-gateway-replayed: true" in again.stdout  # -v prints the trailers
    rows = stack.stored(DEMO_PROJECT)
    assert len(rows) == before + 1
    assert [r["title"] for r in rows].count("made by grpcurl") == 1
    assert rows[-1]["api_key"] in first.stdout
    assert rows[-1]["api_key"] in again.stdout


@dataclass(frozen=True)
class Refusal:
    """A call the gateway refuses, and the status grpcurl must print for it."""

    name: str
    method: str
    body: dict[str, Any]
    token: str | None
    code: grpc.StatusCode
    reason: str
    violations: tuple[str, ...] = ()


Code = grpc.StatusCode
BAD_HASH = {"project_hash": "not-a-uuid", "title": "refused", "scopes": ["API_KEY_SCOPE_LABEL_READ"]}
LIST_DEMO = {"project_hash": DEMO_PROJECT}
LIST_UNKNOWN = {"project_hash": str(uuid.uuid4())}
CREATE_DATASET_KEY = {"dataset_hash": DEMO_DATASET, "title": "refused", "scopes": ["DATASET_SCOPE_READ"]}
REFUSALS = [
    Refusal("bad-hash", "CreateProjectApiKey", BAD_HASH, TOKEN, Code.INVALID_ARGUMENT, "INVALID_REQUEST",
            ("project_hash",)),
    Refusal("no-token", "ListProjectApiKeys", LIST_DEMO, None, Code.UNAUTHENTICATED, "NO_CREDENTIALS"),
    Refusal("unknown-token", "CreateDatasetApiKey", CREATE_DATASET_KEY, "not-a-caller", Code.UNAUTHENTICATED,
            "INVALID_CREDENTIALS"),
    Refusal("method-not-allowed", "CreateDatasetApiKey", CREATE_DATASET_KEY, READER_TOKEN,
            Code.PERMISSION_DENIED, "METHOD_NOT_ALLOWED_FOR_CALLER"),
    # An Encord error, passed through.
    Refusal("no-such-project", "ListProjectApiKeys", LIST_UNKNOWN, TOKEN, Code.NOT_FOUND,
            "RESOURCE_NOT_FOUND_ERROR"),
]  # fmt: skip


def assert_refused(answered: subprocess.CompletedProcess[str], trace: str, want: Refusal) -> dict[str, Any]:
    """grpcurl exits 64 + the code and prints the google.rpc.Status as JSON; the trace id is in both."""
    code = want.code.value[0]
    assert answered.returncode == 64 + code, answered.stdout + answered.stderr
    status = json.loads(answered.stderr)  # -format-error: the status alone, as JSON, on stderr
    assert status["code"] == code
    assert status["message"]
    details = {d["@type"]: d for d in status["details"]}
    assert set(details) == ({ERROR_INFO, BAD_REQUEST} if want.violations else {ERROR_INFO})
    info = details[ERROR_INFO]
    assert (info["reason"], info["domain"]) == (want.reason, "encord-gateway")
    assert info["metadata"]["trace_id"] == trace
    assert f"x-cloud-trace-context: {trace}/1;o=1" in answered.stdout  # the trailers, printed by -v
    if want.violations:
        fields = tuple(v["field"] for v in details[BAD_REQUEST]["field_violations"])
        assert fields == want.violations
    return status


@pytest.mark.parametrize("want", REFUSALS, ids=[r.name for r in REFUSALS])
def test_grpcurl_format_error_prints_the_status_details(stack: Plain, want: Refusal) -> None:
    resource = str(next(iter(want.body.values())))
    before = stack.stored(resource)
    trace = secrets.token_hex(16)
    answered = stack.call(want.method, want.body, token=want.token, trace=trace)
    assert_refused(answered, trace, want)
    assert stack.stored(resource) == before


def test_grpcurl_format_error_prints_a_reused_request_id(stack: Plain) -> None:
    body = {**CREATE_DATASET_KEY, "title": "first title", "request_id": str(uuid.uuid4())}
    made = stack.call("CreateDatasetApiKey", body)
    assert made.returncode == 0, made.stderr
    before = stack.stored(DEMO_DATASET)
    trace = secrets.token_hex(16)
    reused = stack.call("CreateDatasetApiKey", {**body, "title": "another title"}, trace=trace)
    want = Refusal("reused", "CreateDatasetApiKey", body, TOKEN, Code.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    status = assert_refused(reused, trace, want)
    assert "request_id" in status["message"]
    assert stack.stored(DEMO_DATASET) == before
