"""Fixtures for the client's own tests: a fake gateway on a real loopback port, and a CA."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from interop.fakes import FakeGateway, Pki, RunningFake, StartFake, make_pki


@pytest.fixture
def start_fake() -> Iterator[StartFake]:
    """Starts a FakeGateway on 127.0.0.1:0, plaintext or with the given server credentials."""
    servers: list[tuple[grpc.Server, FakeGateway]] = []

    def start(credentials: grpc.ServerCredentials | None = None) -> RunningFake:
        fake = FakeGateway()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_ApiKeyServiceServicer_to_server(fake, server)
        if credentials is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", credentials)
        server.start()
        servers.append((server, fake))
        return RunningFake(fake, f"127.0.0.1:{port}")

    yield start
    for server, fake in servers:
        if fake.hold is not None:
            fake.hold.set()
        server.stop(None).wait()


@pytest.fixture
def fake(start_fake: StartFake) -> RunningFake:
    return start_fake()


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()
