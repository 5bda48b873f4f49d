"""A fake ApiKeyService that records each call, and a throwaway CA with server and client certificates."""

from __future__ import annotations

import datetime
import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc

PROJECT = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"
DATASET = "0c2f1f0e-7f37-4a0e-8c47-1d2e9a6b5f21"


@dataclass
class Received:
    method: str
    request: Any
    metadata: dict[str, str | bytes]


@dataclass
class FailWith(grpc.Status):
    """A status to abort with; grpc.Status is an empty interface with these three attributes."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


@dataclass
class FakeGateway(pb_grpc.ApiKeyServiceServicer):
    """Records what each call carried and answers from `answers`, or aborts with `fail`."""

    received: list[Received] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    fail: FailWith | None = None
    # Set to hold every call until the client gives up (deadline tests); released at teardown.
    hold: threading.Event | None = None

    def _answer(self, method: str, request: Any, context: grpc.ServicerContext, default: Any) -> Any:
        self.received.append(Received(method, request, dict(context.invocation_metadata())))
        if self.hold is not None:
            self.hold.wait(10)
        if self.fail is not None:
            context.abort_with_status(self.fail)
        return self.answers.get(method, default)

    def CreateProjectApiKey(self, request: Any, context: Any) -> Any:
        key = pb.ProjectApiKey(
            api_key="fake-project-key-0001",
            title=request.title,
            scopes=request.scopes,
            project_hash=request.project_hash,
            fingerprint="0123456789abcdef",
        )
        return self._answer("CreateProjectApiKey", request, context, key)

    def ListProjectApiKeys(self, request: Any, context: Any) -> Any:
        return self._answer("ListProjectApiKeys", request, context, pb.ListProjectApiKeysResponse())

    def GetOrCreateProjectApiKey(self, request: Any, context: Any) -> Any:
        return self._answer("GetOrCreateProjectApiKey", request, context, pb.ProjectApiKey())

    def CreateDatasetApiKey(self, request: Any, context: Any) -> Any:
        key = pb.DatasetApiKey(
            dataset_hash=request.dataset_hash,
            api_key="fake-dataset-key-0001",
            title=request.title,
            key_hash="key-hash-1",
            scopes=request.scopes,
            fingerprint="fedcba9876543210",
        )
        return self._answer("CreateDatasetApiKey", request, context, key)

    def ListDatasetApiKeys(self, request: Any, context: Any) -> Any:
        return self._answer("ListDatasetApiKeys", request, context, pb.ListDatasetApiKeysResponse())

    def GetOrCreateDatasetApiKey(self, request: Any, context: Any) -> Any:
        return self._answer("GetOrCreateDatasetApiKey", request, context, pb.DatasetApiKey())


@dataclass
class RunningFake:
    fake: FakeGateway
    address: str


StartFake = Callable[..., RunningFake]


@dataclass(frozen=True)
class Pki:
    """PEM bytes of a CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""

    ca: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    extensions: list[x509.ExtensionType],
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=isinstance(extension, x509.BasicConstraints))
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki() -> Pki:
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("test CA", ca_key, None, [x509.BasicConstraints(ca=True, path_length=None)])
    server = _certificate(
        "localhost",
        server_key,
        (ca.subject, ca_key),
        [
            x509.BasicConstraints(ca=False, path_length=None),
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
        ],
    )
    client = _certificate(
        "test client", client_key, (ca.subject, ca_key), [x509.BasicConstraints(ca=False, path_length=None)]
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca.public_bytes(pem),
        server.public_bytes(pem),
        _key_pem(server_key),
        client.public_bytes(pem),
        _key_pem(client_key),
    )
