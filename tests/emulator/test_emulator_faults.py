"""Fault injection from the admin endpoint, the flags, the environment and the fixture; --mirror-status."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from encord.exceptions import (
    AuthenticationError,
    AuthorisationError,
    GenericServerError,
    ResourceExistsError,
    SshKeyNotFound,
    UnknownException,
)
from encord.orm.dataset import DatasetScope
from encord.utilities.client_utilities import APIKeyScopes
from support.emulator_users import DATASET, PROJECT, Emulator, Spawn, sdk_body

CREATE = sdk_body("projectapikey", "POST", PROJECT, {"title": "t", "scopes": ["label.read"]})
NO_FAULTS = {
    "latency_ms": 0,
    "error_rate": 0.0,
    "drop_rate": 0.0,
    "garbage_rate": 0.0,
    "force_error": None,
    "force_error_payload": None,
    "force_error_status": None,
    "match_query_type": None,
    "match_query_method": None,
}


def _create(emulator: Emulator) -> requests.Response:
    return emulator.post_user(CREATE, emulator.signed_headers(CREATE))


def test_force_error_matches_one_operation(emulator: Emulator) -> None:
    shown = emulator.set_faults(
        force_error="RESOURCE_EXISTS_ERROR",
        force_error_payload={"title": "t"},
        match_query_type="projectapikey",
        match_query_method="POST",
    )
    assert shown["force_error"] == "RESOURCE_EXISTS_ERROR"
    assert emulator.admin("GET", "faults").json() == shown
    before = emulator.key_count(PROJECT)
    client = emulator.user()
    with pytest.raises(ResourceExistsError, match="title"):
        client.create_project_api_key(PROJECT, "t", [APIKeyScopes.LABEL_READ])
    # Not matched: the list and dataset keys still work.
    assert len(client.get_project_api_keys(PROJECT)) == before
    client.create_dataset_api_key(DATASET, "unaffected", [DatasetScope.READ])
    stats = emulator.stats()
    assert stats["keys"][PROJECT] == before  # a forced error stores nothing
    assert stats["requests"]["by_query"]["projectapikey"]["POST"]["fault_forced:RESOURCE_EXISTS_ERROR"] >= 1


@pytest.mark.parametrize(
    ("code", "expected", "status"),
    [
        ("UNKNOWN_ERROR", UnknownException, 500),
        ("SOMETHING_NEW", GenericServerError, 400),
        ("AUTHENTICATION_ERROR", AuthenticationError, 401),
    ],
)
def test_force_error_codes(emulator: Emulator, code: str, expected: type[Exception], status: int) -> None:
    emulator.set_faults(force_error=code, force_error_payload="why")
    raw = _create(emulator)
    assert raw.status_code == 200
    assert raw.json() == {"status": status, "response": [code], "payload": "why"}
    with pytest.raises(expected):
        emulator.user().create_project_api_key(PROJECT, "t", [APIKeyScopes.LABEL_READ])


@pytest.mark.parametrize("http_status", [400, 429, 500])
def test_force_error_status_sets_the_status_line(emulator: Emulator, http_status: int) -> None:
    emulator.set_faults(force_error="RATE_LIMITED", force_error_status=http_status, match_query_method="POST")
    raw = _create(emulator)
    assert raw.status_code == http_status
    assert raw.json() == {"status": 400, "response": ["RATE_LIMITED"]}  # the JSON status stays the code's


def test_error_rate_one_gives_503(emulator: Emulator) -> None:
    emulator.set_faults(error_rate=1.0)
    before = emulator.key_count(PROJECT)
    response = _create(emulator)
    assert response.status_code == 503
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert emulator.key_count(PROJECT) == before
    assert emulator.stats()["requests"]["by_outcome"]["fault_503"] >= 1


def test_drop_rate_one_drops_the_connection(emulator: Emulator) -> None:
    emulator.set_faults(drop_rate=1.0)
    before = emulator.key_count(PROJECT)
    with pytest.raises(requests.ConnectionError):
        _create(emulator)
    assert emulator.key_count(PROJECT) == before
    assert emulator.stats()["requests"]["by_outcome"]["fault_drop"] >= 1


def test_garbage_rate_one_gives_a_non_json_body(emulator: Emulator) -> None:
    emulator.set_faults(garbage_rate=1.0)
    response = _create(emulator)
    assert response.status_code == 200
    assert response.text.startswith("<html>")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_latency(emulator: Emulator) -> None:
    emulator.set_faults(latency_ms=300, match_query_method="GET")
    body = sdk_body("projectapikey", "GET", PROJECT, None)
    start = time.monotonic()
    assert emulator.post_user(body, emulator.signed_headers(body)).json()["status"] == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    assert _create(emulator).json()["status"] == 200  # POST does not match
    assert time.monotonic() - start < 0.3


def test_faults_endpoint_replaces_merges_validates_and_resets(emulator: Emulator) -> None:
    assert emulator.admin("GET", "faults").json() == NO_FAULTS
    emulator.set_faults(error_rate=0.5, latency_ms=5)
    # PUT replaces: what it does not name goes back to off.
    assert emulator.set_faults(drop_rate=0.25) == {**NO_FAULTS, "drop_rate": 0.25}
    # PATCH merges.
    merged = emulator.admin("PATCH", "faults", json={"garbage_rate": 0.5}).json()
    assert merged == {**NO_FAULTS, "drop_rate": 0.25, "garbage_rate": 0.5}
    bad: list[Any] = [
        {"error_rate": 1.5},
        {"latency_ms": -1},
        {"latency_ms": "5"},
        {"drop_rate": True},
        {"force_error": "not a code"},
        {"match_query_method": "PATCH"},
        {"surprise": 1},
        [1],
    ]
    for settings in bad:
        response = emulator.admin("PUT", "faults", json=settings)
        assert response.status_code == 400, settings
        assert response.json()["error"]
    invalid_json = emulator.admin("PUT", "faults", data="{")
    assert invalid_json.status_code == 400
    assert emulator.admin("GET", "faults").json() == merged  # a refused PUT changes nothing
    assert emulator.admin("DELETE", "faults").json() == NO_FAULTS


def test_admin_endpoints_refuse_unknown_paths_and_methods(emulator: Emulator) -> None:
    assert emulator.admin("GET", "nope").status_code == 404
    assert emulator.admin("POST", "faults").status_code == 405
    assert emulator.admin("GET", "health").json() == {"status": "ok"}


def test_stats_count_requests_and_reset(emulator: Emulator) -> None:
    emulator.admin("DELETE", "stats")
    assert _create(emulator).json()["status"] == 200
    bad = emulator.post_user(CREATE, {"Authorization": "00:00"})
    assert bad.json()["response"] == ["AUTHENTICATION_ERROR"]
    requests_ = emulator.stats()["requests"]
    assert requests_["total"] == 2
    assert requests_["by_query"]["projectapikey"]["POST"] == {"ok": 1, "AUTHENTICATION_ERROR": 1}
    assert requests_["by_outcome"] == {"ok": 1, "AUTHENTICATION_ERROR": 1}


@pytest.mark.parametrize(
    ("how", "expect"),
    [
        ("flag", "503"),
        ("env", "drop"),
        ("fixture", "garbage"),
        ("flag beats fixture", "ok"),
        ("env beats fixture", "ok"),
    ],
)
def test_fault_settings_at_start(spawn: Spawn, how: str, expect: str) -> None:
    if how == "flag":
        emulator = spawn("--error-rate", "1.0")
    elif how == "env":
        emulator = spawn(env={"ENCORD_EMULATOR_DROP_RATE": "1"})
    elif how == "fixture":
        emulator = spawn(faults={"garbage_rate": 1.0, "latency_ms": 1})
    elif how == "flag beats fixture":
        emulator = spawn("--garbage-rate", "0", faults={"garbage_rate": 1.0})
    else:
        emulator = spawn(env={"ENCORD_EMULATOR_DROP_RATE": "0.0"}, faults={"drop_rate": 1.0})
    if expect == "drop":
        with pytest.raises(requests.ConnectionError):
            _create(emulator)
        return
    response = _create(emulator)
    if expect == "503":
        assert response.status_code == 503
        assert emulator.admin("GET", "faults").json()["error_rate"] == 1.0
    elif expect == "garbage":
        assert response.status_code == 200
        assert not response.text.startswith("{")
        assert emulator.admin("GET", "faults").json()["latency_ms"] == 1
    else:
        assert response.json()["status"] == 200


def test_mirror_status(spawn: Spawn) -> None:
    emulator = spawn("--mirror-status")
    bad = emulator.post_user(CREATE, {"Authorization": "00:00"})
    assert bad.status_code == 401
    assert bad.json() == {"status": 401, "response": ["AUTHENTICATION_ERROR"]}
    missing = emulator.call("projectapikey", "GET", "nope", None)
    assert missing.status_code == 404
    assert _create(emulator).status_code == 200
    # The SDK reads the JSON status either way, and does not retry a 4xx.
    with pytest.raises(SshKeyNotFound):
        emulator.user("stranger").get_project_api_keys(PROJECT)
    with pytest.raises(AuthorisationError):
        emulator.user("member").create_project_api_key(PROJECT, "t", [APIKeyScopes.LABEL_READ])


def test_latency_past_the_client_deadline_still_stores_the_key(spawn: Spawn) -> None:
    """The client gives up; like Encord, the emulator finishes the call: the key is stored and logged."""
    emulator = spawn("--latency-ms", "300")
    with pytest.raises(requests.Timeout):
        emulator.post_user(CREATE, emulator.signed_headers(CREATE), timeout=0.05)
    line = emulator.service.wait_for_line(lambda text: "query_type=projectapikey query_method=POST" in text)
    assert line is not None
    assert "outcome=ok" in line
    assert emulator.key_count(PROJECT) == 1
    assert emulator.stats()["requests"]["by_outcome"] == {"ok": 1}
