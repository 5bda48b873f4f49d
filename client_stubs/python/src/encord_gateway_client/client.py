"""GatewayClient: the six RPCs with Python arguments, enum scopes, deadlines and typed errors."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import grpc

from .channel import Metadata, PemSource, create_channel
from .errors import TRACE_METADATA, GatewayError, map_rpc_errors
from .models import DatasetApiKey, ProjectApiKey
from .scopes import DatasetScope, ProjectScope
from .v1 import api_keys_pb2 as pb
from .v1 import api_keys_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 30.0
# A create with a request id is safe to send again: the gateway answers a retry with the same key.
# These are the statuses worth it: the outcome was unknown (UNAVAILABLE) or the first try still runs.
_RETRIED_CREATE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
DEFAULT_CREATE_ATTEMPTS = 4

_Response = TypeVar("_Response")


def connect(
    address: str,
    *,
    token: str | None = None,
    tls: bool = False,
    tls_ca: PemSource | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
    tls_server_name: str | None = None,
    default_timeout: float | None = DEFAULT_TIMEOUT_S,
) -> GatewayClient:
    """A client for the gateway at `address` ("127.0.0.1:50051").

    `token` is sent as `authorization: Bearer <token>`. TLS is on when `tls` is
    true or a CA or client certificate is given; `tls_ca` and the client pair
    are paths or PEM bytes (no `tls_ca`: the system roots). Without TLS a token
    is only sent to a loopback address. `default_timeout` is each call's
    deadline in seconds unless the call gives its own (None: no deadline).
    """
    channel, metadata = create_channel(
        address,
        token=token,
        tls=tls,
        tls_ca=tls_ca,
        client_cert=client_cert,
        client_key=client_key,
        tls_server_name=tls_server_name,
    )
    return GatewayClient(channel, default_timeout=default_timeout, metadata=metadata)


class GatewayClient:
    """The ApiKeyService over one channel, which the client closes when it is closed.

    Every method takes `timeout` (seconds; default: the client's) and
    `trace_id` (sent as `x-cloud-trace-context`, so the gateway's logs, audit
    records and Encord calls carry it), and raises GatewayError on failure.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        default_timeout: float | None = DEFAULT_TIMEOUT_S,
        metadata: Metadata = (),
        create_attempts: int = DEFAULT_CREATE_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if create_attempts < 1:
            raise ValueError("create_attempts must be at least 1")
        self._channel = channel
        self._stub = pb_grpc.ApiKeyServiceStub(channel)
        self._default_timeout = default_timeout
        self._metadata = tuple(metadata)
        self._create_attempts = create_attempts
        self._sleep = sleep

    connect = staticmethod(connect)

    # Projects ---------------------------------------------------------------

    def create_project_api_key(
        self,
        project_hash: str,
        title: str,
        scopes: Iterable[ProjectScope | str],
        *,
        validate_only: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
        trace_id: str | None = None,
    ) -> ProjectApiKey:
        """Mints a project key, exactly once: retried on UNAVAILABLE and ABORTED under one request id.

        `request_id` (a UUID) names the logical create; without one, a new UUID4 is made for this call
        and kept across its retries. Give your own to retry a create from a later call or process.
        """
        request = pb.CreateProjectApiKeyRequest(
            project_hash=project_hash,
            title=title,
            scopes=[ProjectScope(s).to_proto() for s in scopes],
            validate_only=validate_only,
            request_id=request_id or str(uuid.uuid4()),
        )
        answer = self._create(self._stub.CreateProjectApiKey, request, timeout, trace_id)
        return ProjectApiKey.from_proto(answer)

    def list_project_api_keys(
        self, project_hash: str, *, timeout: float | None = None, trace_id: str | None = None
    ) -> list[ProjectApiKey]:
        """Every key of the project, in Encord's order."""
        request = pb.ListProjectApiKeysRequest(project_hash=project_hash)
        answer = self._call(self._stub.ListProjectApiKeys, request, timeout, trace_id)
        return [ProjectApiKey.from_proto(k) for k in answer.api_keys]

    def get_or_create_project_api_key(
        self,
        project_hash: str,
        *,
        validate_only: bool = False,
        timeout: float | None = None,
        trace_id: str | None = None,
    ) -> ProjectApiKey:
        """The project's master key (all scopes): the existing one, else a new one."""
        request = pb.GetOrCreateProjectApiKeyRequest(project_hash=project_hash, validate_only=validate_only)
        answer = self._call(self._stub.GetOrCreateProjectApiKey, request, timeout, trace_id)
        return ProjectApiKey.from_proto(answer)

    # Datasets ---------------------------------------------------------------

    def create_dataset_api_key(
        self,
        dataset_hash: str,
        title: str,
        scopes: Iterable[DatasetScope | str],
        *,
        validate_only: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
        trace_id: str | None = None,
    ) -> DatasetApiKey:
        """Mints a dataset key exactly once, as create_project_api_key does."""
        request = pb.CreateDatasetApiKeyRequest(
            dataset_hash=dataset_hash,
            title=title,
            scopes=[DatasetScope(s).to_proto() for s in scopes],
            validate_only=validate_only,
            request_id=request_id or str(uuid.uuid4()),
        )
        answer = self._create(self._stub.CreateDatasetApiKey, request, timeout, trace_id)
        return DatasetApiKey.from_proto(answer)

    def list_dataset_api_keys(
        self, dataset_hash: str, *, timeout: float | None = None, trace_id: str | None = None
    ) -> list[DatasetApiKey]:
        """Every key of the dataset, in Encord's order."""
        request = pb.ListDatasetApiKeysRequest(dataset_hash=dataset_hash)
        answer = self._call(self._stub.ListDatasetApiKeys, request, timeout, trace_id)
        return [DatasetApiKey.from_proto(k) for k in answer.api_keys]

    def get_or_create_dataset_api_key(
        self,
        dataset_hash: str,
        *,
        validate_only: bool = False,
        timeout: float | None = None,
        trace_id: str | None = None,
    ) -> DatasetApiKey:
        """The dataset's master key (both scopes): the existing one, else a new one."""
        request = pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=dataset_hash, validate_only=validate_only)
        answer = self._call(self._stub.GetOrCreateDatasetApiKey, request, timeout, trace_id)
        return DatasetApiKey.from_proto(answer)

    # Plumbing ---------------------------------------------------------------

    def _create(
        self,
        method: grpc.UnaryUnaryMultiCallable[Any, _Response],
        request: Any,
        timeout: float | None,
        trace_id: str | None,
    ) -> _Response:
        """One logical create: the same request, request id included, until it is answered or time is up."""
        budget = self._default_timeout if timeout is None else timeout
        ends = None if budget is None else time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            left = None if ends is None else ends - time.monotonic()
            try:
                return self._call(method, request, left, trace_id)
            except GatewayError as error:
                if error.code not in _RETRIED_CREATE_CODES or attempt >= self._create_attempts:
                    raise
                # The gateway says when (RetryInfo); else exponential backoff with full jitter.
                pause = error.retry_delay or random.uniform(0, min(2.0, 0.2 * 2 ** (attempt - 1)))
                if ends is not None and time.monotonic() + pause >= ends:
                    raise  # no time left for another attempt: the last answer stands
                self._sleep(pause)

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Any, _Response],
        request: Any,
        timeout: float | None,
        trace_id: str | None,
    ) -> _Response:
        metadata = self._metadata + (((TRACE_METADATA, trace_id),) if trace_id else ())
        with map_rpc_errors():
            return method(
                request,
                timeout=self._default_timeout if timeout is None else timeout,
                metadata=metadata or None,
            )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
