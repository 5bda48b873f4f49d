"""EncordClient: lists retried on any transient failure, creates only when nothing was sent; setup.

The transport is a fake handed to EncordClient(transport=...), because which attempt fails, and how,
must be exact: a real listener cannot refuse the first two connections and accept the third on cue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

import pytest
from encord_gateway import config, errors
from encord_gateway.context import Deadline
from encord_gateway.upstream import http1
from encord_gateway.upstream.client import (
    EncordClient,
    RetryPolicy,
    Transport,
    UpstreamCall,
    UpstreamSetupError,
    encode_body,
)
from encord_gateway.upstream.signing import SigningKey

OK = http1.Response(200, {}, json.dumps({"status": 200, "response": "0-new-key"}).encode())

Headers = Sequence[tuple[str, str]]
Handler = Callable[[Headers, bytes, float], http1.Response]


class FakeTransport:
    """A Transport that hands each post to a plain function, and keeps what was posted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.posts: list[tuple[Headers, bytes, float]] = []
        self.closed = False

    def post(self, headers: Headers, body: bytes, deadline: float) -> http1.Response:
        self.posts.append((headers, body, deadline))
        return self.handler(headers, body, deadline)

    def close(self) -> None:
        self.closed = True


def scripted(*script: http1.Response | Exception) -> Handler:
    """A handler answering each post with the next item: an exception to raise or a Response."""
    items = list(script)

    def handle(headers: Headers, body: bytes, deadline: float) -> http1.Response:
        item = items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handle


MakeClient = Callable[..., EncordClient]


@pytest.fixture
def client(key: SigningKey) -> Iterator[MakeClient]:
    made: list[EncordClient] = []

    def make(transport: Transport, **kwargs: object) -> EncordClient:
        options: dict[str, object] = {"retry": RetryPolicy(attempts=4), "sleep": lambda _: None, **kwargs}
        encord = EncordClient("http://127.0.0.1:9", key, transport=transport, **options)  # type: ignore[arg-type]
        made.append(encord)
        return encord

    yield make
    for encord in made:
        encord.close()


def create() -> UpstreamCall:
    return UpstreamCall("projectapikey", "POST", "p", {"title": "t"}, Deadline.after(10), "0" * 32)


def test_a_create_is_tried_again_while_no_connection_opens(client: MakeClient) -> None:
    refused = http1.ConnectFailed("refused")
    transport = FakeTransport(scripted(refused, refused, OK))
    call = create()
    assert client(transport).call(call) == "0-new-key"
    assert (len(transport.posts), call.outcome.attempts, call.outcome.retries) == (3, 3, 2)


def test_a_create_is_never_sent_twice(client: MakeClient) -> None:
    # Refused first (nothing sent), then lost after sending: the outcome is unknown, so no third try.
    transport = FakeTransport(scripted(http1.ConnectFailed("refused"), http1.ConnectionLost("reset"), OK))
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client(transport).call(create())
    assert caught.value.reason == "UPSTREAM_CONNECTION_ERROR"
    assert len(transport.posts) == 2


def test_an_unreachable_upstream_is_given_up_after_the_attempts(client: MakeClient) -> None:
    transport = FakeTransport(scripted(*[http1.ConnectFailed("refused")] * 5))
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client(transport).call(create())
    assert caught.value.reason == "UPSTREAM_UNREACHABLE"
    assert len(transport.posts) == 4


def test_an_attempt_reports_its_own_http_status(client: MakeClient) -> None:
    # A 503, then no connection at all: the outcome says the last attempt got no answer.
    unavailable = http1.Response(503, {}, b"busy")
    transport = FakeTransport(scripted(unavailable, *[http1.ConnectFailed("refused")] * 3))
    call = UpstreamCall("projectapikey", "GET", "p", None, Deadline.after(10), "0" * 32, retryable=True)
    with pytest.raises(errors.UpstreamUnavailable):
        client(transport).call(call)
    assert call.outcome.attempts == 4
    assert call.outcome.http_status == 0


def test_a_connect_timeout_is_unreachable_and_a_create_is_tried_again(client: MakeClient) -> None:
    # A firewall that drops the connection attempt: nothing was sent, as with a refusal.
    transport = FakeTransport(scripted(http1.ConnectTimeout("connecting timed out"), OK))
    assert client(transport).call(create()) == "0-new-key"
    assert len(transport.posts) == 2


def test_an_unexpected_failure_is_not_counted_as_ok(client: MakeClient) -> None:
    outcomes: list[str] = []

    def broken(headers: Headers, body: bytes, deadline: float) -> http1.Response:
        raise RuntimeError("a bug")

    encord = client(FakeTransport(broken), on_attempt=lambda call, s, outcome: outcomes.append(outcome))
    with pytest.raises(RuntimeError):
        encord.call(create())
    assert outcomes == ["INTERNAL"]


def test_the_transport_gets_the_sdks_body_the_calls_deadline_and_is_closed(client: MakeClient) -> None:
    transport = FakeTransport(lambda headers, body, deadline: OK)
    encord = client(transport)
    call = create()
    encord.call(call)
    encord.close()
    ((headers, body, deadline),) = transport.posts
    assert body == encode_body("projectapikey", "POST", "p", {"title": "t"})
    assert ("Content-Length", str(len(body))) in list(headers)
    assert deadline == call.deadline.at
    assert transport.closed


def test_an_unusable_domain_is_a_setup_error(key: SigningKey) -> None:
    with pytest.raises(UpstreamSetupError, match="unusable"):
        EncordClient("https://" + "ü" * 70 + ".example", key)  # a label IDNA cannot encode


def test_the_pool_defaults_are_configs_one_default(key: SigningKey) -> None:
    # One default per setting: the flag's, the Settings field's and the client's are the same value.
    options = {option.name: option.default for option in config.OPTIONS}
    settings = config.Settings()
    encord = EncordClient("http://127.0.0.1:9", key)
    try:
        pool = encord._transport
        assert isinstance(pool, http1.Http1Client)
        assert pool._max_idle == settings.upstream_pool_size == options["upstream_pool_size"]
        assert pool._connect_timeout_s == settings.upstream_connect_timeout
        assert settings.upstream_connect_timeout == options["upstream_connect_timeout"]
    finally:
        encord.close()
