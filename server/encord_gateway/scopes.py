"""Encord's scope strings and the proto enums that name them."""

from __future__ import annotations

from encord_gateway_client.v1 import api_keys_pb2 as pb

# Encord's APIKeyScopes and DatasetScope values (encord/utilities/client_utilities.py,
# encord/orm/dataset.py), keyed by the proto enum number.
PROJECT_SCOPES: dict[pb.ApiKeyScope, str] = {
    pb.API_KEY_SCOPE_LABEL_READ: "label.read",
    pb.API_KEY_SCOPE_LABEL_WRITE: "label.write",
    pb.API_KEY_SCOPE_MODEL_INFERENCE: "model.inference",
    pb.API_KEY_SCOPE_MODEL_TRAIN: "model.train",
    pb.API_KEY_SCOPE_LABEL_LOGS_READ: "label_logs.read",
    pb.API_KEY_SCOPE_ALGO_LIBRARY: "algo.library",
}
DATASET_SCOPES: dict[pb.DatasetScope, str] = {
    pb.DATASET_SCOPE_READ: "dataset.read",
    pb.DATASET_SCOPE_WRITE: "dataset.write",
}
PROJECT_SCOPE_NUMBERS: dict[str, pb.ApiKeyScope] = {name: number for number, name in PROJECT_SCOPES.items()}
DATASET_SCOPE_NUMBERS: dict[str, pb.DatasetScope] = {name: number for number, name in DATASET_SCOPES.items()}
ALL_PROJECT_SCOPES = tuple(PROJECT_SCOPES.values())
ALL_DATASET_SCOPES = tuple(DATASET_SCOPES.values())
