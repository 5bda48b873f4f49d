"""The audit trail: one JSON line per call that reached authentication or policy, and its lookup."""

from __future__ import annotations

import contextlib
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
            old, self._fd, self._regular = self._fd, fd, regular
        os.close(old)

    def _follow_the_path(self) -> None:
        """A trail file deleted under the gateway (st_nlink 0) is recreated at its path, not written blind.

        Without this, records went to the unlinked inode, readable by nobody, until the next SIGHUP.
        Called with the lock held; an OSError (the directory is gone too) fails the write, closed.
        """
        if self.path is None or not self._regular or os.fstat(self._fd).st_nlink > 0:
            return
        fd, regular = self._open()
        os.close(self._fd)
        self._fd, self._regular = fd, regular
        log.warning(
            "the audit trail file was deleted; recreated it", extra={FIELDS: {"audit_log": self.path}}
        )

    def close(self) -> None:
        if self.path is not None:
            with self._lock:
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
            if durable and self._regular:
                os.fsync(self._fd)

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
