"""The gateway process reaches Encord through the environment's HTTPS_PROXY, and around it for NO_PROXY.

The emulator serves HTTPS with a certificate from a test CA; the proxy is a CONNECT relay on
loopback that records every tunnel it is asked for.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import (
    DEMO_PROJECT,
    Service,
    cli_argv,
    start_gateway,
    start_service,
    write_fixture,
    write_ssh_key,
)
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.loopback import Server, connect_proxy, head_fields
from support.pki import Authority

CREDENTIALS = "relay:s3cret"
PROXY_AUTHORIZATION = "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()


@dataclass
class HttpsEncord:
    emulator: Service
    key_file: Path
    ca_file: Path

    @property
    def domain(self) -> str:
        return f"https://{self.emulator.address}"


@pytest.fixture(scope="module")
def encord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsEncord]:
    workdir = tmp_path_factory.mktemp("proxy")
    authority = Authority("proxy test CA")
    cert, key = authority.issue("emulator", ips=("127.0.0.1",), server=True).write(workdir, "emulator")
    ca_file = workdir / "ca.pem"
    ca_file.write_bytes(authority.cert_pem)
    key_file = workdir / "gateway_ed25519"
    fixture = workdir / "fixture.toml"
    write_fixture(fixture, write_ssh_key(key_file), projects=(DEMO_PROJECT,), datasets=())
    argv = cli_argv("emulator", "--listen", "127.0.0.1:0", "--fixture", str(fixture))
    emulator = start_service("emulator", [*argv, "--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        yield HttpsEncord(emulator, key_file, ca_file)
    finally:
        emulator.stop()


@pytest.fixture
def proxy() -> Iterator[Server]:
    server = Server(connect_proxy(PROXY_AUTHORIZATION))
    try:
        yield server
    finally:
        server.close()
        assert not server.errors, server.errors


def list_through(encord: HttpsEncord, env: dict[str, str]) -> pb.ListProjectApiKeysResponse:
    # Whatever the machine running the tests has set must not decide where the gateway connects
    # (an empty lower-case variable unsets its upper-case twin, as in urllib and the SDK).
    cleared = {name: "" for name in ("http_proxy", "all_proxy", "no_proxy", "NO_PROXY")}
    gateway = start_gateway(
        encord.domain, encord.key_file, "--encord-ca-file", str(encord.ca_file), env={**cleared, **env}
    )
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stub = pb_grpc.ApiKeyServiceStub(channel)
            answer: pb.ListProjectApiKeysResponse = stub.ListProjectApiKeys(
                pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=10
            )
        return answer
    finally:
        assert gateway.stop() == 0
        # The proxy's password is the environment's secret: it never reaches the gateway's logs.
        assert "s3cret" not in "".join(gateway.output)


def test_calls_go_through_the_proxy_tunnel(encord: HttpsEncord, proxy: Server) -> None:
    url = f"http://{CREDENTIALS}@127.0.0.1:{proxy.port}"
    env = {"HTTPS_PROXY": url, "https_proxy": url}
    assert list(list_through(encord, env).api_keys) == []
    assert len(proxy.requests) == 1  # one tunnel, kept for the call
    request_line, fields = head_fields(proxy.requests[0])
    assert request_line == f"CONNECT {encord.emulator.address} HTTP/1.1"
    assert fields["proxy-authorization"] == PROXY_AUTHORIZATION


def test_no_proxy_goes_around_it(encord: HttpsEncord, proxy: Server) -> None:
    url = f"http://127.0.0.1:{proxy.port}"
    env = {"HTTPS_PROXY": url, "https_proxy": url, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    assert list(list_through(encord, env).api_keys) == []
    assert proxy.accepts == 0
