"""Fixtures of the upstream tests: a signing key, and loopback servers closed and checked after each test."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from encord_gateway.dev.devstack import write_ssh_key
from encord_gateway.upstream.signing import SigningKey, load_signing_key
from support.loopback import Handler, Server
from upstream.http1.peers import Serve


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    write_ssh_key(tmp_path / "key")
    return load_signing_key(
        key_file=str(tmp_path / "key"), key_text=None, passphrase=None, source="--ssh-key-file"
    )


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[Server] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(handler, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    for server in servers:
        assert not server.errors, server.errors
