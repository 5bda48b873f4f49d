"""`make run`'s demo: every operation through a real stack, shown as tables, and both servers stopped."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_calls_every_operation_and_stops_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "encord_gateway.dev.demo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for title in (
        "CreateProjectApiKey",
        "GetOrCreateProjectApiKey",
        "ListProjectApiKeys",
        "CreateDatasetApiKey",
        "ListDatasetApiKeys",
    ):
        assert f"\n{title}" in out
    assert "status 200: key 'Labelling vendor (read-only)' opens a project" in out
    assert out.rstrip().endswith("stopped the gateway and the emulator")
    # Keys are masked in the tables: nothing that looks like a whole Encord key is printed.
    assert not re.search(r"0-[A-Za-z0-9_-]{30,}", out)
    assert len(re.findall(r"\b[0-9a-f]{16}\b", out)) >= 6
