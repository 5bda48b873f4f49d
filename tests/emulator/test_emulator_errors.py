"""Bad inputs and bad signatures: each answers the Encord error the SDK turns into its own exception."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
import requests
from encord.exceptions import (
    AuthenticationError,
    AuthorisationError,
    DuplicateSshKeyError,
    InvalidArgumentsError,
    MethodNotAllowedError,
    OperationNotAllowed,
    ResourceNotFoundError,
    SshKeyNotFound,
)
from encord.orm.dataset import DatasetScope
from encord.user_client import EncordUserClient
from encord.utilities.client_utilities import APIKeyScopes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.emulator_users import (
    DATASET,
    OTHER_DATASET,
    OTHER_PROJECT,
    PROJECT,
    UNKNOWN_HASH,
    Emulator,
    sdk_body,
    sdk_exception,
)

READ_WRITE = [APIKeyScopes.LABEL_READ, APIKeyScopes.LABEL_WRITE]
SdkCall = Callable[[EncordUserClient], Any]

# (case, who signs, the SDK call, the exception the SDK raises)
SDK_CASES: list[tuple[str, str, SdkCall, type[Exception]]] = [
    ("key no user holds", "stranger", lambda c: c.get_project_api_keys(PROJECT), SshKeyNotFound),
    ("key two users hold", "twin", lambda c: c.get_project_api_keys(PROJECT), DuplicateSshKeyError),
    (
        "member creates a project key",
        "member",
        lambda c: c.create_project_api_key(PROJECT, "t", READ_WRITE),
        AuthorisationError,
    ),
    ("member lists project keys", "member", lambda c: c.get_project_api_keys(PROJECT), AuthorisationError),
    (
        "member gets the master key",
        "member",
        lambda c: c.get_or_create_project_api_key(PROJECT),
        AuthorisationError,
    ),
    (
        "member creates a dataset key",
        "member",
        lambda c: c.create_dataset_api_key(DATASET, "t", [DatasetScope.READ]),
        AuthorisationError,
    ),
    (
        "outsider lists dataset keys",
        "outsider",
        lambda c: c.get_dataset_api_keys(DATASET),
        AuthorisationError,
    ),
    (
        "admin of another project",
        "admin",
        lambda c: c.get_project_api_keys(OTHER_PROJECT),
        AuthorisationError,
    ),
    (
        "admin of another dataset",
        "admin",
        lambda c: c.get_dataset_api_keys(OTHER_DATASET),
        AuthorisationError,
    ),
    (
        "unknown project",
        "admin",
        lambda c: c.create_project_api_key(UNKNOWN_HASH, "t", READ_WRITE),
        ResourceNotFoundError,
    ),
    ("unknown dataset", "admin", lambda c: c.get_dataset_api_keys(UNKNOWN_HASH), ResourceNotFoundError),
    ("dataset hash as a project", "admin", lambda c: c.get_project_api_keys(DATASET), ResourceNotFoundError),
    (
        "empty title",
        "admin",
        lambda c: c.create_project_api_key(PROJECT, "", READ_WRITE),
        InvalidArgumentsError,
    ),
    (
        "blank title",
        "admin",
        lambda c: c.create_dataset_api_key(DATASET, "   ", [DatasetScope.READ]),
        InvalidArgumentsError,
    ),
    (
        "over-long title",
        "admin",
        lambda c: c.create_project_api_key(PROJECT, "x" * 256, READ_WRITE),
        InvalidArgumentsError,
    ),
    ("no scopes", "admin", lambda c: c.create_project_api_key(PROJECT, "t", []), InvalidArgumentsError),
    (
        "dataset scope on a project key",
        "admin",
        lambda c: c.create_project_api_key(PROJECT, "t", [DatasetScope.READ]),
        InvalidArgumentsError,
    ),
    (
        "project scope on a dataset key",
        "admin",
        lambda c: c.create_dataset_api_key(DATASET, "t", [APIKeyScopes.LABEL_READ]),
        InvalidArgumentsError,
    ),
]


@pytest.mark.parametrize(
    ("who", "call", "expected"), [c[1:] for c in SDK_CASES], ids=[c[0] for c in SDK_CASES]
)
def test_sdk_error(emulator: Emulator, who: str, call: SdkCall, expected: type[Exception]) -> None:
    before = emulator.stats()["keys"]
    with pytest.raises(expected):
        call(emulator.user(who))
    assert emulator.stats()["keys"] == before  # a refused call stores nothing


def _tamper_signature(headers: dict[str, str]) -> dict[str, str]:
    public, _, signature = headers["Authorization"].partition(":")
    flipped = format(int(signature[0], 16) ^ 1, "x") + signature[1:]
    return {**headers, "Authorization": f"{public}:{flipped}"}


VALID_PROJECT_BODY = sdk_body("projectapikey", "POST", PROJECT, {"title": "t", "scopes": ["label.read"]})


def _signed(body: str) -> Callable[[Emulator], requests.Response]:
    return lambda emu: emu.post_user(body, emu.signed_headers(body))


def _with_headers(
    change: Callable[[dict[str, str]], dict[str, str]],
) -> Callable[[Emulator], requests.Response]:
    return lambda emu: emu.post_user(VALID_PROJECT_BODY, change(emu.signed_headers(VALID_PROJECT_BODY)))


def _other_body_signature(emu: Emulator) -> requests.Response:
    other = sdk_body("projectapikey", "GET", PROJECT, None)
    return emu.post_user(VALID_PROJECT_BODY, emu.signed_headers(other))


# (case, the raw request, HTTP JSON status, code, the SDK exception, a text the payload must hold)
RAW_CASES: list[
    tuple[str, Callable[[Emulator], requests.Response], int, str, type[Exception], str | None]
] = [
    (
        "tampered signature",
        _with_headers(_tamper_signature),
        401,
        "AUTHENTICATION_ERROR",
        AuthenticationError,
        None,
    ),
    (
        "signature of another body",
        _other_body_signature,
        401,
        "AUTHENTICATION_ERROR",
        AuthenticationError,
        None,
    ),
    (
        "no Authorization",
        _with_headers(lambda h: {k: v for k, v in h.items() if k != "Authorization"}),
        401,
        "AUTHENTICATION_ERROR",
        AuthenticationError,
        None,
    ),
    (
        "Authorization not hex",
        _with_headers(lambda h: {**h, "Authorization": "zz:yy"}),
        401,
        "AUTHENTICATION_ERROR",
        AuthenticationError,
        None,
    ),
    (
        "Authorization without signature",
        _with_headers(lambda h: {**h, "Authorization": h["Authorization"].split(":")[0]}),
        401,
        "AUTHENTICATION_ERROR",
        AuthenticationError,
        None,
    ),
    (
        "malformed JSON",
        _signed('{"query_type": "projectapikey", '),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "not valid JSON",
    ),
    ("empty body", _signed(""), 400, "INVALID_ARGUMENTS_ERROR", InvalidArgumentsError, "not valid JSON"),
    (
        "JSON array body",
        _signed("[1, 2]"),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "JSON object",
    ),
    (
        "unknown query_type",
        _signed(sdk_body("projectapikeyz", "POST", PROJECT, {})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "Unknown query_type",
    ),
    (
        "unsupported query_method",
        _signed(sdk_body("projectapikey", "DELETE", PROJECT, None)),
        405,
        "METHOD_NOT_ALLOWED_ERROR",
        MethodNotAllowedError,
        None,
    ),
    (
        "missing values",
        _signed(json.dumps({"query_type": "projectapikey", "query_method": "GET"})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "`values`",
    ),
    (
        "query_type not a string",
        _signed(json.dumps({"query_type": 7, "query_method": "GET", "values": {"uid": PROJECT}})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "`query_type`",
    ),
    (
        "uid not a string",
        _signed(sdk_body("projectapikey", "POST", 42, {"title": "t", "scopes": ["label.read"]})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "values.uid",
    ),
    (
        "missing title",
        _signed(sdk_body("projectapikey", "POST", PROJECT, {"scopes": ["label.read"]})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "payload.title",
    ),
    (
        "title not a string",
        _signed(sdk_body("projectapikey", "POST", PROJECT, {"title": 5, "scopes": ["label.read"]})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "payload.title",
    ),
    (
        "unknown scope",
        _signed(sdk_body("projectapikey", "POST", PROJECT, {"title": "t", "scopes": ["label.delete"]})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "label.delete",
    ),
    (
        "scopes not a list",
        _signed(sdk_body("projectapikey", "POST", PROJECT, {"title": "t", "scopes": 3})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "payload.scopes",
    ),
    (
        "scopes string not JSON",
        _signed(sdk_body("projectapikey", "POST", PROJECT, {"title": "t", "scopes": "label.read"})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "JSON-encoded",
    ),
    (
        "dataset payload null",
        _signed(sdk_body("datasetapikey", "POST", None, None)),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "values.payload",
    ),
    (
        "dataset_hash missing",
        _signed(sdk_body("datasetapikey", "GET", None, {})),
        400,
        "INVALID_ARGUMENTS_ERROR",
        InvalidArgumentsError,
        "payload.dataset_hash",
    ),
]


@pytest.mark.parametrize(
    ("send", "status", "code", "expected", "message"),
    [c[1:] for c in RAW_CASES],
    ids=[c[0] for c in RAW_CASES],
)
def test_raw_error(
    emulator: Emulator,
    send: Callable[[Emulator], requests.Response],
    status: int,
    code: str,
    expected: type[Exception],
    message: str | None,
) -> None:
    before = emulator.stats()["keys"]
    response = send(emulator)
    # Encord's way: HTTP 200, the status in the JSON, the code as a one-element list.
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    envelope = response.json()
    assert envelope["status"] == status
    assert envelope["response"] == [code]
    if message is not None:
        assert message in envelope["payload"]
    assert isinstance(sdk_exception(response), expected)
    assert emulator.stats()["keys"] == before


def test_key_api_errors(emulator: Emulator) -> None:
    dataset_key = emulator.user().create_dataset_api_key(DATASET, "reader", [DatasetScope.READ]).api_key

    def read(query_type: str, key: str, resource: str) -> requests.Response:
        body = sdk_body(query_type, "GET", None, None)
        headers = {"Authorization": key, "ResourceID": resource, "Content-Type": "application/json"}
        return requests.post(f"{emulator.url}/public", data=body, headers=headers, timeout=10)

    assert read("dataset", dataset_key, DATASET).json()["response"]["dataset_hash"] == DATASET
    cases = [
        (read("project", dataset_key, DATASET), OperationNotAllowed),  # a dataset key reads no project
        (read("apikeymeta", dataset_key, PROJECT), AuthorisationError),  # another resource
        (read("apikeymeta", "0-nope", DATASET), AuthenticationError),
        (read("apikeymeta", "", DATASET), AuthenticationError),
        (read("labelrow", dataset_key, DATASET), InvalidArgumentsError),
    ]
    for response, expected in cases:
        assert response.status_code == 200
        assert isinstance(sdk_exception(response), expected), response.json()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/public/user", 405, "METHOD_NOT_ALLOWED_ERROR"),
        ("PUT", "/public", 405, "METHOD_NOT_ALLOWED_ERROR"),
        ("POST", "/v2/public/projects", 404, "RESOURCE_NOT_FOUND_ERROR"),
        ("GET", "/", 404, "RESOURCE_NOT_FOUND_ERROR"),
    ],
)
def test_other_paths_answer_an_envelope(
    emulator: Emulator, method: str, path: str, status: int, code: str
) -> None:
    response = requests.request(method, emulator.url + path, data="{}", timeout=10)
    assert response.status_code == status
    assert response.json()["response"] == [code]


def test_oversized_body_is_refused_and_the_server_lives_on(emulator: Emulator) -> None:
    response = emulator.post_user(b"{" + b" " * (2 << 20) + b"}", {"Content-Type": "application/json"})
    assert response.json()["response"] == ["INVALID_ARGUMENTS_ERROR"]
    assert response.headers["Connection"] == "close"
    assert emulator.admin("GET", "health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b'POST /public/user HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"half',  # then the client goes
        b"POST /public/user HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /public/user HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS hello to a plain-HTTP port
    ],
    ids=["not-http", "client-leaves-mid-body", "negative-length", "bad-chunk", "tls-hello"],
)
def test_broken_http_never_takes_the_server_down(emulator: Emulator, raw: bytes) -> None:
    host, port = emulator.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == b"" or answer.startswith(b"HTTP/1.")
    assert emulator.admin("GET", "health").json() == {"status": "ok"}
    assert emulator.call("projectapikey", "GET", PROJECT, None).json()["status"] == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query_type=st.sampled_from(["projectapikey", "datasetapikey", "apikeymeta", "x"]),
    query_method=st.sampled_from(["GET", "POST", "PUT", "?"]),
    uid=json_values,
    payload=json_values,
)
def test_any_signed_body_gets_an_envelope(
    emulator: Emulator, query_type: str, query_method: str, uid: Any, payload: Any
) -> None:
    """Fuzzing: whatever a signed caller sends, the answer is Encord's envelope and never a crash."""
    response = emulator.call(query_type, query_method, uid, payload)
    assert response.status_code == 200
    envelope = response.json()
    assert envelope["status"] in (200, 400, 403, 404, 405)
    if envelope["status"] != 200:
        assert envelope["response"] in (
            ["INVALID_ARGUMENTS_ERROR"],
            ["METHOD_NOT_ALLOWED_ERROR"],
            ["RESOURCE_NOT_FOUND_ERROR"],
            ["AUTHORISATION_ERROR"],
        )
