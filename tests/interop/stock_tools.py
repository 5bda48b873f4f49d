"""Finding and running the stock operator tools (grpcurl, grpc-health-probe) that the interop tests drive."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "encord_gateway.v1.ApiKeyService"


def tool(name: str) -> str:
    """The tool built by tools/install_go_tools.sh (or one on PATH); in CI a missing tool fails."""
    built = ROOT / ".tools" / "bin" / name
    found = str(built) if built.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: run tools/install_go_tools.sh")
        pytest.skip(f"{name} is not built (tools/install_go_tools.sh)")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def grpcurl(
    address: str, method: str, body: dict[str, Any], *, token: str | None, trace: str = ""
) -> subprocess.CompletedProcess[str]:
    """`grpcurl -format-error` with a JSON body; with `trace`, sends that trace id and prints the trailers."""
    argv = [tool("grpcurl"), "-plaintext", "-format-error"]
    if token is not None:
        argv += ["-H", f"authorization: Bearer {token}"]
    if trace:
        argv += ["-H", f"x-cloud-trace-context: {trace}/1;o=1", "-v"]
    return run(*argv, "-d", json.dumps(body), address, f"{SERVICE}/{method}")


def stored_keys(state_file: Path, resource: str) -> list[dict[str, Any]]:
    """The emulator's own rows (its --state SQLite file) for the resource's keys, in creation order."""
    with contextlib.closing(sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT api_key, key_hash, title, scopes FROM api_keys WHERE resource_hash = ? ORDER BY seq",
            (resource,),
        ).fetchall()
    return [{"api_key": r[0], "key_hash": r[1], "title": r[2], "scopes": json.loads(r[3])} for r in rows]
