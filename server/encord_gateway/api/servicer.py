"""The ApiKeyService servicer: six RPCs, three calls each written once for both kinds; errors: the frame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc

from encord_gateway.access.gatekeeper import Access, Gatekeeper, KeyIntent
from encord_gateway.api import validation
from encord_gateway.api.exactly_once import ExactlyOnce, MintedKey, record_key, request_hash
from encord_gateway.api.frame import RpcFrame, rpc
from encord_gateway.api.validation import Checked
from encord_gateway.context import CallContext, CallRecord
from encord_gateway.resources import DATASET, PROJECT, KeyMessage, KeyRequest, ListMessage, ResourceKind
from encord_gateway.upstream.operations import KeyOperations

# Trailing metadata on a create answered from its request id's record rather than minted by this call.
REPLAYED_METADATA = "encord-gateway-replayed"
Key = TypeVar("Key", bound=MintedKey)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ApiKeyService"].full_name


class ApiKeyServicer(pb_grpc.ApiKeyServiceServicer):
    """Each RPC names its kind; the frame has validated the request; ask the gatekeeper, run, answer."""

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
            wait_s=_context(record).deadline.remaining(),
            list_keys=list_keys,
            mint=mint,
        )
        if outcome.replayed:
            record.trailers.append((REPLAYED_METADATA, "true"))
        return outcome.key, outcome.created, outcome.replayed

    # The three calls, each written once for both kinds --------------------------------------------

    def _create(
        self, kind: ResourceKind[KeyMessage, Any], request: Checked, record: CallRecord
    ) -> KeyMessage:
        asked, context = request.key, _context(record)
        intent = KeyIntent(kind.name, asked.resource_hash, asked.title, asked.scopes)
        with self.gatekeeper.mint(record, intent, validate_only=request.validate_only) as minted:
            if request.validate_only:
                return self._preview(kind, asked, context)
            key, created, replayed = self._create_once(
                record,
                request.request_id,
                intent,
                lambda: self.operations.list_keys(kind, asked.resource_hash, context),
                lambda: self.operations.create_key(kind, asked, context),
            )
            minted.key(key.api_key, key.scopes, created=created, replayed=replayed)
        return kind.message(key)

    def _list(
        self, kind: ResourceKind[Any, ListMessage], request: Checked, record: CallRecord
    ) -> ListMessage:
        resource_hash = request.resource_hash
        access = self.gatekeeper.read(record, KeyIntent(kind.name, resource_hash))
        keys = self.operations.list_keys(kind, resource_hash, _context(record))
        if access.reveal_keys:
            self.gatekeeper.revealed(record, [k.fingerprint for k in keys])
        return kind.listing(keys, reveal=access.reveal_keys)

    def _get_or_create(
        self, kind: ResourceKind[KeyMessage, Any], request: Checked, record: CallRecord
    ) -> KeyMessage:
        master, context = request.key, _context(record)
        intent = KeyIntent(kind.name, master.resource_hash, master.title, master.scopes)
        with self.gatekeeper.mint(record, intent, validate_only=request.validate_only) as minted:
            if request.validate_only:
                return self._preview(kind, master, context)
            key, created = self.operations.get_or_create_key(kind, master.resource_hash, context)
            minted.key(key.api_key, key.scopes, created=created)
        return kind.message(key)

    def _preview(
        self, kind: ResourceKind[KeyMessage, Any], asked: KeyRequest, context: CallContext
    ) -> KeyMessage:
        """validate_only: everything short of minting, the resource's existence on Encord included."""
        self.operations.list_keys(kind, asked.resource_hash, context)
        return kind.preview(asked)

    # The six RPCs ---------------------------------------------------------------------------------

    @rpc("CreateProjectApiKey", validation.create(PROJECT))
    def CreateProjectApiKey(self, request: Checked, record: CallRecord) -> pb.ProjectApiKey:
        return self._create(PROJECT, request, record)

    @rpc("ListProjectApiKeys", validation.listing(PROJECT))
    def ListProjectApiKeys(self, request: Checked, record: CallRecord) -> pb.ListProjectApiKeysResponse:
        return self._list(PROJECT, request, record)

    @rpc("GetOrCreateProjectApiKey", validation.master(PROJECT))
    def GetOrCreateProjectApiKey(self, request: Checked, record: CallRecord) -> pb.ProjectApiKey:
        return self._get_or_create(PROJECT, request, record)

    @rpc("CreateDatasetApiKey", validation.create(DATASET))
    def CreateDatasetApiKey(self, request: Checked, record: CallRecord) -> pb.DatasetApiKey:
        return self._create(DATASET, request, record)

    @rpc("ListDatasetApiKeys", validation.listing(DATASET))
    def ListDatasetApiKeys(self, request: Checked, record: CallRecord) -> pb.ListDatasetApiKeysResponse:
        return self._list(DATASET, request, record)

    @rpc("GetOrCreateDatasetApiKey", validation.master(DATASET))
    def GetOrCreateDatasetApiKey(self, request: Checked, record: CallRecord) -> pb.DatasetApiKey:
        return self._get_or_create(DATASET, request, record)


def _context(record: CallRecord) -> CallContext:
    assert record.context is not None, "RpcFrame.begin sets the context"
    return record.context


__all__ = ["SERVICE_NAME", "Access", "ApiKeyServicer"]
