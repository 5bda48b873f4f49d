"""The keys the gateway answers with, as frozen dataclasses built from the proto messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from .scopes import DatasetScope, ProjectScope
from .v1 import api_keys_pb2 as pb

_S = TypeVar("_S", ProjectScope, DatasetScope)


@dataclass(frozen=True)
class ProjectApiKey:
    """An API key of a project. `api_key` is a credential, so it is left out of repr()."""

    api_key: str = field(repr=False)
    title: str
    scopes: tuple[ProjectScope, ...]
    project_hash: str
    # The first 16 hex digits of the key's SHA-256: names the key without revealing it.
    fingerprint: str

    @classmethod
    def from_proto(cls, message: pb.ProjectApiKey) -> ProjectApiKey:
        return cls(
            api_key=message.api_key,
            title=message.title,
            scopes=_known(ProjectScope.from_proto(n) for n in message.scopes),
            project_hash=message.project_hash,
            fingerprint=message.fingerprint,
        )


@dataclass(frozen=True)
class DatasetApiKey:
    """An API key of a dataset. `api_key` is a credential, so it is left out of repr()."""

    dataset_hash: str
    api_key: str = field(repr=False)
    title: str
    # Encord's identifier of the key.
    key_hash: str
    scopes: tuple[DatasetScope, ...]
    fingerprint: str

    @classmethod
    def from_proto(cls, message: pb.DatasetApiKey) -> DatasetApiKey:
        return cls(
            dataset_hash=message.dataset_hash,
            api_key=message.api_key,
            title=message.title,
            key_hash=message.key_hash,
            scopes=_known(DatasetScope.from_proto(n) for n in message.scopes),
            fingerprint=message.fingerprint,
        )


def _known(scopes: Iterable[_S | None]) -> tuple[_S, ...]:
    # A scope newer than this client has no enum member; it is left out rather
    # than failing the whole answer, and a newer client will show it.
    return tuple(s for s in scopes if s is not None)
