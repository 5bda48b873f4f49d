"""Fixtures of the Http1Client tests: clients closed after each test, a test CA (servers: ../conftest.py)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
from encord_gateway.upstream.http1 import Http1Client
from support.pki import Authority
from upstream.http1.peers import MakeClient, Tls


@pytest.fixture
def client() -> Iterator[MakeClient]:
    clients: list[Http1Client] = []

    def make(url: str, **kwargs: object) -> Http1Client:
        kwargs = {"max_idle": 32, "connect_timeout_s": 5.0, **kwargs}
        made = Http1Client(url, **kwargs)  # type: ignore[arg-type]
        clients.append(made)
        return made

    yield make
    for made in clients:
        made.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("http1-tls")
    authority = Authority("http1 test CA")
    cert, key = authority.issue("localhost", dns=("localhost",), ips=("127.0.0.1",), server=True).write(
        directory, "server"
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(authority.cert_pem)
    return Tls(context, authority.cert_pem.decode(), ca_file)
