"""The emulator's own v1 signature check and OpenSSH key parsing; it shares no code with the gateway."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key

ED25519_KEY_TYPE = "ssh-ed25519"
ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64


class AuthorizationMalformed(ValueError):
    """The Authorization header is not `<public key hex>:<signature hex>` of the right sizes."""


def parse_openssh_public_key(line: str) -> bytes:
    """The raw 32-byte key of an `ssh-ed25519 AAAA... comment` line; ValueError for anything else."""
    parts = line.split()
    if len(parts) < 2 or parts[0] != ED25519_KEY_TYPE:
        raise ValueError(f"not an OpenSSH {ED25519_KEY_TYPE} public key line")
    try:
        base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise ValueError("the key is not valid base64") from exc
    try:
        # The type and the blob only: the comment is free text, and whitespace between is any.
        key = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("the key blob is not an Ed25519 public key") from exc
    if not isinstance(key, Ed25519PublicKey):  # the blob names another type than the line does
        raise ValueError("the key blob is not an Ed25519 public key")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def parse_authorization(header: str) -> tuple[bytes, bytes]:
    """Splits the v1 header `<public key hex>:<signature hex>` into raw public key and signature."""
    public_hex, sep, signature_hex = header.strip().partition(":")
    if not sep:
        raise AuthorizationMalformed("no ':' in the Authorization header")
    try:
        public_key = bytes.fromhex(public_hex)
        signature = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise AuthorizationMalformed("the Authorization header is not hex") from exc
    if len(public_key) != ED25519_PUBLIC_KEY_BYTES or len(signature) != ED25519_SIGNATURE_BYTES:
        raise AuthorizationMalformed("wrong public key or signature size")
    return public_key, signature


# Every call from the same user carries the same public key: parse it once.
@functools.lru_cache(maxsize=1024)
def _load_public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_v1(public_key: bytes, signature: bytes, body: bytes) -> bool:
    """True if `signature` is the Ed25519 signature of sha256(body) under `public_key` (Encord v1)."""
    return _verified(public_key, signature, hashlib.sha256(body).digest())


# The answer depends on nothing but these three values, and clients send the same signed
# body again and again (a list call is one body per resource): verify each triple once.
@functools.lru_cache(maxsize=4096)
def _verified(public_key: bytes, signature: bytes, digest: bytes) -> bool:
    try:
        _load_public_key(public_key).verify(signature, digest)
    except (InvalidSignature, ValueError):
        return False
    return True
