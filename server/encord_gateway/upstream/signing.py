"""Encord's v1 request signing: the gateway's Ed25519 SSH key, and the signed headers of each body."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_private_key

from encord_gateway import __version__

TRACE_HEADER = "X-Cloud-Trace-Context"


class SigningKeyError(Exception):
    """The SSH key cannot be used; the message says why in one line and never holds key material."""


@dataclass(frozen=True)
class SigningKey:
    """The gateway's Ed25519 key, loaded once at start-up; its repr never shows the private part."""

    private_key: Ed25519PrivateKey
    public_key_hex: str
    source: str

    def __repr__(self) -> str:
        return f"SigningKey(public_key_hex={self.public_key_hex!r}, source={self.source!r})"

    def authorization(self, body: bytes) -> str:
        """The v1 `Authorization` value: `<public key hex>:<Ed25519(sha256(body)) hex>`."""
        signature = self.private_key.sign(hashlib.sha256(body).digest())
        return f"{self.public_key_hex}:{signature.hex()}"


def load_signing_key(
    *, key_file: str | None, key_text: str | None, passphrase: str | None, source: str
) -> SigningKey:
    """Loads an OpenSSH Ed25519 private key from a file or from its text, as the Encord SDK accepts them."""
    if key_file:
        path = Path(key_file).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SigningKeyError(f"SSH key file {path} does not exist") from None
        except OSError as exc:
            raise SigningKeyError(f"SSH key file {path} cannot be read: {exc.strerror}") from None
    elif key_text:
        data = key_text.encode()
    else:
        raise SigningKeyError("no SSH key: pass --ssh-key-file, or set ENCORD_SSH_KEY_FILE or ENCORD_SSH_KEY")
    password = passphrase.encode() if passphrase else None
    try:
        key = load_ssh_private_key(data, password)
    except TypeError:
        # cryptography says TypeError for "encrypted but no password" and the reverse.
        if password:
            raise SigningKeyError(
                f"SSH key from {source} is not passphrase-protected; drop the passphrase"
            ) from None
        raise SigningKeyError(
            f"SSH key from {source} is passphrase-protected: set ENCORD_SSH_KEY_PASSPHRASE "
            "or --ssh-key-passphrase-file"
        ) from None
    except UnsupportedAlgorithm as exc:
        raise SigningKeyError(f"SSH key from {source} uses an unsupported algorithm: {exc}") from None
    except ValueError as exc:
        # Never echo the key: the message names the source only. A wrong passphrase
        # surfaces as ValueError("Corrupt data: broken checksum").
        why = "wrong passphrase" if password and "checksum" in str(exc) else "not an OpenSSH private key"
        raise SigningKeyError(f"SSH key from {source} cannot be loaded: {why}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"SSH key from {source} is {_key_kind(key)}, but Encord accepts only Ed25519 keys"
        )
    public_hex = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return SigningKey(key, public_hex, source)


def _key_kind(key: object) -> str:
    kinds = {rsa.RSAPrivateKey: "RSA", ec.EllipticCurvePrivateKey: "ECDSA", dsa.DSAPrivateKey: "DSA"}
    return next((name for cls, name in kinds.items() if isinstance(key, cls)), type(key).__name__)


USER_AGENT = f"encord-gateway/{__version__} (+encord-sdk-compatible; v1 signing)"


class RequestSigner:
    """The SDK's headers for a request body, in the SDK's order, with the body's signature.

    Ed25519 is deterministic, so the same body always gets the same header, and the
    gateway sends the same bodies again and again (a list is one body per resource).
    A bounded cache skips the signing for those; it holds nothing a wiretap of the
    calls would not see.
    """

    def __init__(self, key: SigningKey, *, cache_size: int = 1024) -> None:
        self.key = key
        self._authorization = functools.lru_cache(maxsize=cache_size)(key.authorization)

    def headers(self, body: bytes, trace: str) -> list[tuple[str, str]]:
        # Same names and order as encord.configs.SshConfig.define_headers; the body
        # length goes last, as requests adds it after the SDK's headers.
        return [
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
            ("Accept-Encoding", "gzip"),
            ("ResourceType", ""),
            ("ResourceID", ""),
            ("Authorization", self._authorization(body)),
            ("User-Agent", USER_AGENT),
            (TRACE_HEADER, trace),
            ("Content-Length", str(len(body))),
        ]
