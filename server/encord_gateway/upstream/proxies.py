"""Which proxy a URL goes through: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY read as the SDK reads them.

The variables come in as a mapping (Settings.proxy_env, captured once in config): nothing
here reads the process environment. The rules are requests' (get_environ_proxies), which
the SDK follows: a lower-case variable wins over its upper-case twin, and an empty one
unsets it; NO_PROXY matches host suffixes, IPv4 CIDRs and `*`.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

from requests.utils import address_in_network, is_ipv4_address, is_valid_cidr


def proxy_url(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy URL the variables in `env` name for `url`; None when none does or NO_PROXY matches it."""
    parts = urlsplit(url)
    proxies = by_scheme(env)
    if parts.hostname is None or _bypassed(parts, env, proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all") or None


def by_scheme(env: Mapping[str, str]) -> dict[str, str]:
    """`{"https": ..., "no": ...}` from `*_proxy` variables, as urllib's getproxies_environment builds it."""
    proxies: dict[str, str] = {}
    for name, value in env.items():
        key = name.lower()
        if value and key.endswith("_proxy"):
            proxies[key[: -len("_proxy")]] = value
    # Then the lower-case ones again, so that they win; an empty one unsets its twin. (urllib also
    # drops HTTP_PROXY under CGI, where a request header can set it: the gateway is not a CGI script.)
    for name, value in env.items():
        if name.endswith("_proxy"):
            key = name.lower()[: -len("_proxy")]
            if value:
                proxies[key] = value
            else:
                proxies.pop(key, None)
    return proxies


def _bypassed(parts: SplitResult, env: Mapping[str, str], proxies: Mapping[str, str]) -> bool:
    """requests' should_bypass_proxies: its own NO_PROXY matching, then urllib's."""
    hostname = parts.hostname or ""
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY")
    if no_proxy:
        entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
        if is_ipv4_address(hostname):
            for entry in entries:
                if is_valid_cidr(entry):
                    if address_in_network(hostname, entry):
                        return True
                elif hostname == entry:
                    return True
        else:
            host_with_port = f"{hostname}:{parts.port}" if parts.port else hostname
            if any(hostname.endswith(entry) or host_with_port.endswith(entry) for entry in entries):
                return True
    # urllib's matching (`*`, leading dots), as requests calls it; undocumented, so not in the stubs.
    try:
        return bool(proxy_bypass_environment(hostname, dict(proxies)))
    except (TypeError, socket.gaierror):
        return False
