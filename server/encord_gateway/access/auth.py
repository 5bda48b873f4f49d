"""Caller authentication, once, in a server interceptor: certificates and bearer tokens become a Principal."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, cast

import grpc
from encord_gateway_client.v1 import api_keys_pb2 as pb
from google.protobuf.message import DecodeError

from encord_gateway import errors
from encord_gateway.access.inflight import InFlight
from encord_gateway.access.message_deadline import MessageDeadline
from encord_gateway.access.open_services import (
    Handler,
    Interceptor,
    guard_open_service,
    open_service_ceilings,
)
from encord_gateway.access.policy import PRINCIPAL, Policy, PolicyHolder, Principal
from encord_gateway.config import DEFAULTS
from encord_gateway.context import (
    CALLER,
    AuditFacts,
    CallRecord,
    incoming_trace_id,
)

AUTHORIZATION = "authorization"
SERVICE_PREFIX = "/" + pb.DESCRIPTOR.services_by_name["ApiKeyService"].full_name + "/"
_HASH_FIELDS = {"project_hash": "project", "dataset_hash": "dataset"}
# What a refused caller is told. The precise cause goes to the audit trail and the log only: telling a
# stranger "this token is valid but needs mTLS" would confirm that a stolen token works.
_TOLD = {
    "NO_CREDENTIALS": "this gateway needs a client certificate or an 'authorization: Bearer <token>' header",
    "INVALID_CREDENTIALS": "the credentials presented do not identify a caller of this gateway",
}


class AuthFailure(Exception):
    """Authentication failed: `reason` (NO_CREDENTIALS or INVALID_CREDENTIALS) is public, `detail` is not."""

    def __init__(self, reason: str, detail: str, identity: str = "") -> None:
        super().__init__(detail)
        self.reason, self.detail, self.identity = reason, detail, identity


def certificate_identities(auth_context: Mapping[str, Any]) -> tuple[str, ...]:
    """A verified client certificate's identities, best kind first: URI SANs, else DNS SANs, else the CN."""
    if not auth_context.get("x509_pem_cert"):
        return ()
    for prop in ("peer_uri", "peer_dns", "x509_common_name"):
        values = tuple(v.decode(errors="replace") for v in auth_context.get(prop, ()) if v)
        if values:
            return values
    return ()


def authenticate(
    policy: Policy,
    auth_context: Mapping[str, Any],
    metadata: Sequence[tuple[str, Any]],
    *,
    mtls: bool,
) -> Principal:
    """The caller behind the connection's certificate and the call's bearer token; else AuthFailure."""
    # Without mutual TLS no client certificate is requested, so none can be in the context.
    identities = certificate_identities(auth_context) if mtls else ()
    identity = identities[0] if identities else ""
    if policy.open:
        return Principal(identity, None, "mtls", identity) if identities else Principal("anonymous")
    presented = [value for key, value in metadata if key == AUTHORIZATION]
    token = _bearer(presented)
    by_certificate = policy.by_certificate(identities)
    if len(by_certificate) > 1:
        raise AuthFailure("INVALID_CREDENTIALS", "the certificate names more than one caller", identities[0])
    certified = by_certificate[0] if by_certificate else None
    if token is not None:
        match = policy.by_token(token)
        if match is None:
            raise AuthFailure(
                "INVALID_CREDENTIALS", "unknown bearer token", identities[0] if identities else ""
            )
        caller, rule = match
        if rule.require_mtls and not identities:
            raise AuthFailure(
                "INVALID_CREDENTIALS", f"caller {caller.name!r}'s token is valid only with mutual TLS"
            )
        if certified is not None and certified is not caller:
            raise AuthFailure(
                "INVALID_CREDENTIALS",
                f"the certificate is caller {certified.name!r}'s but the token is caller {caller.name!r}'s",
                identity,
            )
        if rule.require_mtls and certified is not caller:
            # Any certificate of the client CA is not enough: it must be one of this caller's own.
            raise AuthFailure(
                "INVALID_CREDENTIALS",
                f"caller {caller.name!r}'s token is valid only with a certificate of caller {caller.name!r}",
                identity,
            )
        return Principal(caller.name, caller, "mtls+token" if identities else "token", identity)
    if certified is not None:
        return Principal(certified.name, certified, "mtls", identity)
    if identities:
        raise AuthFailure(
            "INVALID_CREDENTIALS",
            f"certificate identity {identities[0]!r} is not a configured caller",
            identities[0],
        )
    raise AuthFailure("NO_CREDENTIALS", "no client certificate and no bearer token")


def _bearer(values: list[Any]) -> str | None:
    if not values:
        return None
    value = values[0]
    scheme, _, token = value.partition(" ") if isinstance(value, str) else ("", "", "")
    if len(values) > 1 or scheme.lower() != "bearer" or not token.strip():
        raise AuthFailure("INVALID_CREDENTIALS", "the authorization metadata is not one 'Bearer <token>'")
    return token.strip()


class _Undecodable:
    """Stands in for a request whose bytes do not parse, so that the call can answer INVALID_ARGUMENT."""


_UNDECODABLE = _Undecodable()


def _tolerant(parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The handler's deserializer, answering _UNDECODABLE where gRPC would answer INTERNAL for bad bytes."""
    if parse is None:
        return None

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, ValueError):
            return _UNDECODABLE

    return tolerant


class _WithoutCredentials:
    """The ServicerContext the servicer sees: the same, minus the authorization metadata.

    What the frame calls on every call is written out, not found through __getattr__ (which
    Python runs only after a failed lookup: an AttributeError raised and caught each time).
    """

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def invocation_metadata(self) -> tuple[Any, ...]:
        return tuple(m for m in self._context.invocation_metadata() if m[0] != AUTHORIZATION)

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def peer(self) -> str:
        return self._context.peer()

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata(metadata)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self._context.abort_with_status(status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _first(
    requests: Iterator[Any], context: grpc.ServicerContext, deadline: MessageDeadline | None, method: str
) -> Any:
    """The one request message of a unary call, read only once the call may run, under the deadline."""
    try:
        return deadline.read(requests, context, method) if deadline is not None else next(requests)
    except StopIteration:
        return _UNDECODABLE  # none came: the client closed its side, or the call was cancelled


class AuthInterceptor(Interceptor):
    """Authenticates every ApiKeyService call before its request is read; bounds the open services.

    A sync gRPC server gives each call a worker thread, which then waits for the request message. So
    each unary method is served as a request-streaming handler: the worker authenticates from the
    headers, takes one of the caller's `max_in_flight` slots, and only then reads the message, for at
    most the `deadline`. A stranger's header-only streams are refused at once and hold no worker; a
    caller's are bounded by its slots and the deadline; health and reflection (no credentials) by
    their share of the `workers` (open_services.py) and the deadline.
    """

    def __init__(
        self,
        holder: PolicyHolder,
        *,
        mtls: bool,
        finish: Callable[[CallRecord], None] | None = None,
        trace_ids: Callable[[Sequence[tuple[str, Any]]], str] = incoming_trace_id,
        workers: int = DEFAULTS["workers"],
        deadline: MessageDeadline | None = None,
    ) -> None:
        self._holder = holder
        self._ceilings = open_service_ceilings(workers)
        self._deadline = deadline
        # The frame's: a refused call's trace id is the one its span (if traced) and answer carry.
        self._trace_ids = trace_ids
        self._mtls = mtls
        # The frame's finish(): a refused call gets the same log line and observers (audit) as any other.
        self._finish = finish
        self.in_flight = InFlight()
        # grpc asks for the handler on every call; the guarded one is built once per method.
        self._guarded: dict[str, tuple[Handler, Handler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        full_method = handler_call_details.method
        if handler is None or not full_method.startswith(SERVICE_PREFIX):
            return guard_open_service(
                handler, full_method, self._ceilings, self.in_flight, self._deadline, self._guarded
            )
        built = self._guarded.get(full_method)
        if built is not None and built[0] is handler:
            return built[1]
        wrapped = self._authenticated(full_method, handler)
        self._guarded[full_method] = (handler, wrapped)
        return wrapped

    def _authenticated(self, full_method: str, handler: Handler) -> Handler:
        inner = handler.unary_unary
        if inner is None:
            # Every ApiKeyService method is unary; anything else would slip past the check, so refuse it.
            raise RuntimeError(f"{full_method} is not unary-unary and cannot be authenticated")
        method = full_method[len(SERVICE_PREFIX) :]

        def guarded(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            policy = self._holder.current  # one policy for the whole call, even if a reload lands now
            try:
                # Without mutual TLS there is no certificate to read: the auth context is not built.
                auth_context = context.auth_context() if self._mtls else {}
                principal = authenticate(policy, auth_context, context.invocation_metadata(), mtls=self._mtls)
            except AuthFailure as failure:
                error = errors.REASONS[failure.reason](_TOLD[failure.reason])
                facts = AuditFacts(
                    caller="", auth="none", kind="", identity=failure.identity, detail=failure.detail
                )
                self._refuse(method, None, context, error, facts)
                raise  # not reached: _refuse aborts the call
            with contextlib.ExitStack() as held:
                if principal.rule is not None:
                    try:
                        held.enter_context(
                            self.in_flight.slot(
                                f"caller:{principal.name}", principal.rule.max_in_flight, "this caller"
                            )
                        )
                    except errors.TooManyInFlight as busy:
                        self._refuse(method, None, context, busy, None, principal.name)
                request = _first(requests, context, self._deadline, method)
                if request is _UNDECODABLE and not context.is_active():
                    # Cancelled while it waited (its deadline, or the client): nobody is left to answer.
                    context.abort(grpc.StatusCode.CANCELLED, "no request message")
                if request is _UNDECODABLE:
                    violation = errors.FieldViolation("request", f"is not a valid {method} request message")
                    self._refuse(
                        method, request, context, errors.InvalidRequest([violation]), None, principal.name
                    )
                principal_token, caller_token = PRINCIPAL.set(principal), CALLER.set(principal.name)
                try:
                    return inner(request, cast(grpc.ServicerContext, _WithoutCredentials(context)))
                finally:
                    CALLER.reset(caller_token)
                    PRINCIPAL.reset(principal_token)

        return grpc.stream_unary_rpc_method_handler(
            guarded,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _refuse(
        self,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        error: errors.GatewayError,
        facts: AuditFacts | None,
        caller: str = "",
    ) -> None:
        """Answers `error` without running the servicer; the call gets its log line (and audit record)."""
        trace_id = self._trace_ids(context.invocation_metadata())
        resource_hash = ""
        for field, kind in _HASH_FIELDS.items():
            if hasattr(request, field):
                # Unvalidated input: bounded, so a refused stranger cannot bloat the trail.
                resource_hash = str(getattr(request, field))[:64]
                if facts is not None:
                    facts.kind = kind
        record = CallRecord(
            method=method,
            trace_id=trace_id,
            started=time.monotonic(),
            resource_hash=resource_hash,
            caller=caller,
            peer=context.peer(),
            code=error.grpc_code,
            reason=error.reason,
        )
        if facts is not None:
            record.audit = facts
        if self._finish is not None:
            self._finish(record)
        context.abort_with_status(error.to_status(trace_id))
