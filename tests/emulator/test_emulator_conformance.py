"""Every example of the seed document, run through the real Encord SDK (0.1.145) against the emulator."""

from __future__ import annotations

import re

import pytest
from encord.client import EncordClient, EncordClientDataset, EncordClientProject
from encord.exceptions import AuthenticationError, AuthorisationError, OperationNotAllowed
from encord.orm.dataset import DatasetAPIKey, DatasetScope
from encord.orm.project_api_key import ProjectAPIKey
from encord.utilities.client_utilities import APIKeyScopes
from support.emulator_users import DATASET, PROJECT, Emulator, Spawn

# The shape of the seed's "0-1aABCDE_aFGcdeHIfJ2KfLMgNO3PQh4RST5UV6W_X".
ENCORD_KEY = re.compile(r"^0-[A-Za-z0-9_-]{41}$")


def test_seed_examples_through_the_sdk(spawn: Spawn) -> None:
    emulator = spawn()
    user_client = emulator.user()

    # Creating a Project API key
    api_key = user_client.create_project_api_key(
        PROJECT, "Example API key title", [APIKeyScopes.LABEL_READ, APIKeyScopes.LABEL_WRITE]
    )
    assert isinstance(api_key, str)
    assert ENCORD_KEY.match(api_key)

    # Creating a Dataset API key
    dataset_api_key = user_client.create_dataset_api_key(
        DATASET, "Full Access API Key", [DatasetScope.READ, DatasetScope.WRITE]
    )
    assert isinstance(dataset_api_key, DatasetAPIKey)
    assert dataset_api_key.dataset_hash == DATASET
    assert dataset_api_key.title == "Full Access API Key"
    assert dataset_api_key.scopes == [DatasetScope.READ, DatasetScope.WRITE]
    assert ENCORD_KEY.match(dataset_api_key.api_key)
    assert dataset_api_key.key_hash

    # Creating a master API key with full rights: the second call finds the first key.
    master = user_client.get_or_create_project_api_key(PROJECT)
    assert ENCORD_KEY.match(master)
    assert master != api_key
    assert user_client.get_or_create_project_api_key(PROJECT) == master
    dataset_master = user_client.get_or_create_dataset_api_key(DATASET)
    assert dataset_master == dataset_api_key  # it already has READ and WRITE

    # Fetching Dataset API keys
    dataset_keys = user_client.get_dataset_api_keys(DATASET)
    assert dataset_keys == [dataset_api_key]

    # Fetching Project API keys: creation order, titles and scopes as created.
    project_keys = user_client.get_project_api_keys(PROJECT)
    assert all(isinstance(k, ProjectAPIKey) for k in project_keys)
    assert [k.api_key for k in project_keys] == [api_key, master]
    assert project_keys[0].title == "Example API key title"
    assert project_keys[0].scopes == [APIKeyScopes.LABEL_READ, APIKeyScopes.LABEL_WRITE]
    assert project_keys[1].title == f"{PROJECT} - admin key"
    assert set(project_keys[1].scopes) == set(APIKeyScopes)

    # The new keys work with the same SDK, and an unknown key does not.
    project_client = EncordClient.initialise(PROJECT, api_key, domain=emulator.url)
    assert isinstance(project_client, EncordClientProject)
    project = project_client.get_project()
    assert project.project_hash == PROJECT
    assert project.title == "Title of 6ac8a6a4"
    dataset_client = EncordClient.initialise(DATASET, dataset_api_key.api_key, domain=emulator.url)
    assert isinstance(dataset_client, EncordClientDataset)
    dataset = dataset_client.get_dataset()
    assert dataset.dataset_hash == DATASET
    assert dataset.data_rows == []
    with pytest.raises(AuthenticationError):
        EncordClient.initialise(PROJECT, "0-" + "x" * 41, domain=emulator.url)

    # Every key is unique, and the stats count exactly the keys the SDK saw.
    created = {api_key, master, dataset_api_key.api_key}
    assert len(created) == 3
    assert emulator.key_count(PROJECT) == 2
    assert emulator.key_count(DATASET) == 1

    # Nothing secret in the log: no key, no signature, no public key hex.
    emulator.service.stop()
    log = emulator.log
    assert "listening on" in log
    assert "query_type=projectapikey query_method=POST outcome=ok" in log
    assert "query_type=apikeymeta query_method=GET outcome=ok" in log
    for secret in created:
        assert secret not in log
    public_hex = emulator.ssh_config().public_key_hex
    assert public_hex not in log
    assert "Authorization" not in log


def test_key_used_on_another_resource_is_refused(emulator: Emulator) -> None:
    key = emulator.user().create_project_api_key(PROJECT, "misused", [APIKeyScopes.LABEL_READ])
    with pytest.raises(AuthorisationError):
        EncordClient.initialise(DATASET, key, domain=emulator.url)


def test_key_without_read_scope_cannot_read(emulator: Emulator) -> None:
    key = emulator.user().create_project_api_key(PROJECT, "trainer", [APIKeyScopes.MODEL_TRAIN])
    client = EncordClient.initialise(PROJECT, key, domain=emulator.url)
    assert isinstance(client, EncordClientProject)
    with pytest.raises(OperationNotAllowed):
        client.get_project()


def test_scopes_json_string_both_ways(spawn: Spawn) -> None:
    emulator = spawn("--scopes-as-string")
    # The emulator accepts a JSON-encoded scopes string ...
    response = emulator.call("projectapikey", "POST", PROJECT, {"title": "t", "scopes": '["label.read"]'})
    assert response.json()["status"] == 200
    # ... and, with --scopes-as-string, lists scopes that way; the SDK decodes both.
    listed = emulator.call("projectapikey", "GET", PROJECT, None).json()["response"]
    assert listed[0]["scopes"] == '["label.read"]'
    keys = emulator.user().get_project_api_keys(PROJECT)
    assert keys[0].scopes == [APIKeyScopes.LABEL_READ]
