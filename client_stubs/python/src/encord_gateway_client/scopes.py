"""Scopes as Python enums whose values are Encord's own strings ("label.read", ...)."""

from __future__ import annotations

import enum

from .v1 import api_keys_pb2 as pb


class ProjectScope(enum.StrEnum):
    """What a project API key may do; `ProjectScope("label.read")` parses Encord's string."""

    LABEL_READ = "label.read"
    LABEL_WRITE = "label.write"
    MODEL_INFERENCE = "model.inference"
    MODEL_TRAIN = "model.train"
    LABEL_LOGS_READ = "label_logs.read"
    ALGO_LIBRARY = "algo.library"

    def to_proto(self) -> pb.ApiKeyScope:
        return _PROJECT_TO_PROTO[self]

    @classmethod
    def from_proto(cls, number: int) -> ProjectScope | None:
        """The scope for a proto enum number; None for UNSPECIFIED or a number newer than this client."""
        return _PROJECT_FROM_PROTO.get(number)


class DatasetScope(enum.StrEnum):
    """What a dataset API key may do; `DatasetScope("dataset.read")` parses Encord's string."""

    READ = "dataset.read"
    WRITE = "dataset.write"

    def to_proto(self) -> pb.DatasetScope:
        return _DATASET_TO_PROTO[self]

    @classmethod
    def from_proto(cls, number: int) -> DatasetScope | None:
        """The scope for a proto enum number; None for UNSPECIFIED or a number newer than this client."""
        return _DATASET_FROM_PROTO.get(number)


_PROJECT_TO_PROTO: dict[ProjectScope, pb.ApiKeyScope] = {
    ProjectScope.LABEL_READ: pb.API_KEY_SCOPE_LABEL_READ,
    ProjectScope.LABEL_WRITE: pb.API_KEY_SCOPE_LABEL_WRITE,
    ProjectScope.MODEL_INFERENCE: pb.API_KEY_SCOPE_MODEL_INFERENCE,
    ProjectScope.MODEL_TRAIN: pb.API_KEY_SCOPE_MODEL_TRAIN,
    ProjectScope.LABEL_LOGS_READ: pb.API_KEY_SCOPE_LABEL_LOGS_READ,
    ProjectScope.ALGO_LIBRARY: pb.API_KEY_SCOPE_ALGO_LIBRARY,
}
_PROJECT_FROM_PROTO: dict[int, ProjectScope] = {int(n): s for s, n in _PROJECT_TO_PROTO.items()}
_DATASET_TO_PROTO: dict[DatasetScope, pb.DatasetScope] = {
    DatasetScope.READ: pb.DATASET_SCOPE_READ,
    DatasetScope.WRITE: pb.DATASET_SCOPE_WRITE,
}
_DATASET_FROM_PROTO: dict[int, DatasetScope] = {int(n): s for s, n in _DATASET_TO_PROTO.items()}
