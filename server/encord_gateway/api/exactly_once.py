"""Exactly-once creates: a request id's record in the state store, replays, and reconciling lost outcomes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from encord_gateway import errors
from encord_gateway.logs import FIELDS
from encord_gateway.redaction import fingerprint

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 24 * 3600.0
DEFAULT_RECONCILE_AFTER_S = 5.0
# What `on_event` hears: a finished create replayed; a reconciliation after a lost answer that adopted the
# one new key, sent the create again (none had landed) or found several; a create refused because its id
# was reused for another request, or is still in progress or settling; the state store failing a create.
EVENTS = ("replayed", "adopted", "resent", "ambiguous", "reused", "in_progress", "store_error")
# The refusals that end a create, by the event they are reported as.
_REFUSALS: tuple[tuple[type[errors.GatewayError], str], ...] = (
    (errors.RequestIdReused, "reused"),
    (errors.RequestInProgress, "in_progress"),
    (errors.StateUnavailable, "store_error"),
)


class MintedKey(Protocol):
    """What the operations return for a key: enough to match it against a listing."""

    @property
    def api_key(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...


Key = TypeVar("Key", bound=MintedKey)


# Failures after which no key can exist: the retry may run afresh, so the record is forgotten.
NO_KEY_MADE: tuple[type[errors.GatewayError], ...] = (errors.UpstreamUnreachable, errors.EncordError)


@dataclass(frozen=True)
class CreateOutcome(Generic[Key]):
    key: Key
    created: bool
    replayed: bool


def request_hash(kind: str, resource_hash: str, title: str, scopes: Sequence[str]) -> str:
    """What makes two creates the same request: the resource, the trimmed title, the set of scopes."""
    material = "\x1f".join((kind, resource_hash, title, *sorted(set(scopes))))
    return hashlib.sha256(material.encode()).hexdigest()


def record_key(caller: str, method: str, request_id: str) -> str:
    """A request id is scoped to (caller, method, id); the caller's name is hashed to keep keys short."""
    return f"rid:{hashlib.sha256(caller.encode()).hexdigest()[:16]}:{method}:{request_id}"


def _same_key(key: MintedKey, title: str, scopes: Sequence[str]) -> bool:
    return key.title.strip() == title and set(key.scopes) == set(scopes)


class ExactlyOnce:
    """Runs a create under a request id so that retries of it mint at most one key."""

    def __init__(
        self,
        store: Any,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        reconcile_after_s: float = DEFAULT_RECONCILE_AFTER_S,
        lock_lease_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.reconcile_after_s = reconcile_after_s
        self.lock_lease_s = lock_lease_s
        self._clock = clock
        self._on_event = on_event

    def _event(self, name: str) -> None:
        if self._on_event is not None:
            self._on_event(name)

    @contextlib.contextmanager
    def _reporting_refusals(self) -> Iterator[None]:
        try:
            yield
        except errors.GatewayError as exc:
            for kind, name in _REFUSALS:
                if isinstance(exc, kind):
                    self._event(name)
            raise

    def create(
        self,
        *,
        key: str,
        fingerprint_of_request: str,
        lock_name: str,
        title: str,
        scopes: Sequence[str],
        wait_s: float,
        list_keys: Callable[[], list[Key]],
        mint: Callable[[], Key],
    ) -> CreateOutcome[Key]:
        with self._reporting_refusals():
            claim = self.store.claim(key, fingerprint_of_request, self.ttl_s)
            record = claim.record
            if not claim.won and record.request_hash != fingerprint_of_request:
                raise errors.RequestIdReused(
                    "this request_id was used for another request (resource, title or scopes); use a new id"
                )
            if not claim.won and record.state == "done":
                return CreateOutcome(self._replay(record, list_keys), created=False, replayed=True)
            if not claim.won:
                self._refuse_unsettled(record)
            # Creates for one resource never run upstream at once (across processes too), so that a listing
            # tells this call's key from another's.
            with contextlib.ExitStack() as held:
                try:
                    held.enter_context(self.store.lock(lock_name, self.lock_lease_s, max(0.0, wait_s)))
                except errors.GatewayError:
                    if claim.won:
                        # Nothing was sent; unless another attempt took the record over meanwhile.
                        self.store.forget(key, claim.record.updated_at)
                    raise
                return self._run(claim, key, title, scopes, list_keys, mint)

    def _run(
        self,
        claim: Any,
        key: str,
        title: str,
        scopes: Sequence[str],
        list_keys: Callable[[], list[Key]],
        mint: Callable[[], Key],
    ) -> CreateOutcome[Key]:
        # Under the lock, read the record again: whoever held the lock before may have finished it, lost
        # its answer again, or taken it over from this very call while it waited.
        current = self.store.get(key)
        if current is None:
            # Forgotten meanwhile (an attempt failed before any key could exist): claim it afresh.
            claim = self.store.claim(key, claim.record.request_hash, self.ttl_s)
            if not claim.won:
                raise errors.RequestInProgress(
                    "a call with this request_id is in progress", retry_after_s=0.5
                )
            current = claim.record
        elif current.state == "done":
            return CreateOutcome(self._replay(current, list_keys), created=False, replayed=True)
        elif not (claim.won and current.updated_at == claim.record.updated_at):
            # Another attempt's record: take it over only once it has settled, and only if nobody else
            # took it first.
            self._refuse_unsettled(current)
            if not self.store.reclaim(key, current.updated_at):
                raise errors.RequestInProgress(
                    "a call with this request_id is in progress", retry_after_s=0.5
                )
            if current.state == "sent":
                adopted = self._reconcile(key, current, title, scopes, list_keys)
                if adopted is not None:
                    return CreateOutcome(adopted, created=True, replayed=True)
        return CreateOutcome(self._send(key, title, scopes, list_keys, mint), created=True, replayed=False)

    def _refuse_unsettled(self, record: Any) -> None:
        """Another attempt's record is left alone until `reconcile_after` has passed since it last moved."""
        settled = self._clock() - record.updated_at
        if settled < self.reconcile_after_s:
            wait = self.reconcile_after_s - settled
            raise errors.RequestInProgress(
                f"a call with this request_id is in progress or just lost its answer; retry in {wait:.1f}s",
                retry_after_s=wait,
            )

    def _send(
        self,
        key: str,
        title: str,
        scopes: Sequence[str],
        list_keys: Callable[[], list[Key]],
        mint: Callable[[], Key],
    ) -> Key:
        try:
            baseline = tuple(fingerprint(k.api_key) for k in list_keys() if _same_key(k, title, scopes))
        except errors.GatewayError:
            self.store.forget(key)  # nothing was sent: the retry runs afresh
            raise
        self.store.mark_sent(key, baseline)
        try:
            minted = mint()
        except NO_KEY_MADE:
            self.store.forget(key)
            raise
        except BaseException:
            # The outcome is unknown: the record stays "sent", and the settle window starts now, when
            # the answer was lost, so that a request still travelling to Encord can land first.
            self.store.mark_sent(key, baseline)
            raise
        self.store.complete(key, fingerprint(minted.api_key))
        return minted

    def _reconcile(
        self, key: str, record: Any, title: str, scopes: Sequence[str], list_keys: Callable[[], list[Key]]
    ) -> Key | None:
        """After a lost outcome: the one new key with this title and scopes, or None if none landed."""
        baseline = set(record.baseline)
        new = [
            k for k in list_keys() if _same_key(k, title, scopes) and fingerprint(k.api_key) not in baseline
        ]
        outcome = "adopted" if len(new) == 1 else ("resent" if not new else "ambiguous")
        log.info("reconciled", extra={FIELDS: {"outcome": outcome, "candidates": len(new)}})
        self._event(outcome)
        if len(new) > 1:
            names = ",".join(sorted(fingerprint(k.api_key) for k in new))
            raise errors.ReconcileAmbiguous(
                f"{len(new)} keys with this title and scopes appeared since the lost attempt "
                f"(fingerprints {names}); none is returned",
                fingerprints=names,
            )
        if new:
            self.store.complete(key, fingerprint(new[0].api_key))
            return new[0]
        return None

    def _replay(self, record: Any, list_keys: Callable[[], list[Key]]) -> Key:
        for candidate in list_keys():
            if fingerprint(candidate.api_key) == record.result_fingerprint:
                self._event("replayed")
                return candidate
        raise errors.ReplayedKeyGone(
            f"the key this request_id created (fingerprint {record.result_fingerprint}) is no longer listed",
            fingerprint=record.result_fingerprint,
        )
