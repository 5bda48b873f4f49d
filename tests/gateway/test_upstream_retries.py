"""EncordClient: lists retried on any transient failure, creates only when nothing was sent; setup.

The transport is scripted here, because which attempt fails, and how, must be exact: a real
listener cannot refuse the first two connections and accept the third on cue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from encord_gateway import errors
from encord_gateway.context import Deadline
from encord_gateway.dev.devstack import write_ssh_key
from encord_gateway.upstream import http1
from encord_gateway.upstream.client import EncordClient, RetryPolicy, UpstreamCall, UpstreamSetupError
from encord_gateway.upstream.signing import load_signing_key

OK = http1.Response(200, {}, json.dumps({"status": 200, "response": "0-new-key"}).encode())


class ScriptedTransport:
    """Answers each post with the next item: an exception to raise or a Response to return."""

    def __init__(self, *script: http1.Response | Exception) -> None:
        self.script = list(script)
        self.posts = 0

    def post(self, headers: object, body: bytes, deadline: float) -> http1.Response:
        self.posts += 1
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        pass


@pytest.fixture
def client(tmp_path: Path) -> Iterator[EncordClient]:
    write_ssh_key(tmp_path / "key")
    key = load_signing_key(key_file=str(tmp_path / "key"), key_text=None, passphrase=None, source="the test")
    encord = EncordClient("http://127.0.0.1:9", key, retry=RetryPolicy(attempts=4), sleep=lambda _: None)
    yield encord
    encord.close()


def create() -> UpstreamCall:
    return UpstreamCall("projectapikey", "POST", "p", {"title": "t"}, Deadline.after(10), "0" * 32)


def test_a_create_is_tried_again_while_no_connection_opens(client: EncordClient) -> None:
    refused = http1.ConnectFailed("refused")
    transport = ScriptedTransport(refused, refused, OK)
    client._transport = transport  # type: ignore[assignment]
    call = create()
    assert client.call(call) == "0-new-key"
    assert (transport.posts, call.outcome.attempts, call.outcome.retries) == (3, 3, 2)


def test_a_create_is_never_sent_twice(client: EncordClient) -> None:
    # Refused first (nothing sent), then lost after sending: the outcome is unknown, so no third try.
    transport = ScriptedTransport(http1.ConnectFailed("refused"), http1.ConnectionLost("reset"), OK)
    client._transport = transport  # type: ignore[assignment]
    call = create()
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client.call(call)
    assert caught.value.reason == "UPSTREAM_CONNECTION_ERROR"
    assert transport.posts == 2


def test_an_unreachable_upstream_is_given_up_after_the_attempts(client: EncordClient) -> None:
    transport = ScriptedTransport(*[http1.ConnectFailed("refused")] * 5)
    client._transport = transport  # type: ignore[assignment]
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client.call(create())
    assert caught.value.reason == "UPSTREAM_UNREACHABLE"
    assert transport.posts == 4


def test_an_attempt_reports_its_own_http_status(client: EncordClient) -> None:
    # A 503, then no connection at all: the outcome says the last attempt got no answer.
    unavailable = http1.Response(503, {}, b"busy")
    transport = ScriptedTransport(unavailable, *[http1.ConnectFailed("refused")] * 3)
    client._transport = transport  # type: ignore[assignment]
    call = UpstreamCall("projectapikey", "GET", "p", None, Deadline.after(10), "0" * 32, retryable=True)
    with pytest.raises(errors.UpstreamUnavailable):
        client.call(call)
    assert call.outcome.attempts == 4
    assert call.outcome.http_status == 0


def test_a_connect_timeout_is_unreachable_and_a_create_is_tried_again(client: EncordClient) -> None:
    # A firewall that drops the connection attempt: nothing was sent, as with a refusal.
    transport = ScriptedTransport(http1.ConnectTimeout("connecting timed out"), OK)
    client._transport = transport  # type: ignore[assignment]
    assert client.call(create()) == "0-new-key"
    assert transport.posts == 2


def test_an_unexpected_failure_is_not_counted_as_ok(tmp_path: Path) -> None:
    write_ssh_key(tmp_path / "key")
    key = load_signing_key(key_file=str(tmp_path / "key"), key_text=None, passphrase=None, source="the test")
    outcomes: list[str] = []
    encord = EncordClient(
        "http://127.0.0.1:9", key, on_attempt=lambda call, s, outcome: outcomes.append(outcome)
    )
    encord._transport = ScriptedTransport(RuntimeError("a bug"))  # type: ignore[assignment]
    with pytest.raises(RuntimeError):
        encord.call(create())
    assert outcomes == ["INTERNAL"]


def test_an_unusable_domain_is_a_setup_error(tmp_path: Path) -> None:
    write_ssh_key(tmp_path / "key")
    key = load_signing_key(key_file=str(tmp_path / "key"), key_text=None, passphrase=None, source="the test")
    with pytest.raises(UpstreamSetupError, match="unusable"):
        EncordClient("https://" + "ü" * 70 + ".example", key)  # a label IDNA cannot encode
