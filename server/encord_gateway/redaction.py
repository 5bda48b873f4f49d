"""How a secret is named where it may not appear: by fingerprint."""

from __future__ import annotations

import hashlib

FINGERPRINT_HEX_DIGITS = 16


def fingerprint(api_key: str) -> str:
    """The first 16 hex digits of the key's SHA-256: enough to find it, useless to use it."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:FINGERPRINT_HEX_DIGITS]
