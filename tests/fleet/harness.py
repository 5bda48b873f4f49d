"""A fleet on loopback: one emulator behind a fault proxy, one redis-server, N gateway replicas on it."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from encord_gateway.dev.devstack import Service, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from reliability.harness import FaultProxy, new_hashes, start_emulator, start_gateway, stored_keys
from support.redis_server import RedisServer

READ = [pb.API_KEY_SCOPE_LABEL_READ]
ADMIN_TITLE = "{} - admin key"


@dataclass
class Fleet:
    workdir: Path
    key_file: Path
    emulator_state: Path
    projects: list[str]
    emulator: Service
    proxy: FaultProxy
    redis: RedisServer
    gateway_args: list[str]
    gateways: list[Service] = field(default_factory=list)

    # Replicas ----------------------------------------------------------------------------------------

    def start_replica(self, index: int | None = None) -> Service:
        """A gateway on the fleet's Redis, in a folder of its own (log, audit file); replaces `index`."""
        number = len(self.gateways) if index is None else index
        folder = self.workdir / f"gateway-{number}-{uuid.uuid4().hex[:4]}"
        folder.mkdir()
        replica = start_gateway(folder, self.key_file, self.proxy.url, args=self.gateway_args)
        if index is None:
            self.gateways.append(replica)
        else:
            self.gateways[index] = replica
        return replica

    def kill(self, index: int) -> None:
        replica = self.gateways[index]
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(10)

    @property
    def addresses(self) -> list[str]:
        return [g.address for g in self.gateways]

    def spread_channel(self, addresses: Sequence[str] | None = None) -> grpc.Channel:
        """One channel whose calls go round robin over the replicas, as a client behind no balancer does."""
        target = "ipv4:" + ",".join(addresses or self.addresses)
        channel = grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")])
        grpc.channel_ready_future(channel).result(timeout=15)
        return channel

    def health(self, index: int) -> str:
        with grpc.insecure_channel(self.gateways[index].address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    # What Encord holds -------------------------------------------------------------------------------

    def stored(self) -> dict[str, tuple[str, str]]:
        return stored_keys(self.emulator_state)

    def stored_titles(self) -> Counter[str]:
        return Counter(title for _, title in self.stored().values())

    def master_keys(self, project: str) -> list[str]:
        title = ADMIN_TITLE.format(project)
        return [key for key, (resource, t) in self.stored().items() if resource == project and t == title]

    def fresh_project(self) -> str:
        """A project of the fixture that no test has used yet."""
        return self.projects.pop()


@contextlib.contextmanager
def running_fleet(
    workdir: Path,
    *,
    replicas: int,
    projects: int = 8,
    gateway_args: Sequence[str] = (),
) -> Iterator[Fleet]:
    """Redis, the emulator (SQLite state), a fault proxy before it, and `replicas` gateways sharing Redis."""
    redis_server = RedisServer(workdir / "redis").start()
    key_file = workdir / "gateway_ed25519"
    fixture = workdir / "fixture.toml"
    hashes = new_hashes(projects)
    write_fixture(fixture, write_ssh_key(key_file), projects=hashes, datasets=[])
    state = workdir / "emulator.sqlite"
    emulator = start_emulator(workdir, fixture, state=state)
    proxy = FaultProxy(emulator.address)
    args = ["--state-url", redis_server.url, "--reconcile-after", "0.2", *gateway_args]
    fleet = Fleet(workdir, key_file, state, list(hashes), emulator, proxy, redis_server, args)
    try:
        for _ in range(replicas):
            fleet.start_replica()
        yield fleet
    finally:
        for replica in fleet.gateways:
            replica.stop()
        proxy.close()
        emulator.stop()
        redis_server.stop()


# Calls ---------------------------------------------------------------------------------------------------


def reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return 0.0


def outcome(call: Callable[[], Any]) -> str:
    """OK, or CODE/REASON: what one call came to, never raising."""
    try:
        call()
    except grpc.RpcError as error:
        return f"{error.code().name}/{reason(error)}"
    return "OK"


def create_request(project: str, title: str, request_id: str = "") -> pb.CreateProjectApiKeyRequest:
    return pb.CreateProjectApiKeyRequest(
        project_hash=project, title=title, scopes=READ, request_id=request_id
    )


def create_until_answered(
    stubs: Sequence[pb_grpc.ApiKeyServiceStub],
    project: str,
    title: str,
    request_id: str,
    *,
    start: int = 0,
    attempts: int = 60,
    seen: list[str] | None = None,
) -> pb.ProjectApiKey:
    """A well-behaved client: the same request id on every retry, each retry to the next replica."""
    log = seen if seen is not None else []
    for attempt in range(attempts):
        stub = stubs[(start + attempt) % len(stubs)]
        try:
            answer: pb.ProjectApiKey = stub.CreateProjectApiKey(
                create_request(project, title, request_id), timeout=20
            )
            return answer
        except grpc.RpcError as error:
            log.append(f"{error.code().name}/{reason(error)}")
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED):
                raise
            time.sleep(max(retry_delay(error), 0.05))
    raise AssertionError(f"{title} was never answered: {Counter(log)}")
