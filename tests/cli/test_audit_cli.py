"""`encord-gateway audit lookup`: where it searches, from --audit-log, else $ENCORD_GATEWAY_AUDIT_LOG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from encord_gateway.cli import build_parser
from encord_gateway.cli.audit import AUDIT_LOG_ENV, audit_logs, run

FINGERPRINT = "0123456789abcdef"


def _args(*argv: str):
    return build_parser(["audit", *argv]).parse_args(["audit", *argv])


def test_the_variable_is_the_one_serve_writes_its_audit_log_to() -> None:
    assert AUDIT_LOG_ENV == "ENCORD_GATEWAY_AUDIT_LOG"


@pytest.mark.parametrize(
    ("flags", "env", "want"),
    [
        ([], {}, []),
        ([], {AUDIT_LOG_ENV: ""}, []),  # an empty variable counts as unset
        ([], {AUDIT_LOG_ENV: "from-env.jsonl"}, ["from-env.jsonl"]),
        (["--audit-log", "a.jsonl"], {}, ["a.jsonl"]),
        (["--audit-log", "a.jsonl"], {AUDIT_LOG_ENV: "from-env.jsonl"}, ["a.jsonl"]),  # the flag wins
        (["--audit-log", "a.jsonl", "--audit-log", "b.jsonl"], {AUDIT_LOG_ENV: "e"}, ["a.jsonl", "b.jsonl"]),
    ],
)
def test_the_flag_beats_the_variable(flags: list[str], env: dict[str, str], want: list[str]) -> None:
    assert audit_logs(_args("lookup", FINGERPRINT, *flags), env) == want


def _trail(path: Path) -> Path:
    path.write_text(json.dumps({"type": "audit", "fingerprint": FINGERPRINT, "created": True}) + "\n")
    return path


def test_the_command_searches_the_log_the_variable_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(AUDIT_LOG_ENV, str(_trail(tmp_path / "audit.jsonl")))
    assert run(_args("lookup", FINGERPRINT[:8])) == 0
    assert f"minted  key {FINGERPRINT}" in capsys.readouterr().out


def test_the_command_searches_the_flags_log_over_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(AUDIT_LOG_ENV, str(tmp_path / "missing.jsonl"))  # unreadable: exit 2 if searched
    assert run(_args("lookup", FINGERPRINT[:8], "--audit-log", str(_trail(tmp_path / "audit.jsonl")))) == 0
    assert FINGERPRINT in capsys.readouterr().out


def test_without_a_log_the_command_says_how_to_name_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(AUDIT_LOG_ENV, raising=False)
    assert run(_args("lookup", FINGERPRINT[:8])) == 2
    assert f"give --audit-log FILE (or set {AUDIT_LOG_ENV})" in capsys.readouterr().err


def test_a_title_with_line_or_bidi_controls_prints_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A trail written before titles were checked, or edited by hand, may hold them raw.
    trail = tmp_path / "audit.jsonl"
    record = {"type": "audit", "fingerprint": FINGERPRINT, "created": True, "title": "a\u2028b\u202ec"}
    trail.write_text(json.dumps(record, ensure_ascii=False) + "\n")
    monkeypatch.delenv(AUDIT_LOG_ENV, raising=False)
    for extra in ([], ["--json"]):
        assert run(_args("lookup", FINGERPRINT[:8], "--audit-log", str(trail), *extra)) == 0
        out = capsys.readouterr().out
        assert out.isascii(), out
        assert "u2028" in out
        assert "u202e" in out
