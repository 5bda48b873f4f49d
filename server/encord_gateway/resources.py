"""The two resource kinds, projects and datasets: one descriptor each, so that every call is written once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from encord_gateway_client.v1 import api_keys_pb2 as pb
from google.protobuf.message import Message

from encord_gateway.redaction import fingerprint
from encord_gateway.scopes import DATASET_SCOPE_NUMBERS, DATASET_SCOPES, PROJECT_SCOPE_NUMBERS, PROJECT_SCOPES


@dataclass(frozen=True)
class KeyRequest:
    """A validated create request: the resource, the title, and Encord's scope strings in order."""

    resource_hash: str
    title: str = ""
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, init=False)
class ApiKey:
    """A key as Encord has it; `key_hash` is a dataset key's own id (project keys have none)."""

    api_key: str = field(repr=False)
    title: str
    scopes: tuple[str, ...]
    resource_hash: str
    key_hash: str = ""
    # Computed once: the answer's message and the audit line of a list both name the key by it.
    fingerprint: str = field(init=False)

    def __init__(
        self, api_key: str, title: str, scopes: tuple[str, ...], resource_hash: str, key_hash: str = ""
    ) -> None:
        # One is made per listed key: the fields go into __dict__ at once, where a frozen dataclass's
        # own __init__ calls object.__setattr__ once per field (with the fingerprint: 4.5 us, now 3.3).
        self.__dict__.update(
            api_key=api_key,
            title=title,
            scopes=scopes,
            resource_hash=resource_hash,
            key_hash=key_hash,
            fingerprint=fingerprint(api_key),
        )


KeyMessage = TypeVar("KeyMessage", bound=Message)
ListMessage = TypeVar("ListMessage", bound=Message)


@dataclass(frozen=True)
class ResourceKind(Generic[KeyMessage, ListMessage]):
    """What differs between a project's keys and a dataset's: names, scopes, messages, Encord's queries."""

    name: str  # "project" or "dataset": audit lines, policy tables, lock names, messages
    hash_field: str  # the request's and the answer's field naming the resource
    scopes: Mapping[Any, str]  # proto enum number -> Encord's scope string
    numbers: Mapping[str, Any]  # and back
    # Encord's query type; a project is the query's uid, a dataset travels in the payload
    # (encord/user_client.py: create_project_api_key, create_dataset_api_key, get_*_api_keys).
    query_type: str
    hash_in_payload: bool
    # Encord answers a dataset create with the key's object, a project create with the key's string
    # alone; and a dataset key's object names its resource_hash and its own key_hash.
    keys_carry_hashes: bool
    # (make, key, reveal) -> the proto key, made by `make`: the message class, or a listing's
    # `api_keys.add`, which builds the key in place (a listing built from messages copies each).
    build: Callable[[Callable[..., KeyMessage], ApiKey, bool], KeyMessage]
    key_message: type[KeyMessage]
    list_response: type[ListMessage]

    @property
    def all_scopes(self) -> tuple[str, ...]:
        return tuple(self.scopes.values())

    def scope_numbers(self, names: tuple[str, ...]) -> list[Any]:
        return [self.numbers[name] for name in names]

    def master(self, resource_hash: str) -> KeyRequest:
        """The key get-or-create makes: every scope, titled as the SDK titles it."""
        return KeyRequest(resource_hash, f"{resource_hash} - admin key", self.all_scopes)

    def create_query(self, request: KeyRequest) -> tuple[str | None, dict[str, Any]]:
        """(uid, payload) of the create; the payload's key order is the SDK's, so the bytes are too."""
        named = {self.hash_field: request.resource_hash} if self.hash_in_payload else {}
        uid = None if self.hash_in_payload else request.resource_hash
        return uid, {**named, "title": request.title, "scopes": list(request.scopes)}

    def list_query(self, resource_hash: str) -> tuple[str | None, dict[str, Any] | None]:
        if self.hash_in_payload:
            return None, {self.hash_field: resource_hash}
        return resource_hash, None

    def message(self, key: ApiKey, *, reveal: bool = True) -> KeyMessage:
        return self.build(self.key_message, key, reveal)

    def preview(self, request: KeyRequest) -> KeyMessage:
        """A validate_only answer: what would be minted, without a key."""
        return self.build(
            self.key_message, ApiKey("", request.title, request.scopes, request.resource_hash), False
        )

    def listing(self, keys: list[ApiKey], *, reveal: bool) -> ListMessage:
        listing = self.list_response()
        add, build = listing.api_keys.add, self.build  # type: ignore[attr-defined]
        for key in keys:
            build(add, key, reveal)
        return listing


def _project_key(make: Callable[..., pb.ProjectApiKey], key: ApiKey, reveal: bool) -> pb.ProjectApiKey:
    return make(
        api_key=key.api_key if reveal else "",
        title=key.title,
        scopes=PROJECT.scope_numbers(key.scopes),
        project_hash=key.resource_hash,
        fingerprint=key.fingerprint,
    )


def _dataset_key(make: Callable[..., pb.DatasetApiKey], key: ApiKey, reveal: bool) -> pb.DatasetApiKey:
    return make(
        dataset_hash=key.resource_hash,
        api_key=key.api_key if reveal else "",
        title=key.title,
        key_hash=key.key_hash,
        scopes=DATASET.scope_numbers(key.scopes),
        fingerprint=key.fingerprint,
    )


PROJECT: ResourceKind[pb.ProjectApiKey, pb.ListProjectApiKeysResponse] = ResourceKind(
    name="project",
    hash_field="project_hash",
    scopes=PROJECT_SCOPES,
    numbers=PROJECT_SCOPE_NUMBERS,
    query_type="projectapikey",
    hash_in_payload=False,
    keys_carry_hashes=False,
    build=_project_key,
    key_message=pb.ProjectApiKey,
    list_response=pb.ListProjectApiKeysResponse,
)
DATASET: ResourceKind[pb.DatasetApiKey, pb.ListDatasetApiKeysResponse] = ResourceKind(
    name="dataset",
    hash_field="dataset_hash",
    scopes=DATASET_SCOPES,
    numbers=DATASET_SCOPE_NUMBERS,
    query_type="datasetapikey",
    hash_in_payload=True,
    keys_carry_hashes=True,
    build=_dataset_key,
    key_message=pb.DatasetApiKey,
    list_response=pb.ListDatasetApiKeysResponse,
)
KINDS = (PROJECT, DATASET)

__all__ = ["DATASET", "KINDS", "PROJECT", "ApiKey", "KeyRequest", "ResourceKind"]
