"""GatewayError: a failed call's gRPC code with its decoded google.rpc details.

    Exception
    └── GatewayError      every failed RPC; `.code` is the grpc.StatusCode

The gateway puts a google.rpc.Status in the `grpc-status-details-bin` trailer:
an ErrorInfo (reason, domain, metadata), for bad input a BadRequest, and when
rate limited a RetryInfo. `map_rpc_errors()` is the one place where a
grpc.RpcError becomes a GatewayError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

TRACE_METADATA = "x-cloud-trace-context"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class GatewayError(Exception):
    """A call the gateway (or the channel) failed; the text never holds a key, only what the server said."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_delay: float | None = None,
        trace_id: str = "",
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self.field_violations = tuple(field_violations)
        self.retry_delay = retry_delay
        self.trace_id = trace_id
        super().__init__(self.summary())

    def summary(self) -> str:
        """One line: `CODE (REASON): message`, newlines folded so that it fits a log or a terminal."""
        head = f"{self.code.name} ({self.reason})" if self.reason else self.code.name
        text = " ".join(self.message.split())
        return f"{head}: {text}" if text else head

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> GatewayError:
        """Decodes the status, its details and the trace id that a failed call carries."""
        if not isinstance(error, grpc.Call):
            return cls(grpc.StatusCode.UNKNOWN, str(error))
        code, message = error.code(), error.details() or ""
        trailers = tuple(error.trailing_metadata() or ())
        fields: dict[str, Any] = {"trace_id": _trace_id(trailers)}
        for detail in _details(error):
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                fields.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields["field_violations"] = [
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                ]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                fields["retry_delay"] = retry.retry_delay.ToNanoseconds() / 1e9
        if not fields["trace_id"]:
            fields["trace_id"] = fields.get("metadata", {}).get("trace_id", "")
        return cls(code, message, **fields)


@contextlib.contextmanager
def map_rpc_errors() -> Iterator[None]:
    """Turns a grpc.RpcError raised inside the block into a GatewayError."""
    try:
        yield
    except grpc.RpcError as exc:
        raise GatewayError.from_rpc_error(exc) from exc


def _details(call: grpc.Call) -> Sequence[Any]:
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        # The trailer's code disagrees with the call's: the details are not to be trusted.
        return ()
    return tuple(status.details) if status is not None else ()


def _trace_id(trailers: Sequence[tuple[str, str | bytes]]) -> str:
    """The id part of the gateway's `x-cloud-trace-context: <id>/<span>;o=1` trailer."""
    for key, value in trailers:
        if key == TRACE_METADATA and isinstance(value, str):
            return value.split("/", 1)[0].split(";", 1)[0].strip()
    return ""
