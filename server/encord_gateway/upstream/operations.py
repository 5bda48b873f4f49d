"""The six key operations in Encord's terms, including the SDK's get-or-create semantics."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from encord_gateway import errors
from encord_gateway.context import CallContext
from encord_gateway.scopes import (
    ALL_DATASET_SCOPES,
    ALL_PROJECT_SCOPES,
    DATASET_SCOPE_NUMBERS,
    PROJECT_SCOPE_NUMBERS,
)
from encord_gateway.state import MemoryStore
from encord_gateway.upstream.client import EncordClient, UpstreamCall

log = logging.getLogger(__name__)

PROJECT_KEY_TYPE = "projectapikey"
DATASET_KEY_TYPE = "datasetapikey"


@dataclass(frozen=True)
class KeyRequest:
    """A validated create request: the resource, the title, and Encord's scope strings in order."""

    resource_hash: str
    title: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class ProjectKey:
    api_key: str
    title: str
    scopes: tuple[str, ...]
    project_hash: str


@dataclass(frozen=True)
class DatasetKey:
    dataset_hash: str
    api_key: str
    title: str
    key_hash: str
    scopes: tuple[str, ...]


# Takes a named lock for at most `wait_s`, held for a lease of `lease_s` (renewed while held).
Locks = Callable[[str, float, float], contextlib.AbstractContextManager[None]]
# A get-or-create holds the lock while it lists and mints: longer than any call may run.
LOCK_LEASE_S = 30.0


class KeyOperations:
    """Turns each operation into Encord calls (encord/user_client.py) and parses what comes back."""

    def __init__(self, client: EncordClient, locks: Locks | None = None) -> None:
        self._client = client
        # Two simultaneous get-or-creates for one resource would both miss the master key and both
        # mint one. The state store's lock makes it one: in this process (memory://), on this host
        # (sqlite://) or across the fleet.
        self._locks: Locks = locks or MemoryStore().lock

    def _call(
        self, scope: CallContext, query_type: str, method: str, uid: Any, payload: Any, *, retryable: bool
    ) -> Any:
        call = UpstreamCall(query_type, method, uid, payload, scope.deadline, scope.trace_id, retryable)
        scope.upstream.append(call.outcome)
        return self._client.call(call)

    # Projects ---------------------------------------------------------------

    def create_project_key(self, request: KeyRequest, scope: CallContext) -> ProjectKey:
        payload = {"title": request.title, "scopes": list(request.scopes)}
        answer = self._call(scope, PROJECT_KEY_TYPE, "POST", request.resource_hash, payload, retryable=False)
        if not isinstance(answer, str) or not answer:
            raise _bad_answer("a created project key", scope)
        return ProjectKey(answer, request.title, request.scopes, request.resource_hash)

    def list_project_keys(self, project_hash: str, scope: CallContext) -> list[ProjectKey]:
        answer = self._call(scope, PROJECT_KEY_TYPE, "GET", project_hash, None, retryable=True)
        return [
            _project_key(item, project_hash, scope) for item in _list_answer(answer, "project keys", scope)
        ]

    def get_or_create_project_key(self, project_hash: str, scope: CallContext) -> tuple[ProjectKey, bool]:
        with self._locks(
            f"master:project:{project_hash}", LOCK_LEASE_S, max(0.0, scope.deadline.remaining())
        ):
            for key in self.list_project_keys(project_hash, scope):
                if set(key.scopes) == set(ALL_PROJECT_SCOPES):
                    return key, False
            request = KeyRequest(project_hash, f"{project_hash} - admin key", ALL_PROJECT_SCOPES)
            return self.create_project_key(request, scope), True

    # Datasets ---------------------------------------------------------------

    def create_dataset_key(self, request: KeyRequest, scope: CallContext) -> DatasetKey:
        payload = {
            "dataset_hash": request.resource_hash,
            "title": request.title,
            "scopes": list(request.scopes),
        }
        answer = self._call(scope, DATASET_KEY_TYPE, "POST", None, payload, retryable=False)
        return _dataset_key(answer, request.resource_hash, scope)

    def list_dataset_keys(self, dataset_hash: str, scope: CallContext) -> list[DatasetKey]:
        payload = {"dataset_hash": dataset_hash}
        answer = self._call(scope, DATASET_KEY_TYPE, "GET", None, payload, retryable=True)
        return [
            _dataset_key(item, dataset_hash, scope) for item in _list_answer(answer, "dataset keys", scope)
        ]

    def get_or_create_dataset_key(self, dataset_hash: str, scope: CallContext) -> tuple[DatasetKey, bool]:
        with self._locks(
            f"master:dataset:{dataset_hash}", LOCK_LEASE_S, max(0.0, scope.deadline.remaining())
        ):
            for key in self.list_dataset_keys(dataset_hash, scope):
                if set(key.scopes) == set(ALL_DATASET_SCOPES):
                    return key, False
            request = KeyRequest(dataset_hash, f"{dataset_hash} - admin key", ALL_DATASET_SCOPES)
            return self.create_dataset_key(request, scope), True


# Parsing Encord's answers ---------------------------------------------------


def _bad_answer(what: str, scope: CallContext) -> errors.UpstreamBadResponse:
    return errors.UpstreamBadResponse(f"Encord's answer is not {what}")


def _list_answer(answer: Any, what: str, scope: CallContext) -> list[Any]:
    # The SDK turns a null list into ResourceNotFoundError, and so do we.
    if answer is None:
        raise errors.EncordNotFound("RESOURCE_NOT_FOUND_ERROR", f"Encord found no {what}")
    if not isinstance(answer, list):
        raise _bad_answer(f"a list of {what}", scope)
    return answer


def _scopes(value: Any, known: Mapping[str, object], scope: CallContext) -> tuple[str, ...]:
    """Scopes as a list or, as Encord sometimes sends them, a JSON-encoded list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _bad_answer("a key with a scope list", scope) from None
    if not isinstance(value, list):
        raise _bad_answer("a key with a scope list", scope)
    # One pass per key (a list answer has one per key): keep the known, note the rest.
    kept: dict[str, None] = {}
    unknown: set[str] = set()
    for name in value:
        if not isinstance(name, str):
            raise _bad_answer("a key with a scope list", scope)
        if name in known:
            kept[name] = None
        else:
            unknown.add(name)
    if unknown:
        # A scope newer than this gateway: the key is still listed, without it.
        log.warning("ignoring scopes unknown to this gateway: %s", ", ".join(sorted(unknown)))
    return tuple(kept)


def _key_fields(item: Any, what: str, scope: CallContext) -> dict[str, Any]:
    """A key's JSON object, which must hold `api_key` and `title` strings."""
    if not isinstance(item, dict) or not isinstance(item.get("api_key"), str):
        raise _bad_answer(what, scope)
    if not isinstance(item.get("title"), str):
        raise _bad_answer(what, scope)
    return item


def _project_key(item: Any, project_hash: str, scope: CallContext) -> ProjectKey:
    fields = _key_fields(item, "a project key", scope)
    return ProjectKey(
        fields["api_key"],
        fields["title"],
        _scopes(fields.get("scopes"), PROJECT_SCOPE_NUMBERS, scope),
        project_hash,
    )


def _dataset_key(item: Any, dataset_hash: str, scope: CallContext) -> DatasetKey:
    fields = _key_fields(item, "a dataset key", scope)
    key_hash = fields.get("key_hash")
    return DatasetKey(
        str(fields.get("resource_hash") or dataset_hash),
        fields["api_key"],
        fields["title"],
        key_hash if isinstance(key_hash, str) else "",
        _scopes(fields.get("scopes"), DATASET_SCOPE_NUMBERS, scope),
    )
