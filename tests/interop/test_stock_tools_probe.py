"""grpc-health-probe against a live gateway: plaintext, TLS, mutual TLS beside the plaintext probe port."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from encord_gateway.dev.devstack import Service, running_stack
from interop.stock_tools import SERVICE, run, tool
from support.pki import Authority
from support.secured import secured_stack

TOKEN = secrets.token_urlsafe(24)
CALLERS = [
    {
        "name": "operator",
        "tokens": [{"sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}],
        "methods": ["*"],
        "projects": ["*"],
    }
]
# grpc-health-probe's exit codes (its README): the connection failed, the RPC failed, not SERVING.
CONNECTION_FAILED, RPC_FAILED = 2, 3


@dataclass
class Probed:
    """A gateway's main address, its plaintext probe port, and the CA and a client certificate for TLS."""

    address: str
    health: str
    ca_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None


def health_address(gateway: Service) -> str:
    line = gateway.wait_for_line(lambda text: text.startswith("health on "))
    assert line is not None, "the gateway announced no probe port"
    return line.split()[-1]


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return run(tool("grpc-health-probe"), *args)


def assert_serving(probed: subprocess.CompletedProcess[str]) -> None:
    assert probed.returncode == 0, probed.stdout + probed.stderr
    assert "status: SERVING" in probed.stdout + probed.stderr


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    workdir = tmp_path_factory.mktemp("probe-plain")
    with running_stack(workdir, gateway_args=["--health-listen", "127.0.0.1:0"], caller_token=TOKEN) as stack:
        yield Probed(stack.gateway.address, health_address(stack.gateway))


def secured(workdir: Path, *, mutual: bool) -> Iterator[Probed]:
    args = ["--health-listen", "127.0.0.1:0"]
    with secured_stack(workdir, CALLERS, mutual=mutual, gateway_args=args) as running:
        ca_file = workdir / "ca.crt"
        ca_file.write_bytes(running.ca.cert_pem)
        # Signed by the CA but naming no caller: the handshake takes it, and health needs no caller.
        client = running.ca.issue("probe", dns=("probe.internal",)).write(workdir, "probe")
        yield Probed(running.address, health_address(running.stack.gateway), ca_file, client)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    yield from secured(tmp_path_factory.mktemp("probe-tls"), mutual=False)


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    yield from secured(tmp_path_factory.mktemp("probe-mtls"), mutual=True)


@pytest.mark.parametrize("port", ["main", "health"])
def test_grpc_health_probe_reads_serving(plain: Probed, port: str) -> None:
    address = plain.address if port == "main" else plain.health
    assert_serving(probe(f"-addr={address}"))
    assert_serving(probe(f"-addr={address}", f"-service={SERVICE}"))


def test_grpc_health_probe_fails_on_an_unknown_service(plain: Probed) -> None:
    probed = probe(f"-addr={plain.health}", "-service=no.such.Service")
    assert probed.returncode == RPC_FAILED, probed.stdout + probed.stderr


def test_grpc_health_probe_over_tls_checks_the_server_certificate(tls: Probed, tmp_path: Path) -> None:
    assert tls.ca_file is not None
    trusting = (f"-addr={tls.address}", "-tls", f"-tls-ca-cert={tls.ca_file}")
    assert_serving(probe(*trusting))
    assert_serving(probe(*trusting, "-tls-server-name=localhost"))
    assert_serving(probe(*trusting, f"-service={SERVICE}"))
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(Authority("another CA").cert_pem)
    refused = [
        probe(f"-addr={tls.address}", "-tls", f"-tls-ca-cert={other_ca}"),  # a CA the probe does not trust
        probe(*trusting, "-tls-server-name=elsewhere.test"),  # a name the certificate does not hold
        probe(f"-addr={tls.address}"),  # plaintext against a TLS port
    ]
    assert [p.returncode for p in refused] == [CONNECTION_FAILED] * 3, [p.stderr for p in refused]
    assert_serving(probe(f"-addr={tls.health}"))  # the probe port stays plaintext


def test_with_mutual_tls_a_probe_without_a_certificate_needs_the_probe_port(mtls: Probed) -> None:
    assert mtls.ca_file is not None
    assert mtls.client_cert is not None
    cert, key = mtls.client_cert
    trusting = (f"-addr={mtls.address}", "-tls", f"-tls-ca-cert={mtls.ca_file}")
    without = probe(*trusting)
    assert without.returncode == CONNECTION_FAILED, without.stdout + without.stderr
    assert_serving(probe(*trusting, f"-tls-client-cert={cert}", f"-tls-client-key={key}"))
    # What a kubelet or a load balancer can do without a certificate: probe the plaintext port.
    assert_serving(probe(f"-addr={mtls.health}"))
    assert_serving(probe(f"-addr={mtls.health}", f"-service={SERVICE}"))
