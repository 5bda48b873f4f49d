"""The ApiKeyService servicer: validate, authorize, call Encord, answer; errors are the frame's job."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc

from encord_gateway.access.gatekeeper import Access, Gatekeeper, KeyIntent
from encord_gateway.api import validation
from encord_gateway.api.exactly_once import ExactlyOnce, MintedKey, record_key, request_hash
from encord_gateway.api.frame import RpcFrame, rpc
from encord_gateway.context import CallContext, CallRecord
from encord_gateway.redaction import fingerprint
from encord_gateway.scopes import (
    ALL_DATASET_SCOPES,
    ALL_PROJECT_SCOPES,
    DATASET_SCOPE_NUMBERS,
    DATASET_SCOPES,
    PROJECT_SCOPE_NUMBERS,
    PROJECT_SCOPES,
)
from encord_gateway.upstream.operations import DatasetKey, KeyOperations, ProjectKey

# Trailing metadata on a create answered from its request id's record rather than minted by this call.
REPLAYED_METADATA = "encord-gateway-replayed"
Key = TypeVar("Key", bound=MintedKey)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ApiKeyService"].full_name


def project_key_message(key: ProjectKey, *, reveal: bool = True) -> pb.ProjectApiKey:
    return pb.ProjectApiKey(
        api_key=key.api_key if reveal else "",
        title=key.title,
        scopes=[PROJECT_SCOPE_NUMBERS[s] for s in key.scopes],
        project_hash=key.project_hash,
        fingerprint=fingerprint(key.api_key),
    )


def dataset_key_message(key: DatasetKey, *, reveal: bool = True) -> pb.DatasetApiKey:
    return pb.DatasetApiKey(
        dataset_hash=key.dataset_hash,
        api_key=key.api_key if reveal else "",
        title=key.title,
        key_hash=key.key_hash,
        scopes=[DATASET_SCOPE_NUMBERS[s] for s in key.scopes],
        fingerprint=fingerprint(key.api_key),
    )


class ApiKeyServicer(pb_grpc.ApiKeyServiceServicer):
    """Each method: validate the request, ask the gatekeeper, run the operation, build the answer."""

    def __init__(
        self,
        operations: KeyOperations,
        frame: RpcFrame,
        gatekeeper: Gatekeeper,
        exactly_once: ExactlyOnce | None = None,
    ) -> None:
        self.operations = operations
        self.frame = frame
        self.gatekeeper = gatekeeper
        self.exactly_once = exactly_once

    def _create_once(
        self,
        record: CallRecord,
        request_id: str,
        intent: KeyIntent,
        list_keys: Callable[[], list[Key]],
        mint: Callable[[], Key],
    ) -> tuple[Key, bool, bool]:
        """(key, created, replayed): a create with a request id runs at most once, else it just runs."""
        if not request_id or self.exactly_once is None:
            return mint(), True, False
        same_request = request_hash(intent.kind, intent.resource_hash, intent.title, intent.scopes)
        outcome = self.exactly_once.create(
            key=record_key(record.caller, record.method, request_id),
            fingerprint_of_request=same_request,
            # Only creates of the same title and scopes on a resource could be told apart wrongly by a
            # listing, so only they wait for each other; creates of other titles run side by side.
            lock_name=f"create:{same_request}",
            title=intent.title,
            scopes=intent.scopes,
            wait_s=_scope(record).deadline.remaining(),
            list_keys=list_keys,
            mint=mint,
        )
        if outcome.replayed:
            record.trailers.append((REPLAYED_METADATA, "true"))
        return outcome.key, outcome.created, outcome.replayed

    # Projects ---------------------------------------------------------------

    @rpc("CreateProjectApiKey")
    def CreateProjectApiKey(
        self, request: pb.CreateProjectApiKeyRequest, record: CallRecord
    ) -> pb.ProjectApiKey:
        record.resource_hash = request.project_hash
        checked = validation.key_request(
            request.project_hash,
            "project_hash",
            request.title,
            request.scopes,
            PROJECT_SCOPES,
            request.request_id,
        )
        record.resource_hash = checked.resource_hash
        intent = KeyIntent.project(checked.resource_hash, checked.title, checked.scopes)
        with self.gatekeeper.mint(record, intent) as minted:
            if request.validate_only:
                self.operations.list_project_keys(checked.resource_hash, _scope(record))
                return pb.ProjectApiKey(
                    title=checked.title, scopes=request.scopes, project_hash=checked.resource_hash
                )
            key, created, replayed = self._create_once(
                record,
                request.request_id,
                intent,
                lambda: self.operations.list_project_keys(checked.resource_hash, _scope(record)),
                lambda: self.operations.create_project_key(checked, _scope(record)),
            )
            minted.key(key.api_key, key.scopes, created=created, replayed=replayed)
        return project_key_message(key)

    @rpc("ListProjectApiKeys")
    def ListProjectApiKeys(
        self, request: pb.ListProjectApiKeysRequest, record: CallRecord
    ) -> pb.ListProjectApiKeysResponse:
        record.resource_hash = request.project_hash
        project_hash = validation.hash_only(request.project_hash, "project_hash")
        record.resource_hash = project_hash
        access = self.gatekeeper.read(record, KeyIntent.project(project_hash))
        keys = self.operations.list_project_keys(project_hash, _scope(record))
        if access.reveal_keys:
            self.gatekeeper.revealed(record, [k.api_key for k in keys])
        return pb.ListProjectApiKeysResponse(
            api_keys=[project_key_message(k, reveal=access.reveal_keys) for k in keys]
        )

    @rpc("GetOrCreateProjectApiKey")
    def GetOrCreateProjectApiKey(
        self, request: pb.GetOrCreateProjectApiKeyRequest, record: CallRecord
    ) -> pb.ProjectApiKey:
        record.resource_hash = request.project_hash
        project_hash = validation.hash_only(request.project_hash, "project_hash")
        record.resource_hash = project_hash
        intent = KeyIntent.project(project_hash, f"{project_hash} - admin key", ALL_PROJECT_SCOPES)
        with self.gatekeeper.mint(record, intent) as minted:
            if request.validate_only:
                self.operations.list_project_keys(project_hash, _scope(record))
                return pb.ProjectApiKey(
                    title=intent.title, scopes=_project_numbers(ALL_PROJECT_SCOPES), project_hash=project_hash
                )
            key, created = self.operations.get_or_create_project_key(project_hash, _scope(record))
            minted.key(key.api_key, key.scopes, created=created)
        return project_key_message(key)

    # Datasets ---------------------------------------------------------------

    @rpc("CreateDatasetApiKey")
    def CreateDatasetApiKey(
        self, request: pb.CreateDatasetApiKeyRequest, record: CallRecord
    ) -> pb.DatasetApiKey:
        record.resource_hash = request.dataset_hash
        checked = validation.key_request(
            request.dataset_hash,
            "dataset_hash",
            request.title,
            request.scopes,
            DATASET_SCOPES,
            request.request_id,
        )
        record.resource_hash = checked.resource_hash
        intent = KeyIntent.dataset(checked.resource_hash, checked.title, checked.scopes)
        with self.gatekeeper.mint(record, intent) as minted:
            if request.validate_only:
                self.operations.list_dataset_keys(checked.resource_hash, _scope(record))
                return pb.DatasetApiKey(
                    dataset_hash=checked.resource_hash, title=checked.title, scopes=request.scopes
                )
            key, created, replayed = self._create_once(
                record,
                request.request_id,
                intent,
                lambda: self.operations.list_dataset_keys(checked.resource_hash, _scope(record)),
                lambda: self.operations.create_dataset_key(checked, _scope(record)),
            )
            minted.key(key.api_key, key.scopes, created=created, replayed=replayed)
        return dataset_key_message(key)

    @rpc("ListDatasetApiKeys")
    def ListDatasetApiKeys(
        self, request: pb.ListDatasetApiKeysRequest, record: CallRecord
    ) -> pb.ListDatasetApiKeysResponse:
        record.resource_hash = request.dataset_hash
        dataset_hash = validation.hash_only(request.dataset_hash, "dataset_hash")
        record.resource_hash = dataset_hash
        access = self.gatekeeper.read(record, KeyIntent.dataset(dataset_hash))
        keys = self.operations.list_dataset_keys(dataset_hash, _scope(record))
        if access.reveal_keys:
            self.gatekeeper.revealed(record, [k.api_key for k in keys])
        return pb.ListDatasetApiKeysResponse(
            api_keys=[dataset_key_message(k, reveal=access.reveal_keys) for k in keys]
        )

    @rpc("GetOrCreateDatasetApiKey")
    def GetOrCreateDatasetApiKey(
        self, request: pb.GetOrCreateDatasetApiKeyRequest, record: CallRecord
    ) -> pb.DatasetApiKey:
        record.resource_hash = request.dataset_hash
        dataset_hash = validation.hash_only(request.dataset_hash, "dataset_hash")
        record.resource_hash = dataset_hash
        intent = KeyIntent.dataset(dataset_hash, f"{dataset_hash} - admin key", ALL_DATASET_SCOPES)
        with self.gatekeeper.mint(record, intent) as minted:
            if request.validate_only:
                self.operations.list_dataset_keys(dataset_hash, _scope(record))
                return pb.DatasetApiKey(
                    dataset_hash=dataset_hash,
                    title=intent.title,
                    scopes=[DATASET_SCOPE_NUMBERS[s] for s in ALL_DATASET_SCOPES],
                )
            key, created = self.operations.get_or_create_dataset_key(dataset_hash, _scope(record))
            minted.key(key.api_key, key.scopes, created=created)
        return dataset_key_message(key)


def _scope(record: CallRecord) -> CallContext:
    assert record.context is not None, "RpcFrame.begin sets the scope"
    return record.context


def _project_numbers(scopes: Iterable[str]) -> list[pb.ApiKeyScope]:
    return [PROJECT_SCOPE_NUMBERS[s] for s in scopes]


__all__ = ["SERVICE_NAME", "Access", "ApiKeyServicer"]
