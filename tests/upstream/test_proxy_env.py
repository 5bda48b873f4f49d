"""upstream.proxy_for: the proxy the environment's HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY name."""

from __future__ import annotations

import pytest
from encord_gateway.upstream import client as upstream
from encord_gateway.upstream.http1 import Origin, Proxy

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
ENCORD = "https://api.encord.com/public/user"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_proxy_for_without_any_variable(environ: pytest.MonkeyPatch) -> None:
    assert upstream.proxy_for(ENCORD) is None


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy"])
def test_proxy_for_honours_https_proxy(environ: pytest.MonkeyPatch, name: str) -> None:
    environ.setenv(name, "http://u:p@proxy.internal:3128")
    assert upstream.proxy_for(ENCORD) == Proxy(Origin("http", "proxy.internal", 3128), "Basic dTpw")


def test_proxy_for_prefers_the_scheme_over_all_proxy(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("ALL_PROXY", "http://all.internal:1")
    assert upstream.proxy_for(ENCORD) == Proxy(Origin("http", "all.internal", 1))
    environ.setenv("HTTPS_PROXY", "http://https.internal:2")
    assert upstream.proxy_for(ENCORD) == Proxy(Origin("http", "https.internal", 2))


def test_proxy_for_uses_http_proxy_only_for_http(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("HTTP_PROXY", "http://plain.internal:3")
    assert upstream.proxy_for(ENCORD) is None
    assert upstream.proxy_for("http://localhost:8080/public/user") == Proxy(
        Origin("http", "plain.internal", 3)
    )


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("api.encord.com", True),
        ("encord.com", True),
        (".encord.com", True),
        ("other.example, api.encord.com", True),
        ("*", True),
        ("other.example", False),
        ("encord.co", False),
    ],
)
def test_proxy_for_honours_no_proxy(environ: pytest.MonkeyPatch, no_proxy: str, bypassed: bool) -> None:
    environ.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    environ.setenv("NO_PROXY", no_proxy)
    expected = None if bypassed else Proxy(Origin("http", "proxy.internal", 3128))
    assert upstream.proxy_for(ENCORD) == expected
    environ.delenv("NO_PROXY")
    environ.setenv("no_proxy", no_proxy)
    assert upstream.proxy_for(ENCORD) == expected
