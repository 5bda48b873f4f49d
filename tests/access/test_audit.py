"""The audit trail's writer and its lookup, in process."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import grpc
import pytest
from encord_gateway import errors
from encord_gateway.access.audit import AuditTrail, BadQuery, lookup, query_prefix
from encord_gateway.cli import build_parser
from encord_gateway.cli.audit import run
from encord_gateway.context import AuditFacts, CallRecord

KEY = "0-1ProjectKeyForTheAuditTestsAAAAAAAAAAAAAAAA"
FINGERPRINT = hashlib.sha256(KEY.encode()).hexdigest()[:16]


def minted_record() -> tuple[CallRecord, AuditFacts]:
    rec = CallRecord(
        method="CreateProjectApiKey",
        trace_id="a" * 32,
        started=0.0,
        resource_hash="6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10",
        peer="ipv4:10.0.0.7:5000",
    )
    facts = AuditFacts(
        caller="onboarding",
        auth="token",
        kind="project",
        title="ci key",
        scopes_asked=("label.read",),
        scopes_granted=("label.read",),
        fingerprint=FINGERPRINT,
        key_returned=True,
        created=True,
    )
    rec.audit = facts
    return rec, facts


def test_a_mint_record_holds_every_field_and_no_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(str(path))
    rec, facts = minted_record()
    trail.commit(rec, facts)
    trail.call_finished(rec)  # already committed: not written twice
    trail.close()
    [line] = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["type"] == "audit"
    assert line["time"].endswith("Z")
    assert {
        k: line[k] for k in ("caller", "peer", "method", "resource_hash", "title", "outcome", "reason")
    } == {
        "caller": "onboarding",
        "peer": "ipv4:10.0.0.7:5000",
        "method": "CreateProjectApiKey",
        "resource_hash": "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10",
        "title": "ci key",
        "outcome": "OK",
        "reason": "",
    }
    assert line["scopes_asked"] == line["scopes_granted"] == ["label.read"]
    assert (line["trace_id"], line["fingerprint"], line["created"]) == ("a" * 32, FINGERPRINT, True)
    assert KEY not in path.read_text()
    assert os.stat(path).st_mode & 0o077 == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_mint_that_cannot_be_audited_fails_closed() -> None:
    trail = AuditTrail("/dev/full")
    rec, facts = minted_record()
    with pytest.raises(errors.AuditUnavailable) as failed:
        trail.commit(rec, facts)
    assert failed.value.grpc_code == grpc.StatusCode.UNAVAILABLE
    assert not facts.written
    trail.call_finished(rec)  # the call-end line fails too, quietly: the caller already got UNAVAILABLE
    trail.close()


def test_an_audit_log_that_cannot_be_opened_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # noqa: PT011 - any OSError: start-up turns it into a config error
        AuditTrail(str(tmp_path / "no-such-dir" / "audit.jsonl"))


@pytest.mark.parametrize(
    ("query", "prefix"),
    [
        (KEY, FINGERPRINT),
        (f"  {KEY}\n", FINGERPRINT),
        (FINGERPRINT, FINGERPRINT),
        (FINGERPRINT[:8].upper(), FINGERPRINT[:8]),
    ],
)
def test_a_query_is_a_key_or_a_fingerprint_prefix(query: str, prefix: str) -> None:
    assert query_prefix(query) == prefix


@pytest.mark.parametrize("query", ["", "abc1234", "   "])
def test_a_short_prefix_is_refused(query: str) -> None:
    with pytest.raises(BadQuery):
        query_prefix(query)


def test_lookup_finds_mint_records_among_log_lines() -> None:
    rec, facts = minted_record()
    from encord_gateway.access.audit import audit_line

    mint = json.dumps(audit_line(rec, facts))
    other = json.dumps({**audit_line(rec, facts), "fingerprint": "ffffffffffffffff"})
    log_line = json.dumps({"level": "info", "message": "call", "fingerprint": FINGERPRINT})
    lines = [log_line, "not json " + FINGERPRINT, other, mint]
    assert [x["trace_id"] for x in lookup(lines, FINGERPRINT[:8])] == ["a" * 32]
    assert lookup(lines, "0123456789") == []


def _cli(*argv: str) -> int:
    args = build_parser(["audit", *argv]).parse_args(["audit", *argv])
    return run(args)


def test_the_lookup_command_answers_who_minted_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(str(path))
    rec, facts = minted_record()
    trail.commit(rec, facts)
    trail.close()
    assert _cli("lookup", KEY, "--audit-log", str(path)) == 0
    out = capsys.readouterr().out
    assert "caller onboarding minted project key " + FINGERPRINT in out
    assert "label.read" in out
    assert "a" * 32 in out
    assert KEY not in out
    assert _cli("lookup", FINGERPRINT[:10], "--audit-log", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["caller"] == "onboarding"
    monkeypatch.setenv("ENCORD_GATEWAY_AUDIT_LOG", str(path))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(KEY + "\n"))
    assert _cli("lookup", "-") == 0  # the key from stdin: not in the process list or shell history
    assert FINGERPRINT in capsys.readouterr().out
    assert _cli("lookup", "deadbeefdeadbeef") == 1
    assert _cli("lookup", "abc") == 2
    assert _cli("lookup", KEY, "--audit-log", str(tmp_path / "missing")) == 2


@pytest.mark.parametrize(
    ("now", "want"),
    [
        (1700000000.125, "2023-11-14T22:13:20.125Z"),
        (1700000000.9996, "2023-11-14T22:13:20.999Z"),  # the same second, from the cached prefix
        (1700000001.0, "2023-11-14T22:13:21.000Z"),  # the next second
        (1699999999.5, "2023-11-14T22:13:19.500Z"),  # a clock stepped back is not served the later second
    ],
)
def test_audit_times_are_right_across_the_once_a_second_prefix(now: float, want: str) -> None:
    from encord_gateway.access.audit import utc_now

    assert utc_now(now) == want


def test_a_line_is_written_as_compact_ascii_json(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(str(path))
    line = {"type": "audit", "title": "key\u2028two\u0085lines é", "scopes_granted": ["label.read"]}
    trail.write(line)
    trail.close()
    # One reused encoder, the same bytes json.dumps gave: no line break but the last, ASCII only.
    assert path.read_bytes() == (json.dumps(line, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    assert path.read_bytes().count(b"\n") == 1
