"""The gateway's error tree: one class per reason, each naming its gRPC code; the tree is the mapping table.

GatewayError
├── InvalidRequest                   INVALID_ARGUMENT    INVALID_REQUEST
├── Unauthenticated                  UNAUTHENTICATED     UNAUTHENTICATED
│   ├── NoCredentials                                    NO_CREDENTIALS
│   └── InvalidCredentials                               INVALID_CREDENTIALS
├── PolicyDenied                     PERMISSION_DENIED   POLICY_DENIED
│   ├── MethodNotAllowed                                 METHOD_NOT_ALLOWED_FOR_CALLER
│   ├── ResourceNotAllowed                               RESOURCE_NOT_ALLOWED
│   ├── ScopeAboveCeiling                                SCOPE_ABOVE_CEILING
│   └── ExistingKeyNotRevealed                           EXISTING_KEY_NOT_REVEALED
├── RateLimited                      RESOURCE_EXHAUSTED  RATE_LIMITED
├── TooManyInFlight                  RESOURCE_EXHAUSTED  TOO_MANY_IN_FLIGHT
├── AuditUnavailable                 UNAVAILABLE         AUDIT_UNAVAILABLE
├── StateUnavailable                 UNAVAILABLE         STATE_UNAVAILABLE
├── RequestIdReused                  INVALID_ARGUMENT    REQUEST_ID_REUSED
├── RequestInProgress                ABORTED             REQUEST_IN_PROGRESS (with RetryInfo)
├── ReplayedKeyGone                  FAILED_PRECONDITION REPLAYED_KEY_GONE
├── ReconcileAmbiguous               FAILED_PRECONDITION RECONCILE_AMBIGUOUS
├── Internal                         INTERNAL            INTERNAL
└── UpstreamError
    ├── EncordError                                      (Encord's code)
    │   ├── EncordInvalidArguments   INVALID_ARGUMENT    INVALID_ARGUMENTS_ERROR
    │   ├── EncordNotFound           NOT_FOUND           RESOURCE_NOT_FOUND_ERROR
    │   ├── EncordPermissionDenied   PERMISSION_DENIED   AUTHORISATION_ERROR
    │   │   └── EncordOperationNotAllowed                OPERATION_NOT_ALLOWED
    │   ├── SigningKeyRejected       FAILED_PRECONDITION AUTHENTICATION_ERROR
    │   │   ├── SshKeyNotFound                           SSH_KEY_NOT_FOUND_ERROR
    │   │   └── DuplicateSshKey                          DUPLICATE_SSH_KEY_ERROR
    │   ├── EncordAlreadyExists      ALREADY_EXISTS      RESOURCE_EXISTS_ERROR
    │   └── EncordUnknownCode        UNKNOWN             (any other code)
    │       ├── EncordMethodNotAllowed                   METHOD_NOT_ALLOWED_ERROR
    │       └── EncordUnknownError                       UNKNOWN_ERROR
    ├── UpstreamRateLimited          RESOURCE_EXHAUSTED  UPSTREAM_RATE_LIMITED
    ├── UpstreamUnavailable          UNAVAILABLE         UPSTREAM_UNAVAILABLE
    │   ├── UpstreamUnreachable                          UPSTREAM_UNREACHABLE (nothing sent)
    │   ├── UpstreamTimeout                              UPSTREAM_TIMEOUT
    │   ├── UpstreamConnectionLost                       UPSTREAM_CONNECTION_ERROR
    │   ├── UpstreamBadResponse                          UPSTREAM_BAD_RESPONSE
    │   └── UpstreamHttpError                            UPSTREAM_HTTP_ERROR
    └── UpstreamDeadlineExceeded     DEADLINE_EXCEEDED   DEADLINE_EXCEEDED
        └── LockTimeout                                  (waited for another create of the resource)

A subclass that declares `reason` is registered in REASONS; metrics, retries and the docs tests read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from encord_gateway.context import TRACE_METADATA, trace_header

DOMAIN = "encord-gateway"
# Every reason the gateway can answer with, and the class that carries it.
REASONS: dict[str, type[GatewayError]] = {}
# Encord's codes and the class each becomes; any other code is EncordUnknownCode, with the code as reason.
ENCORD_CODES: dict[str, type[EncordError]] = {}


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its proto field name and why."""

    field: str
    description: str


class _Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


class _GrpcStatus(_Status, grpc.Status):
    """A grpc.Status for abort_with_status: code, details and trailing metadata."""


class GatewayError(Exception):
    """Base of every error the gateway answers with; never carries a secret in its text."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    reason: str = "GATEWAY_ERROR"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "reason" in cls.__dict__:
            taken = REASONS.setdefault(cls.reason, cls)
            if taken is not cls:
                raise TypeError(
                    f"reason {cls.reason} is declared by both {taken.__name__} and {cls.__name__}"
                )

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.extra_metadata = dict(metadata)

    def details(self) -> list[Any]:
        """The google.rpc detail messages to send besides the ErrorInfo."""
        return []

    def to_status(self, trace_id: str = "") -> grpc.Status:
        """The status the caller gets: ErrorInfo (reason, domain, the trace id), details, the trace header."""
        metadata = {"trace_id": trace_id, **self.extra_metadata} if trace_id else dict(self.extra_metadata)
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=metadata)
        status = status_pb2.Status(code=self.grpc_code.value[0], message=self.message)
        for detail in (info, *self.details()):
            status.details.add().Pack(detail)
        built = rpc_status.to_status(status)
        trailers = tuple(built.trailing_metadata)
        if trace_id:
            trailers = (*trailers, (TRACE_METADATA, trace_header(trace_id)))
        return _GrpcStatus(built.code, built.details, trailers)


class InvalidRequest(GatewayError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"

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
    reason = "UNAUTHENTICATED"


class NoCredentials(Unauthenticated):
    reason = "NO_CREDENTIALS"


class InvalidCredentials(Unauthenticated):
    reason = "INVALID_CREDENTIALS"


class PolicyDenied(GatewayError):
    """PERMISSION_DENIED by the caller's rule; the ErrorInfo names the caller and the rule's particulars."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    reason = "POLICY_DENIED"


class MethodNotAllowed(PolicyDenied):
    reason = "METHOD_NOT_ALLOWED_FOR_CALLER"


class ResourceNotAllowed(PolicyDenied):
    reason = "RESOURCE_NOT_ALLOWED"


class ScopeAboveCeiling(PolicyDenied):
    reason = "SCOPE_ABOVE_CEILING"


class ExistingKeyNotRevealed(PolicyDenied):
    """Get-or-create found a master key, and this caller may not see existing keys (reveal_keys off)."""

    reason = "EXISTING_KEY_NOT_REVEALED"


class RateLimited(GatewayError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Any]:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(1, int(self.retry_after_s * 1e9)))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class TooManyInFlight(GatewayError):
    """The caller (or the open health and reflection services) already runs as many calls as allowed."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "TOO_MANY_IN_FLIGHT"


class AuditUnavailable(GatewayError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "AUDIT_UNAVAILABLE"


class Internal(GatewayError):
    grpc_code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"


class UpstreamError(GatewayError):
    """Something went wrong talking to Encord."""


class EncordError(UpstreamError):
    """Encord answered with an error envelope: `{"status": n, "response": [CODE], "payload": ...}`."""

    # What the caller is told; Encord's own message, if any, follows it.
    summary: ClassVar[str] = "Encord answered an error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "reason" in cls.__dict__:
            ENCORD_CODES[cls.reason] = cls

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.encord_code = code
        self.reason = code


class EncordInvalidArguments(EncordError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENTS_ERROR"
    summary = "Encord rejected the request's arguments"


class EncordNotFound(EncordError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    reason = "RESOURCE_NOT_FOUND_ERROR"
    summary = "Encord has no such project or dataset"


class EncordPermissionDenied(EncordError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    reason = "AUTHORISATION_ERROR"
    summary = "the gateway's Encord user may not do this"


class EncordOperationNotAllowed(EncordPermissionDenied):
    reason = "OPERATION_NOT_ALLOWED"
    summary = "Encord does not allow this operation"


class SigningKeyRejected(EncordError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "AUTHENTICATION_ERROR"
    summary = "Encord refused the gateway's signing key"


class SshKeyNotFound(SigningKeyRejected):
    reason = "SSH_KEY_NOT_FOUND_ERROR"
    summary = "Encord refused the gateway's signing key: no Encord user holds its public key"


class DuplicateSshKey(SigningKeyRejected):
    reason = "DUPLICATE_SSH_KEY_ERROR"
    summary = "Encord refused the gateway's signing key: its public key is registered more than once"


class EncordAlreadyExists(EncordError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    reason = "RESOURCE_EXISTS_ERROR"
    summary = "Encord says the resource already exists"


class EncordUnknownCode(EncordError):
    grpc_code = grpc.StatusCode.UNKNOWN


class EncordMethodNotAllowed(EncordUnknownCode):
    reason = "METHOD_NOT_ALLOWED_ERROR"
    summary = "Encord answered METHOD_NOT_ALLOWED_ERROR"


class EncordUnknownError(EncordUnknownCode):
    reason = "UNKNOWN_ERROR"
    summary = "Encord answered UNKNOWN_ERROR"


class UpstreamRateLimited(UpstreamError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "UPSTREAM_RATE_LIMITED"


class UpstreamUnavailable(UpstreamError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "UPSTREAM_UNAVAILABLE"


class UpstreamUnreachable(UpstreamUnavailable):
    """No connection could be opened, so nothing was sent: safe to try again for any call, even a create."""

    reason = "UPSTREAM_UNREACHABLE"


class UpstreamTimeout(UpstreamUnavailable):
    reason = "UPSTREAM_TIMEOUT"


class UpstreamConnectionLost(UpstreamUnavailable):
    reason = "UPSTREAM_CONNECTION_ERROR"


class UpstreamBadResponse(UpstreamUnavailable):
    reason = "UPSTREAM_BAD_RESPONSE"


class UpstreamHttpError(UpstreamUnavailable):
    reason = "UPSTREAM_HTTP_ERROR"


class UpstreamDeadlineExceeded(UpstreamError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


# The state store and exactly-once creates -------------------------------------------------------------


class StateUnavailable(GatewayError):
    """The store cannot be reached: calls that need its promise fail closed, nothing is sent to Encord."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "STATE_UNAVAILABLE"


class LockTimeout(UpstreamDeadlineExceeded):
    """The deadline ran out waiting for another call's hold on the same resource."""


class RequestIdReused(GatewayError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "REQUEST_ID_REUSED"


class RequestInProgress(GatewayError):
    grpc_code = grpc.StatusCode.ABORTED
    reason = "REQUEST_IN_PROGRESS"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Any]:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(1, int(self.retry_after_s * 1e9)))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class ReplayedKeyGone(GatewayError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "REPLAYED_KEY_GONE"


class ReconcileAmbiguous(GatewayError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "RECONCILE_AMBIGUOUS"


# Encord's codes are upper-case identifiers (RESOURCE_NOT_FOUND_ERROR); one becomes ErrorInfo.reason, a
# log field and an audit field, so anything else, or anything longer, is not taken for one.
MAX_ENCORD_CODE_LENGTH = 64
# Encord's message (an error's string payload) is kept up to this many characters.
MAX_ENCORD_MESSAGE_LENGTH = 500


def is_encord_code(code: str) -> bool:
    """Whether `code` looks like one of Encord's: [A-Z][A-Z0-9_]*, at most MAX_ENCORD_CODE_LENGTH long."""
    return (
        0 < len(code) <= MAX_ENCORD_CODE_LENGTH
        and code.isascii()
        and code[0].isalpha()
        and code.isupper()
        and code.replace("_", "").isalnum()
    )


def encord_error(code: str, payload: Any = None) -> EncordError:
    """The typed error for an Encord error code; a string payload (Encord's message) is kept, printable."""
    if not is_encord_code(code):
        raise ValueError("not an Encord error code")  # the client checks codes first: a bug if seen
    cls = ENCORD_CODES.get(code, EncordUnknownCode)
    message = cls.summary if cls is not EncordUnknownCode else f"Encord answered {code}"
    if isinstance(payload, str) and payload.strip():
        # Line breaks, other controls, bidi overrides and lone surrogates (which no status can carry)
        # become "?": the message goes to the caller as the status's text.
        text = payload.strip()[:MAX_ENCORD_MESSAGE_LENGTH]
        message = f"{message}: " + "".join(c if c.isprintable() else "?" for c in text)
    return cls(code, message)


def known_reasons() -> Mapping[str, type[GatewayError]]:
    """Every registered reason and its class (a read-only view of REASONS)."""
    return dict(REASONS)
