"""Fixtures shared by every test: SSH keys, gateway processes, channels and stubs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import Stack, running_stack, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc

# Every process the tests start inherits a fault handler: one that does not stop in time is sent SIGABRT
# (Service.stop) and prints every thread's stack, so a hang in CI shows where it was.
os.environ.setdefault("PYTHONFAULTHANDLER", "1")


@pytest.fixture
def ssh_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    write_ssh_key(path)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An emulator and a gateway shared by one test module."""
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.gateway.address) as chan:
        grpc.channel_ready_future(chan).result(timeout=10)
        yield chan


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.ApiKeyServiceStub:
    return pb_grpc.ApiKeyServiceStub(channel)
