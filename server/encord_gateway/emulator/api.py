"""The operations: the six API-key calls on /public/user and the key-holder calls on /public."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from encord_gateway.emulator import errors as e
from encord_gateway.emulator.fixture import ResourceType
from encord_gateway.emulator.store import KeyRow, ResourceRow, Store
from encord_gateway.emulator.verify import AuthorizationMalformed, parse_authorization, verify_v1

PROJECT_SCOPES = (
    "label.read",
    "label.write",
    "model.inference",
    "model.train",
    "label_logs.read",
    "algo.library",
)
DATASET_SCOPES = ("dataset.read", "dataset.write")
SCOPES: dict[ResourceType, tuple[str, ...]] = {"project": PROJECT_SCOPES, "dataset": DATASET_SCOPES}
# The scope a key needs to read its own resource.
READ_SCOPE: dict[ResourceType, str] = {"project": "label.read", "dataset": "dataset.read"}
MAX_TITLE_LENGTH = 255
_NO_BODY = object()


@dataclass(frozen=True)
class Call:
    """One parsed `{"query_type", "query_method", "values": {"uid", "payload"}}` body."""

    query_type: str
    query_method: str
    uid: Any
    payload: Any


def parse_json(body: bytes) -> Any:
    """The decoded body, or a sentinel when it is not JSON (the server still logs and counts it)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NO_BODY


def query_of(document: Any) -> tuple[str | None, str | None]:
    """(query_type, query_method) when the body names them as strings, for logs, stats and fault matching."""
    if not isinstance(document, dict):
        return None, None
    query_type, query_method = document.get("query_type"), document.get("query_method")
    return (
        query_type if isinstance(query_type, str) else None,
        query_method if isinstance(query_method, str) else None,
    )


def to_call(document: Any) -> Call:
    """Checks the envelope of a request body; INVALID_ARGUMENTS_ERROR names the first problem."""
    if document is _NO_BODY:
        raise e.invalid(e.MSG_BODY_NOT_JSON)
    if not isinstance(document, dict):
        raise e.invalid(e.MSG_BODY_NOT_OBJECT)
    query_type = _field(document, "query_type", str, "a string")
    query_method = _field(document, "query_method", str, "a string")
    values = _field(document, "values", dict, "an object")
    if "uid" not in values:
        raise e.invalid(e.MSG_FIELD_MISSING.format(field="values.uid"))
    return Call(query_type, query_method, values["uid"], values.get("payload"))


def _field(document: Mapping[str, Any], name: str, kind: type, expected: str) -> Any:
    if name not in document:
        raise e.invalid(e.MSG_FIELD_MISSING.format(field=name))
    value = document[name]
    if not isinstance(value, kind):
        raise e.invalid(e.MSG_FIELD_TYPE.format(field=name, expected=expected))
    return value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise e.invalid(e.MSG_FIELD_TYPE.format(field=name, expected="a non-empty string"))
    return value


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise e.invalid(e.MSG_FIELD_TYPE.format(field=name, expected="an object"))
    return value


def _title(payload: Mapping[str, Any]) -> str:
    if "title" not in payload:
        raise e.invalid(e.MSG_FIELD_MISSING.format(field="payload.title"))
    title = payload["title"]
    if not isinstance(title, str):
        raise e.invalid(e.MSG_FIELD_TYPE.format(field="payload.title", expected="a string"))
    if not title.strip():
        raise e.invalid(e.MSG_TITLE_EMPTY)
    if len(title) > MAX_TITLE_LENGTH:
        raise e.invalid(e.MSG_TITLE_TOO_LONG.format(limit=MAX_TITLE_LENGTH))
    return title


def _scopes(payload: Mapping[str, Any], kind: ResourceType) -> tuple[str, ...]:
    """The requested scopes, deduplicated in order; a JSON-encoded list is accepted as the SDK does."""
    if "scopes" not in payload:
        raise e.invalid(e.MSG_FIELD_MISSING.format(field="payload.scopes"))
    scopes = payload["scopes"]
    if isinstance(scopes, str):
        try:
            scopes = json.loads(scopes)
        except ValueError:
            raise e.invalid(e.MSG_SCOPES_NOT_JSON) from None
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise e.invalid(e.MSG_FIELD_TYPE.format(field="payload.scopes", expected="a list of strings"))
    if not scopes:
        raise e.invalid(e.MSG_SCOPES_EMPTY)
    allowed = SCOPES[kind]
    for scope in scopes:
        if scope not in allowed:
            raise e.invalid(e.MSG_SCOPE_UNKNOWN.format(scope=scope, allowed=", ".join(allowed)))
    return tuple(dict.fromkeys(scopes))


class UserApi:
    """Calls signed with a user's SSH key (`POST /public/user`)."""

    def __init__(self, store: Store, *, scopes_as_string: bool = False) -> None:
        self._store = store
        self._scopes_as_string = scopes_as_string
        self._routes: dict[str, dict[str, Callable[[str, Call], Any]]] = {
            "projectapikey": {"POST": self._create_project_key, "GET": self._list_project_keys},
            "datasetapikey": {"POST": self._create_dataset_key, "GET": self._list_dataset_keys},
        }

    def authenticate(self, authorization: str | None, body: bytes) -> str:
        """The email of the user whose key signed `body`; the auth check runs before anything else."""
        if not authorization:
            raise e.EncordError(e.AUTHENTICATION_ERROR)
        try:
            public_key, signature = parse_authorization(authorization)
        except AuthorizationMalformed:
            raise e.EncordError(e.AUTHENTICATION_ERROR) from None
        if not verify_v1(public_key, signature, body):
            raise e.EncordError(e.AUTHENTICATION_ERROR)
        emails = self._store.users_with_public_key(public_key)
        if not emails:
            raise e.EncordError(e.SSH_KEY_NOT_FOUND_ERROR)
        if len(emails) > 1:
            raise e.EncordError(e.DUPLICATE_SSH_KEY_ERROR)
        return emails[0]

    def handle(self, email: str, call: Call) -> Any:
        return _route(self._routes, call)(email, call)

    def _admin_resource(self, resource_hash: str, kind: ResourceType, email: str) -> ResourceRow:
        resource, role = self._store.resource_and_role(resource_hash, email)
        if resource is None or resource.resource_type != kind:
            raise e.EncordError(
                e.RESOURCE_NOT_FOUND_ERROR,
                e.MSG_RESOURCE_NOT_FOUND.format(kind=kind, resource_hash=resource_hash),
            )
        if role != "admin":
            raise e.EncordError(e.AUTHORISATION_ERROR)
        return resource

    def _wire_scopes(self, scopes: tuple[str, ...]) -> list[str] | str:
        return json.dumps(list(scopes)) if self._scopes_as_string else list(scopes)

    def _create_project_key(self, email: str, call: Call) -> Any:
        project_hash = _string(call.uid, "values.uid")
        payload = _object(call.payload, "values.payload")
        title, scopes = _title(payload), _scopes(payload, "project")
        resource = self._admin_resource(project_hash, "project", email)
        return self._store.create_key(resource, title, scopes, email).api_key

    def _list_project_keys(self, email: str, call: Call) -> Any:
        project_hash = _string(call.uid, "values.uid")
        self._admin_resource(project_hash, "project", email)
        return [
            {"api_key": k.api_key, "title": k.title, "scopes": self._wire_scopes(k.scopes)}
            for k in self._store.list_keys(project_hash)
        ]

    def _dataset_key(self, key: KeyRow) -> dict[str, Any]:
        return {
            "resource_hash": key.resource_hash,
            "api_key": key.api_key,
            "title": key.title,
            "key_hash": key.key_hash,
            "scopes": self._wire_scopes(key.scopes),
        }

    def _create_dataset_key(self, email: str, call: Call) -> Any:
        payload = _object(call.payload, "values.payload")
        dataset_hash = _string(payload.get("dataset_hash"), "payload.dataset_hash")
        title, scopes = _title(payload), _scopes(payload, "dataset")
        resource = self._admin_resource(dataset_hash, "dataset", email)
        return self._dataset_key(self._store.create_key(resource, title, scopes, email))

    def _list_dataset_keys(self, email: str, call: Call) -> Any:
        payload = _object(call.payload, "values.payload")
        dataset_hash = _string(payload.get("dataset_hash"), "payload.dataset_hash")
        self._admin_resource(dataset_hash, "dataset", email)
        return [self._dataset_key(k) for k in self._store.list_keys(dataset_hash)]


class KeyApi:
    """Calls made with an API key (`POST /public`, `Authorization: <key>`, `ResourceID: <hash>`)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._routes: dict[str, dict[str, Callable[[KeyRow, Call], Any]]] = {
            "apikeymeta": {"GET": self._meta},
            "project": {"GET": self._read_project},
            "dataset": {"GET": self._read_dataset},
        }

    def authenticate(self, authorization: str | None, resource_id: str | None) -> KeyRow:
        key = self._store.key(authorization.strip()) if authorization else None
        if key is None:
            raise e.EncordError(e.AUTHENTICATION_ERROR)
        if resource_id != key.resource_hash:
            raise e.EncordError(e.AUTHORISATION_ERROR)
        return key

    def handle(self, key: KeyRow, call: Call) -> Any:
        return _route(self._routes, call)(key, call)

    def _meta(self, key: KeyRow, call: Call) -> Any:
        return {"title": key.title, "resource_type": key.resource_type}

    def _readable(self, key: KeyRow, kind: ResourceType) -> ResourceRow:
        if key.resource_type != kind or READ_SCOPE[kind] not in key.scopes:
            raise e.EncordError(e.OPERATION_NOT_ALLOWED)
        resource = self._store.resource(key.resource_hash)
        if resource is None:
            raise e.EncordError(
                e.RESOURCE_NOT_FOUND_ERROR,
                e.MSG_RESOURCE_NOT_FOUND.format(kind=kind, resource_hash=key.resource_hash),
            )
        return resource

    def _read_project(self, key: KeyRow, call: Call) -> Any:
        # What encord.orm.project.Project accepts; the emulator holds no label rows or ontology.
        project = self._readable(key, "project")
        return {
            "project_hash": project.resource_hash,
            "title": project.title,
            "description": project.description,
            "created_at": project.created_at,
            "last_edited_at": project.created_at,
            "editor_ontology": {},
            "datasets": [],
            "label_rows": [],
            "ontology_hash": "",
            "source_projects": [],
            "workflow_manager_uuid": None,
        }

    def _read_dataset(self, key: KeyRow, call: Call) -> Any:
        # What encord.orm.dataset.Dataset.from_dict accepts: an empty dataset in Encord storage.
        dataset = self._readable(key, "dataset")
        return {
            "dataset_hash": dataset.resource_hash,
            "title": dataset.title,
            "description": dataset.description,
            "dataset_type": "CORD_STORAGE",
            "data_rows": [],
            "backing_folder_uuid": None,
        }


def _route(routes: Mapping[str, Mapping[str, Callable[..., Any]]], call: Call) -> Callable[..., Any]:
    methods = routes.get(call.query_type)
    if methods is None:
        raise e.invalid(e.MSG_UNKNOWN_QUERY_TYPE.format(query_type=call.query_type[:64]))
    handler = methods.get(call.query_method)
    if handler is None:
        raise e.EncordError(
            e.METHOD_NOT_ALLOWED_ERROR,
            e.MSG_UNKNOWN_METHOD.format(query_type=call.query_type, query_method=call.query_method[:16]),
        )
    return handler
