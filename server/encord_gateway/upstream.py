"""The Encord HTTP client: signed JSON calls over pooled keep-alive connections, errors made typed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import requests.adapters
import requests.utils
from requests.structures import CaseInsensitiveDict
from urllib3.util.ssl_ import create_urllib3_context

from encord_gateway import errors
from encord_gateway.logs import FIELDS
from encord_gateway.signing import TRACE_HEADER, EncordSshAuth, SigningKey

log = logging.getLogger(__name__)

USER_PATH = "/public/user"
# The answers worth asking again for (googleapis' if_transient_error, less 500:
# Encord's 500 is an unexpected server error, not a passing one).
TRANSIENT_HTTP_STATUSES = frozenset({429, 502, 503})
# Below this much time left, no new attempt is started: it could not finish.
MIN_ATTEMPT_S = 0.05


def new_trace_id() -> str:
    return uuid.uuid4().hex


def trace_header(trace_id: str) -> str:
    """Google's `X-Cloud-Trace-Context` form, as the SDK sends it."""
    return f"{trace_id}/1;o=1"


def encode_body(query_type: str, query_method: str, uid: Any, payload: Any) -> bytes:
    """The exact bytes the SDK signs: json.dumps with Python's defaults, keys in this order."""
    return json.dumps(
        {"query_type": query_type, "query_method": query_method, "values": {"uid": uid, "payload": payload}}
    ).encode()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for calls that are safe to repeat."""

    attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return random.uniform(0, ceiling)


@dataclass
class CallOutcome:
    """What one upstream call did, for the call log and metrics."""

    attempts: int = 0
    http_status: int = 0
    encord_code: str = ""
    retries: int = 0


@dataclass(frozen=True)
class Deadline:
    """An absolute point in time (monotonic clock) by which the caller wants its answer."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()


@dataclass
class UpstreamCall:
    """One logical Encord call: what to send, and the context it is sent in."""

    query_type: str
    query_method: str
    uid: Any
    payload: Any
    deadline: Deadline
    trace_id: str
    retryable: bool = False
    outcome: CallOutcome = field(default_factory=CallOutcome)


class _SharedTlsAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with one TLS context, holding the CA bundle, for all of its connections.

    Otherwise urllib3 makes a context for every new connection and loads the bundle
    into it: for certifi's, about 30 ms of CPU and 0.5 to 1 MB each, so a pool of 64
    connections to Encord holds tens of MB of certificates. The shared context is
    made as urllib3 makes its own, and trusts what requests would have loaded.
    """

    def __init__(self, *, verify: bool | str, **kwargs: Any) -> None:
        self._ssl_context = _verifying_context(verify)
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        if self._ssl_context is not None:
            pool_kwargs.setdefault("ssl_context", self._ssl_context)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if self._ssl_context is not None and verify:
            # The shared context holds the bundle already: no loading it again per connection.
            conn.ca_certs = conn.ca_cert_dir = None


def _verifying_context(verify: bool | str) -> ssl.SSLContext | None:
    """A context that trusts `verify` (a bundle file or directory) or requests' default bundle."""
    if not verify:
        return None  # no verification: urllib3's own per-connection context (CERT_NONE) it is
    location = verify if isinstance(verify, str) else requests.adapters.DEFAULT_CA_BUNDLE_PATH
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    try:
        if os.path.isdir(location):
            context.load_verify_locations(capath=location)
        else:
            context.load_verify_locations(cafile=location)
    except OSError:
        return None  # requests reports an unusable bundle on each call, as it always has
    return context


class EncordClient:
    """Sends signed calls to `{domain}/public/user` and returns the envelope's `response` value."""

    def __init__(
        self,
        domain: str,
        key: SigningKey,
        *,
        pool_size: int = 32,
        connect_timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        on_attempt: Callable[[UpstreamCall, float, str], None] | None = None,
    ) -> None:
        self.url = domain.rstrip("/") + USER_PATH
        self.connect_timeout_s = connect_timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_attempt = on_attempt
        self._auth = EncordSshAuth(key)
        self._verify = verify
        # One bounded pool: keep-alive connections are reused across calls and
        # threads (the SDK opens a new connection for every call). Retries are
        # ours, not urllib3's, so that creates are never repeated.
        self._adapter = _SharedTlsAdapter(
            verify=verify, pool_connections=1, pool_maxsize=pool_size, max_retries=0, pool_block=False
        )
        # Every call goes to the same URL, so what requests would work out per call
        # is worked out once: the normalised URL, and the proxies from the
        # environment (HTTPS_PROXY, NO_PROXY), which Session.send looks up on every
        # call by scanning all of os.environ. Calls then go straight to the adapter:
        # no session hooks, cookies or redirects, none of which Encord calls use.
        template = requests.Request("POST", self.url).prepare()
        assert template.url is not None
        self._prepared_url: str = template.url
        self._proxies = requests.utils.resolve_proxies(template, {}, trust_env=True)

    def close(self) -> None:
        self._adapter.close()

    def call(self, call: UpstreamCall) -> Any:
        attempt = 0
        while True:
            attempt += 1
            call.outcome.attempts = attempt
            try:
                return self._attempt(call)
            except (errors.UpstreamUnavailable, errors.UpstreamRateLimited) as exc:
                if not call.retryable or attempt >= self.retry.attempts:
                    raise
                pause = self.retry.backoff(attempt)
                if call.deadline.remaining() - pause < MIN_ATTEMPT_S:
                    raise
                log.debug("retrying %s %s after %s", call.query_type, call.query_method, exc.reason)
                call.outcome.retries += 1
                self._sleep(pause)

    def _attempt(self, call: UpstreamCall) -> Any:
        remaining = call.deadline.remaining()
        if remaining < MIN_ATTEMPT_S:
            raise errors.UpstreamDeadlineExceeded(
                "the deadline ran out before Encord answered", trace_id=call.trace_id
            )
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = self._prepared_url
        request.body = encode_body(call.query_type, call.query_method, call.uid, call.payload)
        request.headers = CaseInsensitiveDict({TRACE_HEADER: trace_header(call.trace_id)})
        request = self._auth(request)
        started = time.monotonic()
        outcome = "ok"
        try:
            with self._mapped_transport_errors(call):
                # requests' timeouts bound each socket operation; the read timeout is
                # what is left of the caller's deadline, so nothing waits past it.
                response = self._adapter.send(
                    request,
                    timeout=(min(self.connect_timeout_s, remaining), remaining),
                    verify=self._verify,
                    proxies=self._proxies,
                )
                # Read the body here, as Session.send would: a connection lost mid-body
                # is a transport error too.
                content = response.content
            return self._unwrap(response.status_code, content, call)
        except errors.GatewayError as exc:
            outcome = exc.reason
            raise
        finally:
            elapsed = time.monotonic() - started
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "upstream attempt",
                    extra={
                        FIELDS: {
                            "query_type": call.query_type,
                            "query_method": call.query_method,
                            "attempt": call.outcome.attempts,
                            "http_status": call.outcome.http_status,
                            "outcome": outcome,
                            "duration_ms": round(elapsed * 1000, 2),
                            "trace_id": call.trace_id,
                        }
                    },
                )
            if self._on_attempt:
                self._on_attempt(call, elapsed, outcome)

    @contextlib.contextmanager
    def _mapped_transport_errors(self, call: UpstreamCall) -> Iterator[None]:
        """The one place where requests' exceptions become the gateway's."""
        try:
            yield
        except requests.Timeout as exc:
            if call.deadline.remaining() <= MIN_ATTEMPT_S:
                raise errors.UpstreamDeadlineExceeded(
                    "the deadline ran out before Encord answered", trace_id=call.trace_id
                ) from exc
            raise errors.UpstreamUnavailable(
                "Encord did not answer in time", reason="UPSTREAM_TIMEOUT", trace_id=call.trace_id
            ) from exc
        except requests.ConnectionError as exc:
            raise errors.UpstreamUnavailable(
                "cannot reach Encord: the connection was refused or dropped",
                reason="UPSTREAM_CONNECTION_ERROR",
                trace_id=call.trace_id,
            ) from exc
        except requests.RequestException as exc:
            raise errors.UpstreamUnavailable(
                f"the request to Encord failed ({type(exc).__name__})", trace_id=call.trace_id
            ) from exc

    def _unwrap(self, status: int, content: bytes, call: UpstreamCall) -> Any:
        """Encord's envelope: success is decided by the JSON `status`, never the status line."""
        call.outcome.http_status = status
        # A 429 or a gateway-class 5xx comes from whatever fronts Encord, not from
        # Encord's application: its body, if any, is not an answer to the call.
        if status == 429:
            raise errors.UpstreamRateLimited("Encord is rate limiting the gateway", trace_id=call.trace_id)
        if status in (502, 503, 504):
            raise errors.UpstreamUnavailable(
                f"Encord answered HTTP {status}", reason="UPSTREAM_HTTP_ERROR", trace_id=call.trace_id
            )
        try:
            # json.loads detects UTF-8/16/32 from the bytes, as Response.json() does.
            envelope = json.loads(content)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "status" not in envelope:
            raise errors.UpstreamUnavailable(
                f"Encord answered HTTP {status} without its JSON envelope",
                reason="UPSTREAM_BAD_RESPONSE",
                trace_id=call.trace_id,
            )
        if envelope["status"] == 200:
            return envelope.get("response")
        code = _error_code(envelope.get("response"))
        call.outcome.encord_code = code or "UNKNOWN_ERROR"
        if envelope["status"] == 429:
            raise errors.UpstreamRateLimited("Encord is rate limiting the gateway", trace_id=call.trace_id)
        raise errors.encord_error(call.outcome.encord_code, envelope.get("payload"), trace_id=call.trace_id)


def _error_code(response: Any) -> str:
    """Encord sends its code as a one-element list; be lenient about a bare string."""
    if isinstance(response, list) and len(response) == 1 and isinstance(response[0], str):
        return response[0]
    if isinstance(response, str):
        return response
    return ""
