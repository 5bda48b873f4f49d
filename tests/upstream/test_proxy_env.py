"""upstream.proxy_for: the proxy that HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY, as captured, name.

The variables are passed in (config captures them into Settings.proxy_env); the upstream layer never
reads the process environment, which these tests check by setting it to something else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests.utils
from encord_gateway.dev.devstack import write_ssh_key
from encord_gateway.upstream import client as upstream
from encord_gateway.upstream.http1 import Origin, Proxy
from encord_gateway.upstream.signing import load_signing_key

ENCORD = "https://api.encord.com/public/user"
PROXY = Proxy(Origin("http", "proxy.internal", 3128))


@pytest.fixture(autouse=True)
def misleading_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process environment that names a proxy for everything: none of it may count."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://from-the-process.invalid:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def test_proxy_for_without_any_variable() -> None:
    assert upstream.proxy_for(ENCORD, {}) is None


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy"])
def test_proxy_for_honours_https_proxy(name: str) -> None:
    env = {name: "http://u:p@proxy.internal:3128"}
    assert upstream.proxy_for(ENCORD, env) == Proxy(Origin("http", "proxy.internal", 3128), "Basic dTpw")


def test_proxy_for_prefers_the_scheme_over_all_proxy() -> None:
    env = {"ALL_PROXY": "http://all.internal:1"}
    assert upstream.proxy_for(ENCORD, env) == Proxy(Origin("http", "all.internal", 1))
    env["HTTPS_PROXY"] = "http://https.internal:2"
    assert upstream.proxy_for(ENCORD, env) == Proxy(Origin("http", "https.internal", 2))


def test_proxy_for_uses_http_proxy_only_for_http() -> None:
    env = {"HTTP_PROXY": "http://plain.internal:3"}
    assert upstream.proxy_for(ENCORD, env) is None
    assert upstream.proxy_for("http://localhost:8080/public/user", env) == Proxy(
        Origin("http", "plain.internal", 3)
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HTTPS_PROXY": "http://upper.internal:1", "https_proxy": "http://proxy.internal:3128"}, PROXY),
        ({"https_proxy": "http://proxy.internal:3128", "HTTPS_PROXY": "http://upper.internal:1"}, PROXY),
        ({"HTTPS_PROXY": "http://upper.internal:1", "https_proxy": ""}, None),  # empty unsets its twin
        ({"ALL_PROXY": "http://proxy.internal:3128", "HTTPS_PROXY": ""}, PROXY),
    ],
    ids=["lower-wins", "lower-wins-either-order", "empty-lower-unsets", "empty-falls-to-all"],
)
def test_lower_case_variables_win(env: dict[str, str], expected: Proxy | None) -> None:
    assert upstream.proxy_for(ENCORD, env) == expected


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        (ENCORD, "api.encord.com", True),
        (ENCORD, "encord.com", True),
        (ENCORD, ".encord.com", True),
        (ENCORD, "other.example, api.encord.com", True),
        (ENCORD, "*", True),
        (ENCORD, "other.example", False),
        (ENCORD, "encord.co", False),
        ("https://10.1.2.3:8443/public/user", "10.0.0.0/8", True),
        ("https://10.1.2.3:8443/public/user", "10.1.2.3", True),
        ("https://10.1.2.3:8443/public/user", "192.168.0.0/16", False),
        ("https://encord.internal:8443/public/user", "encord.internal:8443", True),
        ("https://encord.internal:8443/public/user", "encord.internal:9443", False),
    ],
)
def test_proxy_for_honours_no_proxy(url: str, no_proxy: str, bypassed: bool) -> None:
    expected = None if bypassed else PROXY
    for name in ("NO_PROXY", "no_proxy"):
        env = {"HTTPS_PROXY": "http://proxy.internal:3128", name: no_proxy}
        assert upstream.proxy_for(url, env) == expected, name


@pytest.mark.parametrize(
    "env",
    [
        {"HTTPS_PROXY": "http://p.internal:1", "https_proxy": "", "ALL_PROXY": "http://a.internal:2"},
        {"HTTP_PROXY": "http://p.internal:1", "NO_PROXY": "localhost", "no_proxy": ""},
        {"HTTPS_PROXY": "http://p.internal:1", "NO_PROXY": "*.encord.com"},
        {"ALL_PROXY": "http://a.internal:2", "no_proxy": "127.0.0.1/32"},
    ],
)
@pytest.mark.parametrize(
    "url", [ENCORD, "http://localhost:8080/public/user", "https://127.0.0.1:8443/public/user"]
)
def test_the_rules_are_requests_own(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str) -> None:
    # The SDK reads these variables through requests: the same environment must pick the same proxy.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proxies = requests.utils.get_environ_proxies(url)
    chosen = proxies.get(url.split(":", 1)[0]) or proxies.get("all")
    assert upstream.proxy_for(url, env) == (Proxy.of(chosen) if chosen else None)


def test_an_unusable_proxy_is_a_setup_error_that_does_not_quote_it() -> None:
    with pytest.raises(upstream.UpstreamSetupError, match="https proxy") as caught:
        upstream.proxy_for(ENCORD, {"HTTPS_PROXY": "http://user:s3cr/et@proxy.internal:3128"})
    assert "s3cr" not in str(caught.value)


def test_the_client_takes_its_proxy_from_proxy_env_only(tmp_path: Path) -> None:
    write_ssh_key(tmp_path / "key")
    key = load_signing_key(
        key_file=str(tmp_path / "key"), key_text=None, passphrase=None, source="--ssh-key-file"
    )
    plain = upstream.EncordClient("http://encord.internal", key)
    proxied = upstream.EncordClient(
        "http://encord.internal", key, proxy_env={"HTTP_PROXY": "http://proxy.internal:3128"}
    )
    try:
        assert plain._transport._proxy is None  # type: ignore[attr-defined]
        assert proxied._transport._proxy == PROXY  # type: ignore[attr-defined]
    finally:
        plain.close()
        proxied.close()


READS_THE_ENVIRONMENT = re.compile(r"os\.environ|getenv\(|get_environ_proxies\(|getproxies\w*\(")


def test_no_upstream_module_reads_the_environment() -> None:
    package = Path(upstream.__file__).parent
    for module in package.rglob("*.py"):
        source = module.read_text()
        assert not READS_THE_ENVIRONMENT.search(source), module.name
