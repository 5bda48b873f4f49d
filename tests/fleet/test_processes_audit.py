"""`serve --processes 2`: both workers append to one audit file; no line is cut, glued or lost.

Each worker writes a record with one os.write on its own O_APPEND descriptor (access/audit.py), so
the kernel must keep the workers' lines whole and apart. A record names no worker, but it names its
peer, the client end of the connection; the connection belongs to one worker (/proc), which shows
that both workers wrote records into the one file.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from encord_gateway.dev.devstack import Service, start_gateway, write_fixture, write_ssh_key
from encord_gateway.redaction import fingerprint
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.fleet import channel_reaching, children, client_ports
from support.reliability import FaultProxy, new_hashes, start_emulator
from support.secured import callers_toml, sha256

CREATES = 200
THREADS = 8
CHANNELS_PER_WORKER = 2
CREATE = "CreateProjectApiKey"
LIST = "ListProjectApiKeys"


@dataclass
class Audited:
    gateway: Service
    proxy: FaultProxy
    projects: list[str]
    token: str
    audit_log: Path
    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.gateway.address.rsplit(":", 1)[1])

    def metadata(self, trace_id: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"), ("x-cloud-trace-context", f"{trace_id}/1;o=1"))

    def list_keys(self, channel: grpc.Channel, project: str) -> tuple[str, pb.ListProjectApiKeysResponse]:
        trace_id = secrets.token_hex(16)
        with self.lock:
            self.calls[LIST] += 1
        answer: pb.ListProjectApiKeysResponse = pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(
            pb.ListProjectApiKeysRequest(project_hash=project), timeout=20, metadata=self.metadata(trace_id)
        )
        return trace_id, answer

    def create_key(self, channel: grpc.Channel, project: str, title: str) -> tuple[str, pb.ProjectApiKey]:
        trace_id = secrets.token_hex(16)
        with self.lock:
            self.calls[CREATE] += 1
        request = pb.CreateProjectApiKeyRequest(
            project_hash=project, title=title, scopes=[pb.API_KEY_SCOPE_LABEL_READ]
        )
        answer: pb.ProjectApiKey = pb_grpc.ApiKeyServiceStub(channel).CreateProjectApiKey(
            request, timeout=20, metadata=self.metadata(trace_id)
        )
        return trace_id, answer


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[Audited]:
    key_file = tmp_path / "gateway_ed25519"
    fixture = tmp_path / "fixture.toml"
    projects = new_hashes(2)
    write_fixture(fixture, write_ssh_key(key_file), projects=projects, datasets=[])
    emulator = start_emulator(tmp_path, fixture, state=tmp_path / "emulator.sqlite")
    proxy = FaultProxy(emulator.address)
    token = secrets.token_urlsafe(24)
    everything = ("methods", "projects", "datasets", "project_scopes", "dataset_scopes")
    caller = {
        "name": "auditor",
        "tokens": [{"sha256": sha256(token)}],
        **{key: ["*"] for key in everything},
        "reveal_keys": True,
    }
    config = tmp_path / "gateway.toml"
    config.write_text(callers_toml([caller]))
    audit_log = tmp_path / "audit.jsonl"
    args = [
        "--processes", "2", "--state-url", f"sqlite:///{tmp_path / 'state.db'}",
        "--config", str(config), "--audit-log", str(audit_log),
    ]  # fmt: skip
    gateway = start_gateway(proxy.url, key_file, *args, log_path=tmp_path / "gateway.log")
    try:
        yield Audited(gateway, proxy, projects, token, audit_log)
    finally:
        proxy.release()
        gateway.stop()
        proxy.close()
        emulator.stop()


def peer_port(record: dict[str, Any]) -> int:
    return int(str(record["peer"]).rsplit(":", 1)[1])


def test_two_workers_share_one_audit_file_without_cut_or_lost_lines(audited: Audited) -> None:
    workers = sorted(children(audited.gateway.process.pid))
    assert len(workers) == 2, workers
    opened: list[grpc.Channel] = []
    try:
        # Channels pinned to each worker (one connection each, the kernel's pick, found through /proc).
        def warm_up(channel: grpc.Channel) -> None:
            audited.list_keys(channel, audited.projects[0])

        channels = [
            channel_reaching(audited.gateway.address, worker, warm_up, opened)
            for worker in workers
            for _ in range(CHANNELS_PER_WORKER)
        ]

        titles = iter(f"audit-{n:03d}-{secrets.token_hex(4)}" for n in range(CREATES))
        take = threading.Lock()
        created: list[tuple[str, pb.ProjectApiKey]] = []
        listed: list[tuple[str, pb.ListProjectApiKeysResponse]] = []
        failures: list[str] = []
        creating = threading.Event()
        creating.set()

        def creator(index: int) -> None:
            channel = channels[index % len(channels)]
            n = index
            while True:
                with take:
                    title = next(titles, None)
                if title is None:
                    return
                try:
                    answer = audited.create_key(channel, audited.projects[n % 2], title)
                except grpc.RpcError as error:
                    failures.append(f"create {title}: {error.code().name} {error.details()}")
                else:
                    with take:
                        created.append(answer)
                n += 1

        def lister(index: int) -> None:
            n = index
            while creating.is_set():
                channel = channels[n % len(channels)]
                try:
                    answer = audited.list_keys(channel, audited.projects[n % 2])
                except grpc.RpcError as error:
                    failures.append(f"list: {error.code().name} {error.details()}")
                else:
                    with take:
                        listed.append(answer)
                n += 1
                time.sleep(0.01)

        creators = [threading.Thread(target=creator, args=(i,)) for i in range(THREADS)]
        listers = [threading.Thread(target=lister, args=(i,)) for i in range(2)]
        for thread in [*creators, *listers]:
            thread.start()
        for thread in creators:
            thread.join(60)
        creating.clear()
        for thread in listers:
            thread.join(30)
        assert not any(t.is_alive() for t in [*creators, *listers])
        assert failures == []
        assert len(created) == CREATES
        assert any(answer.api_keys for _, answer in listed), "no list revealed a key"

        # Which worker holds each client port, while the connections are still open.
        holder = {port: worker for worker in workers for port in client_ports(audited.port, worker)}
    finally:
        for channel in opened:
            channel.close()

    assert audited.gateway.stop() == 0
    text = audited.audit_log.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(r, dict) and r.get("type") == "audit" for r in records)

    # Not one record lost: a line per call made, each call's trace id once.
    assert len(records) == sum(audited.calls.values())
    traces = Counter(r["trace_id"] for r in records)
    assert all(count == 1 for count in traces.values())

    # Creates: one record each, naming the key returned; every key's fingerprint exactly once.
    creates = [r for r in records if r["method"] == CREATE]
    assert len(creates) == len(created) == audited.calls[CREATE]
    by_trace = {r["trace_id"]: r for r in records}
    for trace_id, key in created:
        record = by_trace[trace_id]
        assert key.fingerprint == fingerprint(key.api_key)
        assert (record["outcome"], record["created"], record["fingerprint"]) == ("OK", True, key.fingerprint)
        assert record["title"] == key.title
    made = Counter(r["fingerprint"] for r in creates)
    assert sorted(made) == sorted(key.fingerprint for _, key in created)
    assert set(made.values()) == {1}

    # Lists: the record names exactly the keys that the answer revealed.
    for trace_id, answer in listed:
        record = by_trace[trace_id]
        revealed = [key.fingerprint for key in answer.api_keys]
        assert all(key.fingerprint == fingerprint(key.api_key) for key in answer.api_keys)
        assert record["outcome"] == "OK"
        assert record["fingerprints"] == revealed
        assert record["key_returned"] is bool(revealed)

    # Both workers wrote into the one file: every create came over a connection one of them held.
    writers = Counter(holder.get(peer_port(r)) for r in creates)
    assert None not in writers, writers
    assert set(writers) == set(workers), writers
