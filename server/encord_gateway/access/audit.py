"""The audit trail: one JSON line per call that reached authentication or policy, and its lookup."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from encord_gateway import errors, jsontext
from encord_gateway.context import AuditFacts, CallRecord
from encord_gateway.logs import FIELDS
from encord_gateway.redaction import fingerprint

log = logging.getLogger(__name__)

# Every audit line has "type": "audit", so the trail can share a stream with the JSON log.
LINE_TYPE = "audit"
MIN_PREFIX_HEX = 8
# One encoder for every line (jsontext: json.dumps builds one per call). ASCII only: a title's U+2028
# or U+0085 must not split a record for readers that split lines on Unicode line breaks; JSON readers
# decode the escapes back.
_encode = jsontext.encoder(separators=(",", ":"))
# (second, its "YYYY-MM-DDTHH:MM:SS"): strftime once a second, not once a line. Swapped whole, so a
# thread reads either the old pair or the new one.
_second: tuple[int, str] = (-1, "")


def utc_now(now: float | None = None) -> str:
    global _second
    if now is None:
        now = time.time()
    second = int(now)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int(now % 1 * 1000):03d}Z"


def audit_line(record: CallRecord, facts: AuditFacts) -> dict[str, Any]:
    """The audit record of one call. It names keys by fingerprint only; no field can hold a secret."""
    return {
        "type": LINE_TYPE,
        "time": utc_now(),
        "caller": facts.caller,
        "auth": facts.auth,
        "identity": facts.identity,
        "peer": record.peer,
        "method": record.method,
        "resource_kind": facts.kind,
        "resource_hash": record.resource_hash,
        "title": facts.title,
        "scopes_asked": list(facts.scopes_asked),
        "scopes_granted": list(facts.scopes_granted),
        "outcome": record.code.name,
        "reason": record.reason,
        "detail": facts.detail,
        "trace_id": record.trace_id,
        "fingerprint": facts.fingerprint,
        "fingerprints": list(facts.fingerprints),
        "key_returned": facts.key_returned,
        "created": facts.created,
        "replayed": facts.replayed,
        "validate_only": facts.validate_only,
    }


class AuditTrail:
    """Appends lines to a file (or stdout) under a lock, one unbuffered write each; a CallObserver too."""

    def __init__(self, path: str | None) -> None:
        self.path = path if path not in (None, "", "-") else None
        self._lock = threading.Lock()
        # Group commit: records are numbered as written; one fsync makes every record written before it
        # started durable, so records written while a sync runs share the next one instead of each
        # waiting for a sync of its own (40 us of CPU and some 250 us of disk each, here).
        self._synced = threading.Condition(self._lock)
        self._written = 0
        self._durable = 0
        self._syncing = False
        # Records up to this number were waiting on a file that was replaced and could not be synced.
        self._lost = 0
        self._fd, self._regular = self._open()

    @property
    def target(self) -> str:
        return self.path or "stdout"

    def _open(self) -> tuple[int, bool]:
        """Raises OSError if the file cannot be opened for appending (start-up then refuses)."""
        if self.path is None:
            fd = sys.stdout.fileno()
        else:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return fd, stat.S_ISREG(os.fstat(fd).st_mode)

    def reopen(self) -> None:
        """After log rotation (SIGHUP): new lines go to a fresh file at the same path."""
        if self.path is None:
            return
        fd, regular = self._open()
        with self._lock:
            self._swap(fd, regular)

    def _follow_the_path(self) -> None:
        """A trail file deleted under the gateway (st_nlink 0) is recreated at its path, not written blind.

        Without this, records went to the unlinked inode, readable by nobody, until the next SIGHUP.
        Called with the lock held; an OSError (the directory is gone too) fails the write, closed.
        """
        if self.path is None or not self._regular or os.fstat(self._fd).st_nlink > 0:
            return
        fd, regular = self._open()
        self._swap(fd, regular)
        log.warning(
            "the audit trail file was deleted; recreated it", extra={FIELDS: {"audit_log": self.path}}
        )

    def _swap(self, fd: int, regular: bool) -> None:
        """Moves the trail to `fd`; called with the lock held. The old file is synced before it is closed.

        A record written to the old file may still wait for its sync, which a sync of the new file would
        not cover; and a sync running outside the lock must not have its descriptor closed under it.
        """
        while self._syncing:
            self._synced.wait()
        old, old_regular = self._fd, self._regular
        self._fd, self._regular = fd, regular
        try:
            if old_regular and self._durable < self._written:
                os.fsync(old)
        except OSError as exc:
            # The records still waiting were written to the old file, and no sync will reach it now.
            self._lost = self._written
            log.error(
                "the audit trail's old file could not be synced", extra={FIELDS: {"error": exc.strerror}}
            )
        finally:
            self._durable = self._written
            self._synced.notify_all()
            os.close(old)

    def close(self) -> None:
        if self.path is not None:
            with self._lock:
                while self._syncing:
                    self._synced.wait()
                os.close(self._fd)

    def write(self, line: dict[str, Any], *, durable: bool = False) -> None:
        """One line, written whole or raising OSError; `durable` also waits for the disk (mint records)."""
        data = (_encode(line) + "\n").encode()
        with self._lock:
            self._follow_the_path()
            view = memoryview(data)
            try:
                while view:
                    # os.write, not a buffered file: a failed write must not linger in a buffer
                    # and come out later, glued to another line.
                    view = view[os.write(self._fd, view) :]
            except OSError:
                if len(view) < len(data):
                    with contextlib.suppress(OSError):
                        os.write(self._fd, b"\n")  # end the cut line, so the next one parses
                raise
            self._written += 1
            if durable and self._regular:
                self._wait_durable(self._written)

    def _wait_durable(self, number: int) -> None:
        """Returns once record `number` is on disk, syncing if no running sync covers it; lock held.

        The sync runs outside the lock, so that records keep being written meanwhile. An OSError
        reaches the caller whose sync failed; each record still waiting then tries a sync of its own.
        """
        while self._durable < number or number <= self._lost:
            if number <= self._lost:
                raise OSError(errno.EIO, "the audit file was replaced before this record was synced")
            if self._syncing:
                self._synced.wait()
                continue
            self._syncing, covered, fd = True, self._written, self._fd
            self._lock.release()
            try:
                os.fsync(fd)
            finally:
                self._lock.acquire()
                self._syncing = False
                self._synced.notify_all()
            self._durable = max(self._durable, covered)

    def commit(self, record: CallRecord, facts: AuditFacts) -> None:
        """The durable record of a key about to be returned; AuditUnavailable if it cannot be written."""
        try:
            self.write(audit_line(record, facts), durable=True)
        except OSError as exc:
            log.error(
                "audit record could not be written; the key was withheld from the caller",
                extra={FIELDS: {"error": exc.strerror or type(exc).__name__, "audit_log": self.target,
                                "fingerprint": facts.fingerprint, "caller": facts.caller,
                                "method": record.method, "trace_id": record.trace_id}},
            )  # fmt: skip
            raise errors.AuditUnavailable(
                "the audit trail cannot be written, so no key is returned; try again later"
            ) from None
        facts.written = True

    def call_finished(self, record: CallRecord) -> None:
        """At call end: the line of every call that reached policy and was not already committed."""
        facts = record.audit
        if facts is None or facts.written:
            return
        try:
            self.write(audit_line(record, facts))
        except OSError as exc:
            log.error(
                "audit record could not be written",
                extra={FIELDS: {"error": exc.strerror or type(exc).__name__, "audit_log": self.target,
                                "method": record.method, "trace_id": record.trace_id}},
            )  # fmt: skip
        else:
            facts.written = True


# Lookup ----------------------------------------------------------------------------------------------


class BadQuery(ValueError):
    """The query is neither a key nor a long enough fingerprint prefix."""


def query_prefix(query: str) -> str:
    """A fingerprint prefix (8 to 16 hex digits) as given, else the fingerprint of a full key."""
    text = query.strip()
    if not text:
        raise BadQuery("give a key or a fingerprint prefix of at least 8 hex digits")
    if len(text) <= 16 and all(c in "0123456789abcdefABCDEF" for c in text):
        if len(text) < MIN_PREFIX_HEX:
            raise BadQuery(f"a fingerprint prefix needs at least {MIN_PREFIX_HEX} hex digits")
        return text.lower()
    return fingerprint(text)


def lookup(lines: Iterable[str], prefix: str) -> list[dict[str, Any]]:
    """The audit records, in trail order, of calls that returned a key whose fingerprint has `prefix`."""
    found = []
    for raw in lines:
        if f'"{prefix[:MIN_PREFIX_HEX]}' not in raw:
            continue  # cheap skip: most lines of a large trail are about other keys
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a log line, or a line cut short by a full disk
        if isinstance(line, dict) and line.get("type") == LINE_TYPE and _names(line, prefix):
            found.append(line)
    return found


def _names(line: dict[str, Any], prefix: str) -> bool:
    """Whether the record names a key with this fingerprint prefix: the one minted or one a list revealed."""
    revealed = line.get("fingerprints")
    named = [line.get("fingerprint"), *(revealed if isinstance(revealed, list) else ())]
    return any(isinstance(f, str) and f and f.startswith(prefix) for f in named)
