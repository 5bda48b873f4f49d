"""The Encord client: signed JSON calls over pooled keep-alive connections, retries, errors made typed."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import certifi

from encord_gateway import config, errors, jsontext
from encord_gateway.context import CallOutcome, Deadline, trace_header
from encord_gateway.logs import FIELDS
from encord_gateway.upstream import bounded_json, http1, proxies
from encord_gateway.upstream.signing import RequestSigner, SigningKey

log = logging.getLogger(__name__)

USER_PATH = "/public/user"
# HTTP statuses that come from whatever fronts Encord, not from its application: a passing state
# (googleapis' if_transient_error, less 500: Encord's 500 is an unexpected server error, not a passing one).
TRANSIENT_HTTP_STATUSES = frozenset({429, 502, 503, 504})
# The transient set, named once: every failure worth asking again for a call that is safe to repeat
# (a list): no connection, no answer in time, a broken connection, an answer that is not Encord's
# envelope, and the statuses above. A create is repeated only when nothing was sent (UpstreamUnreachable).
TRANSIENT: tuple[type[errors.UpstreamError], ...] = (errors.UpstreamUnavailable, errors.UpstreamRateLimited)
# Below this much time left, no new attempt is started: it could not finish.
MIN_ATTEMPT_S = 0.05
# What an answer may hold (its size is http1.MAX_BODY_BYTES): the deepest Encord sends is a key's
# scope list inside a list inside the envelope (4 levels). A key is about 17 values (counted as the
# `[{,:` before each, in strings too), so 2,000 keys (operations.MAX_KEYS) fit with room to spare, and
# the parse of any answer within the bound costs a few MB at most.
MAX_ANSWER_DEPTH = 16
MAX_ANSWER_VALUES = 100_000
# Encord sends its error code as a list of one; a few more are tolerated, the first one counts.
MAX_ERROR_CODES = 8


def worth_retrying(exc: errors.GatewayError, *, repeatable: bool) -> bool:
    """Whether `exc` may pass: any transient failure for a repeatable call, else only nothing sent."""
    if isinstance(exc, errors.UpstreamUnreachable):
        return True
    return repeatable and isinstance(exc, TRANSIENT)


# json.dumps with Python's defaults, as the SDK encodes (jsontext: the encoder built once, not per call).
_encode = jsontext.encoder()


def encode_body(query_type: str, query_method: str, uid: Any, payload: Any) -> bytes:
    """The exact bytes the SDK signs: json.dumps with Python's defaults, keys in this order."""
    return _encode(
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


class UpstreamSetupError(Exception):
    """The way to Encord cannot be set up (a CA bundle that does not load, an unusable proxy)."""


def verifying_context(location: str) -> ssl.SSLContext:
    """A TLS context that trusts the CA bundle at `location` (a file or a directory of them).

    One context, with the bundle loaded once, serves every connection: loading
    certifi's bundle costs about 30 ms of CPU and 0.5 to 1 MB per context.
    """
    try:
        if os.path.isdir(location):
            return ssl.create_default_context(capath=location)
        return ssl.create_default_context(cafile=location)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise UpstreamSetupError(f"cannot load the CA bundle {location}: {exc}") from exc


def proxy_for(url: str, env: Mapping[str, str]) -> http1.Proxy | None:
    """The proxy `env` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY as captured) names for `url`."""
    chosen = proxies.proxy_url(url, env)
    if not chosen:
        return None
    scheme = url.split(":", 1)[0]
    try:
        return http1.Proxy.of(chosen)
    except ValueError as exc:
        # Not the URL itself in the message: a proxy URL may carry a password.
        raise UpstreamSetupError(f"the {scheme} proxy set in the environment is unusable: {exc}") from exc


class Transport(Protocol):
    """What the calls go out through: http1.Http1Client, or a test's fake.

    `post` sends one request and never repeats it; it raises http1's errors
    (ConnectFailed when nothing was sent), which `call` maps and retries.
    """

    def post(self, headers: Sequence[tuple[str, str]], body: bytes, deadline: float) -> http1.Response: ...

    def close(self) -> None: ...


class EncordClient:
    """Sends signed calls to `{domain}/public/user` and returns the envelope's `response` value.

    `proxy_env` holds the proxy variables as config captured them (Settings.proxy_env): the
    client reads no environment of its own. `transport` replaces the pool (a test's fake).
    """

    def __init__(
        self,
        domain: str,
        key: SigningKey,
        *,
        pool_size: int = config.DEFAULT_UPSTREAM_POOL_SIZE,
        connect_timeout_s: float = config.DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        verify: Literal[True] | str = True,
        sleep: Callable[[float], None] = time.sleep,
        on_attempt: Callable[[UpstreamCall, float, str], None] | None = None,
        transport: Transport | None = None,
        proxy_env: Mapping[str, str] | None = None,
    ) -> None:
        self.url = domain.rstrip("/") + USER_PATH
        self.connect_timeout_s = connect_timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_attempt = on_attempt
        self._signer = RequestSigner(key)
        # What the calls trust, for anything else that reaches the same domain (the readiness probe):
        # the bundle given, else certifi's, never REQUESTS_CA_BUNDLE from the environment.
        self.ca_bundle = verify if isinstance(verify, str) else certifi.where()
        # A CA bundle given is loaded even for an http:// domain (or with a transport given):
        # a broken one is refused at start.
        tls = self.url.startswith("https:")
        context = verifying_context(self.ca_bundle) if tls or isinstance(verify, str) else None
        self._transport: Transport = transport or self._pool(
            domain,
            context if tls else None,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            proxy_env=proxy_env or {},
        )

    def _pool(
        self,
        domain: str,
        context: ssl.SSLContext | None,
        *,
        pool_size: int,
        connect_timeout_s: float,
        proxy_env: Mapping[str, str],
    ) -> http1.Http1Client:
        """The default transport, one bounded pool of keep-alive connections to the domain.

        Connections are reused across calls and threads (the SDK opens a new one for every call).
        The transport never repeats a request; retries are decided here, so that a create is never
        sent twice.
        """
        try:
            return http1.Http1Client(
                self.url,
                ssl_context=context,
                max_idle=pool_size,
                connect_timeout_s=connect_timeout_s,
                proxy=proxy_for(self.url, proxy_env),
            )
        except ValueError as exc:
            raise UpstreamSetupError(f"the Encord domain {domain!r} is unusable: {exc}") from exc

    def close(self) -> None:
        self._transport.close()

    def call(self, call: UpstreamCall) -> Any:
        attempt = 0
        while True:
            attempt += 1
            call.outcome.attempts = attempt
            try:
                return self._attempt(call)
            except TRANSIENT as exc:
                if not worth_retrying(exc, repeatable=call.retryable) or attempt >= self.retry.attempts:
                    raise
                pause = self.retry.backoff(attempt)
                if call.deadline.remaining() - pause < MIN_ATTEMPT_S:
                    raise
                log.debug("retrying %s %s after %s", call.query_type, call.query_method, exc.reason)
                call.outcome.retries += 1
                self._sleep(pause)

    def _attempt(self, call: UpstreamCall) -> Any:
        # What this attempt got, not what an earlier one did.
        call.outcome.http_status, call.outcome.encord_code = 0, ""
        remaining = call.deadline.remaining()
        if remaining < MIN_ATTEMPT_S:
            raise errors.UpstreamDeadlineExceeded("the deadline ran out before Encord answered")
        body = encode_body(call.query_type, call.query_method, call.uid, call.payload)
        headers = self._signer.headers(body, trace_header(call.trace_id))
        started = time.monotonic()
        outcome = "ok"
        try:
            with self._mapped_transport_errors(call):
                response = self._transport.post(headers, body, call.deadline.at)
            return self._unwrap(response.status, response.body, call)
        except errors.GatewayError as exc:
            outcome = exc.reason
            raise
        except Exception:
            outcome = "INTERNAL"  # a bug: the frame answers INTERNAL, and the metrics must not say ok
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
        """The one place where the transport's exceptions become the gateway's."""
        try:
            yield
        except http1.ExchangeTimeout as exc:
            if call.deadline.remaining() <= MIN_ATTEMPT_S:
                raise errors.UpstreamDeadlineExceeded("the deadline ran out before Encord answered") from exc
            raise errors.UpstreamTimeout("Encord did not answer in time") from exc
        except http1.ConnectFailed as exc:
            raise errors.UpstreamUnreachable(
                "cannot reach Encord: no connection could be opened, so nothing was sent"
            ) from exc
        except http1.ConnectionLost as exc:
            raise errors.UpstreamConnectionLost(
                "the connection to Encord broke after the request was sent"
            ) from exc
        except http1.MalformedResponse as exc:
            raise errors.UpstreamBadResponse("Encord's answer was not readable HTTP") from exc

    def _unwrap(self, status: int, content: bytes, call: UpstreamCall) -> Any:
        """Encord's envelope: success is decided by the JSON `status`, never the status line."""
        call.outcome.http_status = status
        # A 429 or a gateway-class 5xx comes from whatever fronts Encord, not from
        # Encord's application: its body, if any, is not an answer to the call.
        if status in TRANSIENT_HTTP_STATUSES:
            if status == 429:
                raise errors.UpstreamRateLimited("Encord is rate limiting the gateway")
            raise errors.UpstreamHttpError(f"Encord answered HTTP {status}")
        try:
            envelope = bounded_json.loads(content, max_depth=MAX_ANSWER_DEPTH, max_values=MAX_ANSWER_VALUES)
        except bounded_json.Unreadable as exc:
            # The reason, never the content: an answer can hold anything, a key included.
            raise errors.UpstreamBadResponse(f"Encord's answer (HTTP {status}) is {exc}") from None
        if not isinstance(envelope, dict) or "status" not in envelope:
            raise errors.UpstreamBadResponse(f"Encord answered HTTP {status} without its JSON envelope")
        code_status = envelope["status"]
        if type(code_status) is not int:  # not a bool, a float (NaN) or a string
            raise errors.UpstreamBadResponse("Encord's envelope has a status that is not a whole number")
        if code_status == 200:
            return envelope.get("response")
        if code_status == 429:
            call.outcome.encord_code = _first_code(envelope.get("response"))
            raise errors.UpstreamRateLimited("Encord is rate limiting the gateway")
        code = _first_code(envelope.get("response"))
        if not code:
            # Not a list of codes: what it is stays out of the message (`{"status": 201, "response":
            # "<a key>"}` must not put a key into an error, a log line or the audit trail).
            raise errors.UpstreamBadResponse(
                f"Encord's envelope has status {code_status} but no list of error codes "
                f"(upper-case identifiers of at most {errors.MAX_ENCORD_CODE_LENGTH} characters)"
            )
        call.outcome.encord_code = code
        raise errors.encord_error(code, envelope.get("payload"))


def _first_code(response: Any) -> str:
    """The first of Encord's codes (`["CODE"]`), or "" when `response` is not a short list of codes."""
    if not isinstance(response, list) or not 1 <= len(response) <= MAX_ERROR_CODES:
        return ""
    if not all(isinstance(code, str) and errors.is_encord_code(code) for code in response):
        return ""
    return str(response[0])
