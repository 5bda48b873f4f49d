"""The transient set, pinned: which answers a list is asked again for, that a create never is, and the docs.

Each answer comes off a real loopback socket (support.loopback.Server) through EncordClient's own
pool, so the count of requests the server read is the count the gateway sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from encord_gateway import errors
from encord_gateway.context import Deadline
from encord_gateway.upstream.client import TRANSIENT_HTTP_STATUSES, EncordClient, RetryPolicy, UpstreamCall
from encord_gateway.upstream.signing import SigningKey
from support.loopback import Server
from upstream.http1.peers import Serve, replying

API_DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
# More attempts than any test needs, and no pause between them (RetryPolicy.backoff is uniform(0, 0)).
POLICY = RetryPolicy(attempts=4, initial_backoff_s=0.0, max_backoff_s=0.0)
LISTED = [{"api_key": "0-listed"}]
Start = Callable[..., tuple[Server, EncordClient]]
HTML = b"<html><body>502 Bad Gateway</body></html>"


def answer(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    """One whole HTTP/1.1 answer, kept alive, with the status line `status` and `body`."""
    return (
        f"HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def envelope(status: int, response: object) -> bytes:
    return json.dumps({"status": status, "response": response}).encode()


OK_LIST = answer(200, envelope(200, LISTED))
OK_CREATE = answer(200, envelope(200, "0-new-key"))
# A status in the set makes the answer transient whatever its body: even a success envelope is not
# an answer to the call (client._unwrap), so the status line alone must cause the retry.
PROXY_BODY = envelope(200, [{"api_key": "0-not-an-answer"}])
# Every answer that is not an answer to the call: the statuses in the set, and a body without the envelope.
TRANSIENT_ANSWERS = [
    *(pytest.param(answer(status, PROXY_BODY), id=str(status)) for status in sorted(TRANSIENT_HTTP_STATUSES)),
    pytest.param(answer(200, HTML, "text/html"), id="html-200"),
]


@pytest.fixture
def upstream(key: SigningKey, serve: Serve) -> Iterator[Start]:
    """upstream(*replies): a loopback Encord answering each request with the next reply, and a client."""
    clients: list[EncordClient] = []

    def start(*replies: bytes) -> tuple[Server, EncordClient]:
        server = serve(replying(*replies))
        encord = EncordClient(f"http://127.0.0.1:{server.port}", key, retry=POLICY)
        clients.append(encord)
        return server, encord

    yield start
    for encord in clients:
        encord.close()


def list_call() -> UpstreamCall:
    return UpstreamCall("projectapikey", "GET", "p", None, Deadline.after(10), "0" * 32, retryable=True)


def create_call() -> UpstreamCall:
    return UpstreamCall("projectapikey", "POST", "p", {"title": "t"}, Deadline.after(10), "0" * 32)


@pytest.mark.parametrize("first", TRANSIENT_ANSWERS)
def test_a_list_is_asked_again_after_a_transient_answer(upstream: Start, first: bytes) -> None:
    server, encord = upstream(first, OK_LIST)
    call = list_call()
    assert encord.call(call) == LISTED
    assert len(server.requests) == 2
    assert (call.outcome.attempts, call.outcome.retries, call.outcome.http_status) == (2, 1, 200)


# HTTP statuses outside the set, each with the Encord error envelope the emulator pairs it with
# (emulator/errors.py STATUS_BY_CODE): Encord's own answer to the call, final, never asked again.
FINAL = [
    pytest.param(400, "INVALID_ARGUMENTS_ERROR", errors.EncordInvalidArguments, id="400"),
    pytest.param(403, "AUTHORISATION_ERROR", errors.EncordPermissionDenied, id="403"),
    pytest.param(404, "RESOURCE_NOT_FOUND_ERROR", errors.EncordNotFound, id="404"),
    pytest.param(500, "UNKNOWN_ERROR", errors.EncordUnknownError, id="500"),
]


@pytest.mark.parametrize(("status", "code", "error"), FINAL)
def test_a_list_is_not_asked_again_after_encords_own_error(
    upstream: Start, status: int, code: str, error: type[errors.EncordError]
) -> None:
    assert status not in TRANSIENT_HTTP_STATUSES
    server, encord = upstream(answer(status, envelope(status, [code])), OK_LIST)
    call = list_call()
    with pytest.raises(error) as caught:
        encord.call(call)
    assert type(caught.value) is error
    assert caught.value.reason == code
    assert len(server.requests) == 1
    assert (call.outcome.attempts, call.outcome.retries, call.outcome.http_status) == (1, 0, status)


def test_a_500_without_the_envelope_is_asked_again_for_its_body_not_its_status(upstream: Start) -> None:
    # 500 is out of the set, but an answer that is not Encord's envelope is transient whatever its status.
    server, encord = upstream(answer(500, HTML, "text/html"), OK_LIST)
    assert encord.call(list_call()) == LISTED
    assert len(server.requests) == 2


def transient_error(first: bytes) -> type[errors.UpstreamError]:
    """The class a transient answer becomes (client._unwrap): 429 rate limited, 5xx HTTP, else unreadable."""
    status = int(first.split(b" ", 2)[1])
    if status == 429:
        return errors.UpstreamRateLimited
    if status in TRANSIENT_HTTP_STATUSES:
        return errors.UpstreamHttpError
    return errors.UpstreamBadResponse


@pytest.mark.parametrize("first", TRANSIENT_ANSWERS)
def test_a_create_is_sent_once_whatever_transient_answer_it_gets(upstream: Start, first: bytes) -> None:
    # The next answer would succeed: a create sent again would mint a second key, and pass.
    server, encord = upstream(first, OK_CREATE)
    call = create_call()
    with pytest.raises(transient_error(first)) as caught:
        encord.call(call)
    assert type(caught.value) is transient_error(first)
    assert len(server.requests) == 1
    assert (call.outcome.attempts, call.outcome.retries) == (1, 0)


# The sentence of docs/api.md#retries that names the statuses a list is asked again for.
RETRY_SENTENCE = re.compile(r"Lists are retried on transient failures:[^.]*\.")


def test_the_docs_name_the_transient_statuses() -> None:
    text = " ".join(API_DOCS.read_text().split())  # the sentence wraps across lines
    found = RETRY_SENTENCE.search(text)
    if found is None:
        pytest.fail(
            f"{API_DOCS} has no sentence matching {RETRY_SENTENCE.pattern!r}: the retry sentence was "
            "reworded or removed; update it and this test together, so that the docs name "
            f"TRANSIENT_HTTP_STATUSES ({sorted(TRANSIENT_HTTP_STATUSES)})"
        )
    named = {int(number) for number in re.findall(r"\b[1-5]\d\d\b", found.group(0))}
    assert named == TRANSIENT_HTTP_STATUSES, (
        f"docs/api.md's retry sentence names HTTP {sorted(named)}, "
        f"client.TRANSIENT_HTTP_STATUSES is {sorted(TRANSIENT_HTTP_STATUSES)}: {found.group(0)!r}"
    )
