"""Decoding the google.rpc.Status that the gateway puts in the trailers."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class Decoded:
    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)
    retry_delay_s: float | None = None
    trailing: dict[str, str] = field(default_factory=dict)


def decode(error: grpc.RpcError) -> Decoded:
    call: grpc.Call = error  # type: ignore[assignment]
    status = rpc_status.from_call(call)
    assert status is not None, f"no google.rpc.Status in the trailers of {call.code()}: {call.details()}"
    decoded = Decoded(call.code(), status.message)
    decoded.trailing = {k: v for k, v in call.trailing_metadata() or () if isinstance(v, str)}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            decoded.reason, decoded.domain, decoded.metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            decoded.violations = {v.field: v.description for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            decoded.retry_delay_s = retry.retry_delay.ToNanoseconds() / 1e9
    return decoded
