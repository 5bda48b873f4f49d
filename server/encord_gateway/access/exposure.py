"""The exposure rule: a gateway anyone could reach must authenticate its callers."""

from __future__ import annotations

import ipaddress

from encord_gateway.access.policy import Policy
from encord_gateway.config import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def exposure(settings: Settings, policy: Policy) -> str:
    """Why anyone who reaches the listen address could mint admin keys, or "" if they could not."""
    if is_loopback(settings.listen_host) or not policy.open or settings.client_ca:
        return ""
    # TLS alone authenticates the gateway to callers, not callers to the gateway: with no callers and
    # no client CA it would be the same open relay, only encrypted.
    transport = "TLS without client certificates" if settings.tls_cert else "no TLS"
    return (
        f"{settings.listen} is not a loopback address, and with {transport} and no [[callers]] "
        "anyone who reaches it could mint admin keys"
    )
