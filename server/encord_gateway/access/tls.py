"""TLS for the gRPC port: the server's certificate and, for mutual TLS, the CA client certificates need."""

from __future__ import annotations

import datetime
import logging
import threading
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from encord_gateway.config import ConfigError, Settings
from encord_gateway.logs import FIELDS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """The PEM bytes read from tls_cert, tls_key and client_ca; checked to belong together."""

    chain: bytes
    key: bytes = field(repr=False)
    client_ca: bytes | None

    @classmethod
    def read(cls, settings: Settings) -> TlsFiles:
        assert settings.tls_cert
        assert settings.tls_key
        chain = _read(settings.tls_cert, "tls_cert")
        key = _read(settings.tls_key, "tls_key")
        client_ca = _read(settings.client_ca, "client_ca") if settings.client_ca else None
        files = cls(chain, key, client_ca)
        files.check(settings)
        return files

    def check(self, settings: Settings) -> None:
        """Catches at start-up (or reload) what gRPC would otherwise only report as failed handshakes."""
        try:
            certificates = x509.load_pem_x509_certificates(self.chain)
        except ValueError:
            raise ConfigError(f"tls_cert {settings.tls_cert} holds no PEM certificate") from None
        try:
            private_key = serialization.load_pem_private_key(self.key, password=None)
        except (ValueError, TypeError):
            # The loader's text could quote the key; say only which file failed.
            raise ConfigError(f"tls_key {settings.tls_key} is not an unencrypted PEM private key") from None
        if private_key.public_key() != certificates[0].public_key():
            raise ConfigError(
                f"tls_key {settings.tls_key} is not the key of the certificate in {settings.tls_cert}"
            )
        if self.client_ca is not None:
            try:
                x509.load_pem_x509_certificates(self.client_ca)
            except ValueError:
                raise ConfigError(f"client_ca {settings.client_ca} holds no PEM certificate") from None
        expires = certificates[0].not_valid_after_utc
        if expires < datetime.datetime.now(datetime.UTC):
            log.warning(
                "the server certificate has expired", extra={FIELDS: {"not_after": expires.isoformat()}}
            )

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.chain)], root_certificates=self.client_ca
        )


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


class ServerTls:
    """The port's credentials; `reload()` swaps in re-read files for the next handshakes (SIGHUP)."""

    def __init__(self, settings: Settings) -> None:
        self.files = TlsFiles.read(settings)
        self.mutual = self.files.client_ca is not None
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None

    def credentials(self) -> grpc.ServerCredentials:
        # With mutual TLS every connection must present a certificate from client_ca: gRPC Python
        # offers no "verify if present", so an untrusted or expired certificate fails the handshake.
        return grpc.dynamic_ssl_server_credentials(
            self.files.configuration(),
            self._fetch,  # type: ignore[arg-type]  # None means "no change"; the stubs forget it
            require_client_authentication=self.mutual,
        )

    def reload(self, settings: Settings) -> None:
        """Re-reads the same files (a rotated certificate); ConfigError leaves the current ones in place."""
        files = TlsFiles.read(settings)
        if (files.client_ca is not None) != self.mutual:
            raise ConfigError("turning mutual TLS on or off needs a restart")
        with self._lock:
            self.files, self._pending = files, files.configuration()

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before each handshake: it must be quick and must not raise.
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def server_tls(settings: Settings) -> ServerTls | None:
    return ServerTls(settings) if settings.tls_cert else None
