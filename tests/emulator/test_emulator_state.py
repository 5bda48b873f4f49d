"""State: keys survive a restart with --state; a fixture reload keeps keys; the bundled demo fixture loads."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import tomli_w
from encord.client import EncordClient, EncordClientProject
from encord.exceptions import AuthorisationError, SshKeyNotFound
from encord.orm.dataset import DatasetScope
from encord.utilities.client_utilities import APIKeyScopes
from encord_gateway.emulator.store import new_api_key
from support.emulator_users import DATASET, EMAILS, PROJECT, Spawn, fixture_document


def test_keys_survive_a_restart(spawn: Spawn, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    first = spawn("--state", str(state))
    client = first.user()
    project_key = client.create_project_api_key(PROJECT, "kept", [APIKeyScopes.LABEL_READ])
    master = client.get_or_create_project_api_key(PROJECT)
    dataset_key = client.create_dataset_api_key(DATASET, "kept too", [DatasetScope.READ, DatasetScope.WRITE])
    assert first.service.stop() == 0

    second = spawn("--state", str(state))
    client = second.user()
    assert [k.api_key for k in client.get_project_api_keys(PROJECT)] == [project_key, master]
    assert client.get_dataset_api_keys(DATASET) == [dataset_key]
    assert client.get_or_create_project_api_key(PROJECT) == master  # found, not minted again
    assert second.key_count(PROJECT) == 2
    project_client = EncordClient.initialise(PROJECT, project_key, domain=second.url)
    assert isinstance(project_client, EncordClientProject)
    assert project_client.get_project().project_hash == PROJECT


def test_state_file_is_plain_sqlite_with_whole_rows(spawn: Spawn, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    emulator = spawn("--state", str(state))
    emulator.user().create_project_api_key(PROJECT, "row", [APIKeyScopes.LABEL_READ])
    emulator.call("projectapikey", "POST", PROJECT, {"title": "", "scopes": ["label.read"]})  # refused
    assert emulator.service.stop() == 0
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT resource_hash, title, scopes, created_by FROM api_keys").fetchall()
        users = db.execute("SELECT email FROM users ORDER BY email").fetchall()
    assert rows == [(PROJECT, "row", '["label.read"]', EMAILS["admin"])]
    assert ("admin@example.com",) in users


def test_fixture_reload_keeps_keys(spawn: Spawn, ssh_keys: tuple[dict[str, Path], dict[str, str]]) -> None:
    emulator = spawn()
    key = emulator.user().create_project_api_key(PROJECT, "before", [APIKeyScopes.LABEL_READ])
    _, public = ssh_keys
    # The stranger's key joins as a new admin; the fixture's [faults] table applies too.
    document = fixture_document(public, faults={"latency_ms": 2})
    for resource in document["projects"] + document["datasets"]:
        if resource["admins"] == ["admin@example.com"]:
            resource["admins"].append("new@example.com")
    document["users"].insert(0, {"email": "new@example.com", "public_key": public["stranger"]})
    response = emulator.admin("PUT", "fixture", data=tomli_w.dumps(document))
    assert response.status_code == 200, response.text
    assert response.json() == {"users": 6, "projects": 2, "datasets": 2}
    assert [k.api_key for k in emulator.user("stranger").get_project_api_keys(PROJECT)] == [key]
    assert emulator.admin("GET", "faults").json()["latency_ms"] == 2
    broken = emulator.admin("PUT", "fixture", data="[[users]]\nemail = 3\n")
    assert broken.status_code == 400
    assert "email" in broken.json()["error"]
    assert emulator.user("stranger").get_project_api_keys(PROJECT)  # the refused reload changed nothing


def test_bundled_demo_fixture(spawn: Spawn) -> None:
    emulator = spawn(use_fixture=False)
    stats = emulator.stats()
    assert stats["keys"] == {PROJECT: 0, DATASET: 0}


def test_fixture_reload_applies_to_the_next_call(
    spawn: Spawn, ssh_keys: tuple[dict[str, Path], dict[str, str]]
) -> None:
    # Who signed and what they may do is looked up once and remembered: a reload must forget it.
    emulator = spawn()
    _, public = ssh_keys
    admin, stranger = emulator.user("admin"), emulator.user("stranger")
    assert admin.get_project_api_keys(PROJECT) == []
    with pytest.raises(SshKeyNotFound):
        stranger.get_project_api_keys(PROJECT)
    # The stranger's key becomes the project's admin; the old admin becomes a member.
    document = fixture_document(public)
    [project] = [p for p in document["projects"] if p["project_hash"] == PROJECT]
    project["admins"], project["members"] = ["new@example.com"], ["admin@example.com"]
    document["users"].insert(0, {"email": "new@example.com", "public_key": public["stranger"]})
    assert emulator.admin("PUT", "fixture", data=tomli_w.dumps(document)).status_code == 200
    assert stranger.get_project_api_keys(PROJECT) == []
    with pytest.raises(AuthorisationError):
        admin.get_project_api_keys(PROJECT)


def test_new_keys_have_encords_shape_and_use_the_whole_alphabet() -> None:
    keys = [new_api_key() for _ in range(2000)]
    assert all(re.fullmatch(r"0-[A-Za-z0-9_-]{41}", key) for key in keys)
    assert len(set(keys)) == len(keys)
    # 82,000 symbols: every one of the 64 shows up (a missing one has odds below 1e-400).
    assert len({symbol for key in keys for symbol in key[2:]}) == 64
