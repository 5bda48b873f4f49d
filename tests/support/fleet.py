"""A fleet on loopback: one emulator behind a fault proxy, one redis-server, N gateway replicas on it."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import tomli_w
from encord_gateway.dev.devstack import Service, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.redis_server import RedisServer
from support.reliability import (
    FaultProxy,
    new_hashes,
    reason_of,
    retry_delay,
    start_emulator,
    start_gateway,
    stored_keys,
)

READ = [pb.API_KEY_SCOPE_LABEL_READ]
ADMIN_TITLE = "{} - admin key"
# The limited caller's rate: 6 calls, then one every 100 s, so that no token comes back during a test.
LIMITED_RATE = {"per_second": 0.01, "burst": 6}


@dataclass(frozen=True)
class Callers:
    """The fleet's two callers: one allowed everything (the load), one held to LIMITED_RATE."""

    fleet: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    limited: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def toml(self) -> str:
        def caller(name: str, token: str, **extra: object) -> dict[str, object]:
            everything = ("methods", "projects", "datasets", "project_scopes", "dataset_scopes")
            return {
                "name": name,
                "tokens": [{"sha256": hashlib.sha256(token.encode()).hexdigest()}],
                **{key: ["*"] for key in everything},
                "reveal_keys": True,
                **extra,
            }

        fleet = caller("fleet", self.fleet, max_in_flight=256)
        return tomli_w.dumps({"callers": [fleet, caller("limited", self.limited, rate_limit=LIMITED_RATE)]})


class Bearer(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]  # generic in the stubs only
    """Sends a caller's token with every call of a channel."""

    def __init__(self, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = (*(details.metadata or ()), *self.metadata)
        return continuation(details._replace(metadata=metadata), request)


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
    callers: Callers
    gateways: list[Service] = field(default_factory=list)
    channels: list[grpc.Channel] = field(default_factory=list)

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

    def _channel(self, target: str, token: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        raw = grpc.insecure_channel(target, options=list(options))
        grpc.channel_ready_future(raw).result(timeout=15)
        self.channels.append(raw)
        return grpc.intercept_channel(raw, Bearer(token))

    def spread_stub(self, token: str | None = None) -> pb_grpc.ApiKeyServiceStub:
        """One channel whose calls go round robin over the replicas, as a client behind no balancer does."""
        target = "ipv4:" + ",".join(self.addresses)
        options = [("grpc.lb_policy_name", "round_robin")]
        return pb_grpc.ApiKeyServiceStub(self._channel(target, token or self.callers.fleet, options))

    def replica_stubs(
        self, token: str | None = None, *, alive_only: bool = False
    ) -> list[pb_grpc.ApiKeyServiceStub]:
        """A stub per replica, in order: a client that picks the replica of each attempt itself."""
        replicas = [g for g in self.gateways if not alive_only or g.process.poll() is None]
        return [
            pb_grpc.ApiKeyServiceStub(self._channel(replica.address, token or self.callers.fleet))
            for replica in replicas
        ]

    def close_channels(self) -> None:
        for channel in self.channels:
            channel.close()
        self.channels.clear()

    def health(self, index: int, service: str = "") -> str:
        with grpc.insecure_channel(self.gateways[index].address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=10
            )
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
    callers = Callers()
    (workdir / "gateway.toml").write_text(callers.toml())
    args = [
        "--state-url", redis_server.url, "--reconcile-after", "0.2",
        "--config", str(workdir / "gateway.toml"), *gateway_args,
    ]  # fmt: skip
    fleet = Fleet(workdir, key_file, state, list(hashes), emulator, proxy, redis_server, args, callers)
    try:
        for _ in range(replicas):
            fleet.start_replica()
        yield fleet
    finally:
        fleet.close_channels()
        for replica in fleet.gateways:
            replica.stop()
        proxy.close()
        emulator.stop()
        redis_server.stop()


# Processes -----------------------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _sockets(port: int, pid: int, state: str) -> Iterator[list[str]]:
    """The /proc/net/tcp rows of TCP sockets on local `port` in `state` among `pid`'s descriptors."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                yield fields


def connections_to(port: int, pid: int, state: str = "01") -> int:
    """TCP sockets on local `port` in `state` (01 established, 0A listening) among `pid`'s descriptors."""
    return sum(1 for _ in _sockets(port, pid, state))


def client_ports(port: int, pid: int) -> set[int]:
    """The client ports of the established connections to local `port` that `pid` holds."""
    return {int(fields[2].rsplit(":", 1)[1], 16) for fields in _sockets(port, pid, "01")}


# Calls ---------------------------------------------------------------------------------------------------


def channel_reaching(
    address: str,
    worker: int,
    call: Callable[[grpc.Channel], None],
    channels: list[grpc.Channel],
    tries: int = 64,
) -> grpc.Channel:
    """New connections, each made by one `call`, until the kernel hands one to `worker` (SO_REUSEPORT
    spreads them by hash); every channel opened is kept in `channels` for the caller to close."""
    port = int(address.rsplit(":", 1)[1])
    for _ in range(tries):
        before = connections_to(port, worker)
        channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        channels.append(channel)
        call(channel)
        if connections_to(port, worker) > before:
            return channel
    raise AssertionError(f"no connection reached worker {worker} in {tries}")


def wait_for(predicate: Callable[[], object], timeout: float = 15.0) -> bool:
    """Whether `predicate` came true within `timeout` seconds, polled every 50 ms."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def outcome(call: Callable[[], Any]) -> str:
    """OK, or CODE/REASON: what one call came to, never raising."""
    try:
        call()
    except grpc.RpcError as error:
        return f"{error.code().name}/{reason_of(error)}"
    return "OK"


def create_request(project: str, title: str, request_id: str = "") -> pb.CreateProjectApiKeyRequest:
    return pb.CreateProjectApiKeyRequest(
        project_hash=project, title=title, scopes=READ, request_id=request_id
    )


class GaveUp(Exception):
    """The client stopped retrying a create before it was answered."""


def create_until_answered(
    stubs: Sequence[pb_grpc.ApiKeyServiceStub],
    project: str,
    title: str,
    request_id: str,
    *,
    start: int = 0,
    attempts: int = 60,
    seen: list[str] | None = None,
    timeout: float = 20.0,
    give_up: threading.Event | None = None,
) -> pb.ProjectApiKey:
    """A well-behaved client: the same request id on every retry, each retry to the next replica.

    With `give_up` set, it stops retrying (GaveUp): the create may then have made its key or not.
    """
    log = seen if seen is not None else []
    for attempt in range(attempts):
        if give_up is not None and give_up.is_set():
            raise GaveUp(title)
        stub = stubs[(start + attempt) % len(stubs)]
        try:
            answer: pb.ProjectApiKey = stub.CreateProjectApiKey(
                create_request(project, title, request_id), timeout=timeout
            )
            return answer
        except grpc.RpcError as error:
            log.append(f"{error.code().name}/{reason_of(error)}")
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED):
                raise
            time.sleep(max(retry_delay(error), 0.05))
    raise AssertionError(f"{title} was never answered: {Counter(log)}")
