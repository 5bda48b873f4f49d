"""The gateway's error tree; each class names its gRPC code, and one function turns any into a status.

GatewayError
├── InvalidRequest                 INVALID_ARGUMENT   bad input, caught before any upstream call
├── Unauthenticated                UNAUTHENTICATED    no or bad caller credentials
├── PolicyDenied                   PERMISSION_DENIED  the caller's policy forbids it
├── RateLimited                    RESOURCE_EXHAUSTED the caller is over its rate limit
├── AuditUnavailable               UNAVAILABLE        the audit record could not be written
└── UpstreamError                  (anything Encord said, or failed to say)
    ├── EncordError                an Encord error envelope; the class follows its code
    │   ├── EncordInvalidArguments INVALID_ARGUMENT
    │   ├── EncordNotFound         NOT_FOUND
    │   ├── EncordPermissionDenied PERMISSION_DENIED
    │   ├── SigningKeyRejected     FAILED_PRECONDITION
    │   ├── EncordAlreadyExists    ALREADY_EXISTS
    │   └── EncordUnknownCode      UNKNOWN
    ├── UpstreamRateLimited        RESOURCE_EXHAUSTED HTTP 429
    ├── UpstreamUnavailable        UNAVAILABLE        refused/reset connection, HTTP 5xx, not an envelope
    └── UpstreamDeadlineExceeded   DEADLINE_EXCEEDED  the caller's deadline ran out
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "encord-gateway"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its proto field name and why."""

    field: str
    description: str


class GatewayError(Exception):
    """Base of every error the gateway answers with; never carries a secret in its text."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    default_reason: ClassVar[str] = "GATEWAY_ERROR"

    def __init__(self, message: str, *, reason: str | None = None, trace_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.trace_id = trace_id

    def metadata(self) -> dict[str, str]:
        return {"trace_id": self.trace_id} if self.trace_id else {}

    def details(self) -> list[Any]:
        """The google.rpc detail messages to send besides the ErrorInfo."""
        return []

    def to_status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata())
        status = status_pb2.Status(code=self.grpc_code.value[0], message=self.message)
        for detail in (info, *self.details()):
            status.details.add().Pack(detail)
        return rpc_status.to_status(status)


class InvalidRequest(GatewayError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_REQUEST"

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = list(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid request: {summary}")

    def details(self) -> list[Any]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in self.violations
                ]
            )
        ]


class Unauthenticated(GatewayError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PolicyDenied(GatewayError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "POLICY_DENIED"


class RateLimited(GatewayError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: float, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Any]:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(1, int(self.retry_after_s * 1e9)))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class AuditUnavailable(GatewayError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    default_reason = "AUDIT_UNAVAILABLE"


class UpstreamError(GatewayError):
    """Something went wrong talking to Encord."""


class EncordError(UpstreamError):
    """Encord answered with an error envelope: `{"status": n, "response": [CODE], "payload": ...}`."""

    def __init__(self, code: str, message: str, *, trace_id: str = "") -> None:
        super().__init__(message, reason=code, trace_id=trace_id)
        self.encord_code = code


class EncordInvalidArguments(EncordError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class EncordNotFound(EncordError):
    grpc_code = grpc.StatusCode.NOT_FOUND


class EncordPermissionDenied(EncordError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class SigningKeyRejected(EncordError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class EncordAlreadyExists(EncordError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class EncordUnknownCode(EncordError):
    grpc_code = grpc.StatusCode.UNKNOWN


class UpstreamRateLimited(UpstreamError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "UPSTREAM_RATE_LIMITED"


class UpstreamUnavailable(UpstreamError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UPSTREAM_UNAVAILABLE"


class UpstreamDeadlineExceeded(UpstreamError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


# Encord's codes (encord/http/error_utils.py) and the class each becomes; any
# other code is EncordUnknownCode, with the code kept as the reason.
_ENCORD_CODES: dict[str, tuple[type[EncordError], str]] = {
    "INVALID_ARGUMENTS_ERROR": (EncordInvalidArguments, "Encord rejected the request's arguments"),
    "RESOURCE_NOT_FOUND_ERROR": (EncordNotFound, "Encord has no such project or dataset"),
    "AUTHORISATION_ERROR": (EncordPermissionDenied, "the gateway's Encord user may not do this"),
    "OPERATION_NOT_ALLOWED": (EncordPermissionDenied, "Encord does not allow this operation"),
    "AUTHENTICATION_ERROR": (SigningKeyRejected, "Encord refused the gateway's signing key"),
    "SSH_KEY_NOT_FOUND_ERROR": (
        SigningKeyRejected,
        "Encord refused the gateway's signing key: no Encord user holds its public key",
    ),
    "DUPLICATE_SSH_KEY_ERROR": (
        SigningKeyRejected,
        "Encord refused the gateway's signing key: its public key is registered more than once",
    ),
    "RESOURCE_EXISTS_ERROR": (EncordAlreadyExists, "Encord says the resource already exists"),
}


def encord_error(code: str, payload: Any = None, *, trace_id: str = "") -> EncordError:
    """The typed error for an Encord error code; a string payload (Encord's message) is kept."""
    cls, message = _ENCORD_CODES.get(code, (EncordUnknownCode, f"Encord answered {code}"))
    if isinstance(payload, str) and payload.strip():
        message = f"{message}: {payload.strip()[:500]}"
    return cls(code, message, trace_id=trace_id)
