"""The variant cells' plumbing: a real Redis, a gateway of two processes, short windows; never how fast.

One mode, one level, 1 s windows (in less, a busy machine may answer nothing): it checks that each
pair is measured, that the Redis server's CPU and the CPU of every worker of `--processes 2` are read,
and that the pairs' targets get values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIANT_PATHS = {"gateway-memory", "gateway-redis", "gateway-1proc", "gateway-2proc"}

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--processes 2 needs two CPUs"),
]


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    argv = [sys.executable, str(ROOT / "bench" / "run.py"), "--modes", "http", "--paths", "floor"]
    argv += ["--levels", "8", "--seconds", "1.0", "--warmup", "0.3", "--go", "off", "--out", str(out)]
    finished = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_each_pair_is_measured_for_a_list_and_a_create(variant_run: dict[str, Any]) -> None:
    assert variant_run["config"]["variants"] == ["state", "processes"]
    cells = [c for c in variant_run["results"] if c["path"] in VARIANT_PATHS]
    assert {(c["path"], c["op"], c["concurrency"]) for c in cells} == {
        (p, op, 8) for p in VARIANT_PATHS for op in ("read", "write")
    }
    for c in cells:
        assert c["errors"] == 0, c["error_samples"]
        assert c["calls"] > 0, c
        assert c["gateway_cpu_us_per_call"] > 0, c
    by = {(c["path"], c["op"]): c for c in cells}
    # The Redis server is a process of the store's cost: its CPU is read, and a create uses it.
    assert by[("gateway-redis", "write")]["redis_cpu_s"] > 0
    assert "redis_cpu_s" not in by[("gateway-memory", "write")]
    # Two processes: the supervisor and both workers are summed (and both workers exist).
    assert by[("gateway-2proc", "read")]["gateway_processes"] == 3
    assert "gateway_processes" not in by[("gateway-1proc", "read")]


def test_the_pairs_targets_get_values(variant_run: dict[str, Any]) -> None:
    checks = {c["name"]: c for c in variant_run["targets"]}
    for op in ("read", "write"):
        store = checks[f"http {op}: gateway-redis CPU per call (with Redis's) / gateway-memory's @8"]
        processes = checks[f"http {op}: gateway-2proc calls per gateway CPU-second / gateway-1proc's @8"]
        for check in (store, processes):
            assert check["value"] > 0, check
            assert check["met"] in (True, False), check
    ratios = variant_run["ratios"]["http"]
    assert ratios["write"]["2proc/1proc calls/s @8"] > 0
    assert ratios["read"]["redis/memory gateway CPU us/call @8"] > 0
