"""`bench/run.py --quick` runs every path over HTTP and HTTPS and writes results in the documented shape.

It checks that the benchmark works, never how fast anything is: machines are noisy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The Go paths need `go` and its module cache.
ALWAYS_MEASURED = {"sdk", "floor", "gateway-py", "gateway-py-plain"}
GO_PATHS = {"floor-go", "gateway-go", "grpc-empty"}
SERVER_PATHS = {"gateway-py", "gateway-py-plain", "gateway-go", "grpc-empty"}  # CPU and RSS measured
CELL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "mode": str,
    "path": str,
    "op": str,
    "concurrency": int,
    "calls": int,
    "errors": int,
    "error_samples": list,
    "p50_ms": (float, type(None)),
    "p90_ms": (float, type(None)),
    "p99_ms": (float, type(None)),
    "throughput_cps": (float, type(None)),
    "gateway_cpu_us_per_call": (float, type(None)),
    "gateway_peak_rss_mb": (float, type(None)),
    "emulator_cpu_us_per_call": (float, type(None)),
    "client_cpu_us_per_call": (float, type(None)),
    "other_cpu_util": (float, type(None)),
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    # 1 s windows, not --quick's 0.4 s: on a busy machine a TLS call at 1 in flight may end none in less.
    argv = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--seconds", "1.0"]
    finished = subprocess.run(
        [*argv, "--variants", "none", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(out.read_text()), finished.stdout, out


def test_every_cell_is_measured_and_has_every_field(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    result, _, _ = quick_run
    config = result["config"]
    assert config["quick"] is True
    assert set(config["modes"]) == {"http", "https"}
    assert set(config["ops"]) == {"read", "write"}
    assert config["levels"] == [1, 8]
    measured = set(config["paths"])
    assert measured >= ALWAYS_MEASURED
    assert measured | set(result["skipped"]) == ALWAYS_MEASURED | GO_PATHS

    cells = result["results"]
    modes, ops = config["modes"], config["ops"]
    expected = {(m, p, o, c) for m in modes for p in measured for o in ops for c in (1, 8)}
    assert {(c["mode"], c["path"], c["op"], c["concurrency"]) for c in cells} == expected
    for cell in cells:
        for name, kind in CELL_FIELDS.items():
            assert isinstance(cell[name], kind), (name, cell)
        if cell["path"] not in SERVER_PATHS:
            # The gateway idles while the other paths are measured: no numbers of its own there.
            assert cell["gateway_cpu_us_per_call"] is None, cell
            assert cell["gateway_peak_rss_mb"] is None, cell
        else:
            assert cell["gateway_cpu_us_per_call"] is not None, cell  # measured for the server it calls
        assert cell["errors"] == 0, cell["error_samples"]
    for mode in config["modes"]:
        for path in measured:
            assert sum(c["calls"] for c in cells if (c["mode"], c["path"]) == (mode, path)) > 0, (mode, path)


def test_ratios_targets_and_machine_are_reported(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    result, _, out = quick_run
    assert result["schema"] == 1
    assert result["config"]["encord_sdk"] == "0.1.145"
    machine = result["machine"]
    assert machine["cpus"] >= 1
    assert len(machine["loadavg_start"]) == 3
    for mode in ("http", "https"):
        assert len(result["modes"][mode]["loadavg_before"]) == 3
        ratios = result["ratios"][mode]
        for op in ("read", "write"):
            assert "gateway-py/sdk p50 @1" in ratios[op]
        # What a request_id costs a create, against the same create without one, in the same run.
        assert ratios["write"]["request_id/plain p50 @1"] > 0
    for check in result["targets"]:
        assert set(check) == {"name", "target", "value", "met"}
        assert check["met"] in (True, False, None)
        if "@32" in check["name"]:
            assert check["met"] is None, check  # --quick has no 32 in flight
    latency = [c for c in result["targets"] if "p50 / sdk's @1" in c["name"]]
    assert latency
    # Measured for every path that ran; a Go path skipped (no cached Go modules: --quick never downloads)
    # has no value, and says so.
    for check in latency:
        path = check["name"].split(": ", 1)[1].split(" p50 ")[0]
        assert (check["met"] is None) == (path in result["skipped"]), check
    assert {c["name"] for c in result["targets"] if "errors" in c["name"]} == {
        "http: errors, every path and level",
        "https: errors, every path and level",
    }
    # latest.md lists the targets, each with its verdict.
    tables = out.with_suffix(".md").read_text()
    assert "**Targets**" in tables
    assert all(c["name"] in tables for c in result["targets"])


def test_table_markdown_and_chart(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    result, stdout, out = quick_run
    assert "== emulator over HTTP" in stdout
    assert "== emulator over HTTPS" in stdout
    assert "gateway-py" in stdout
    # The README's tables, next to the JSON: one latency row per level and path column per measured path.
    tables = out.with_suffix(".md").read_text()
    for mode in ("HTTP", "HTTPS"):
        assert f"**ListProjectApiKeys (10 keys), emulator over {mode}**" in tables
        assert f"**CreateProjectApiKey, emulator over {mode}**" in tables
    header = next(line for line in tables.splitlines() if line.startswith("| in flight | sdk"))
    assert header.strip("| ").split(" | ")[1:] == [p for p in result["config"]["paths"]]
    gateway_py = [c for c in result["results"] if c["path"] == "gateway-py" and c["mode"] == "https"]
    assert any(f"{c['throughput_cps']:.0f}/s" in tables for c in gateway_py)
    if result["png"] is not None:  # drawn when matplotlib is installed
        assert result["png"] == "latest.png"  # next to the JSON
        assert (out.parent / result["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
