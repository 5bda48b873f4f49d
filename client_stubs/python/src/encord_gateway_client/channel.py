"""Channel set-up: plaintext or TLS (optionally mutual), and where a caller token goes."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import grpc

from ._version import __version__

# Given as a path or as the PEM bytes themselves.
PemSource = str | os.PathLike[str] | bytes
Metadata = tuple[tuple[str, str], ...]

USER_AGENT = f"encord-gateway-client-python/{__version__}"


def create_channel(
    address: str,
    *,
    token: str | None = None,
    tls: bool = False,
    tls_ca: PemSource | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
    tls_server_name: str | None = None,
) -> tuple[grpc.Channel, Metadata]:
    """A channel to `address` and the metadata every call on it must carry.

    Over TLS the token is a call credential; gRPC refuses call credentials on a
    plaintext channel, so there it travels as per-call metadata instead, and
    only to a loopback address, where nobody else can read it.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together: give both or neither")
    tls = tls or tls_ca is not None or client_cert is not None
    options: list[tuple[str, str]] = [("grpc.primary_user_agent", USER_AGENT)]
    if not tls:
        if tls_server_name is not None:
            raise ValueError("tls_server_name needs TLS")
        if token is not None and not is_loopback(address):
            raise ValueError(
                f"refusing to send a token in plaintext to {address}: use TLS (tls=True or tls_ca=...)"
            )
        metadata: Metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        return grpc.insecure_channel(address, options=options), metadata
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(tls_ca), private_key=_pem(client_key), certificate_chain=_pem(client_cert)
    )
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    if tls_server_name is not None:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return grpc.secure_channel(address, credentials, options=options), ()


def is_loopback(address: str) -> bool:
    """Whether a gRPC target names this machine: 127.0.0.0/8, ::1, localhost or a unix socket."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    for prefix in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        address = address.removeprefix(prefix)
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()
