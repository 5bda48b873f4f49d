"""bench/targets.py: measured values in, `met` out, for every target; a missing value, `met` None."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import targets


def cell(path: str, level: int, *, mode: str = "https", op: str = "read", **values: Any) -> dict[str, Any]:
    return {"mode": mode, "path": path, "op": op, "concurrency": level, "errors": 0, **values}


def verdict(cells: list[dict[str, Any]], starts: str, *, modes: tuple[str, ...] = ("https",)) -> Any:
    """(value, met) of the one check whose name starts with `starts`."""
    found = [c for c in targets.targets(cells, modes, ("read", "write")) if c["name"].startswith(starts)]
    assert len(found) == 1, [c["name"] for c in targets.targets(cells, modes, ("read", "write"))]
    assert set(found[0]) == {"name", "target", "value", "met"}
    return found[0]["value"], found[0]["met"]


@pytest.mark.parametrize(
    ("gateway_us", "empty_us", "want"),
    [
        (800.0, 320.0, (2.5, True)),  # the bound itself is met
        (801.0, 320.0, (2.503, False)),
        (500.0, 400.0, (1.25, True)),
        (None, 320.0, (None, None)),  # the gateway was not measured at 32 in flight
        (800.0, None, (None, None)),  # no grpc-empty (no Go): nothing to compare with
    ],
)
def test_cpu_per_call_against_grpc_empty(gateway_us: Any, empty_us: Any, want: Any) -> None:
    cells = []
    if gateway_us is not None:
        cells.append(cell("gateway-go", 32, gateway_cpu_us_per_call=gateway_us))
    if empty_us is not None:
        cells.append(cell("grpc-empty", 32, gateway_cpu_us_per_call=empty_us))
    assert verdict(cells, "https read: gateway-go CPU per call") == want


@pytest.mark.parametrize(
    ("gateway_cps", "floor_cps", "want"),
    [(600.0, 1000.0, (0.6, True)), (599.0, 1000.0, (0.599, False)), (None, 1000.0, (None, None))],
)
def test_calls_per_second_against_the_same_language_floor(
    gateway_cps: Any, floor_cps: Any, want: Any
) -> None:
    cells = [cell("floor-go", 32, throughput_cps=floor_cps), cell("floor", 32, throughput_cps=1.0)]
    if gateway_cps is not None:
        cells.append(cell("gateway-go", 32, throughput_cps=gateway_cps))
    assert verdict(cells, "https read: gateway-go calls/s / floor-go's @32") == want


@pytest.mark.parametrize(
    ("mode", "gateway_ms", "sdk_ms", "met"),
    [
        ("https", 3.0, 30.0, True),  # 0.1 over HTTPS
        ("https", 3.3, 30.0, False),
        ("http", 2.0, 2.0, True),  # 1.0 over HTTP
        ("http", 2.2, 2.0, False),
    ],
)
def test_latency_against_the_sdk_has_a_bound_per_transport(
    mode: str, gateway_ms: float, sdk_ms: float, met: bool
) -> None:
    cells = [
        cell("gateway-py-plain", 1, mode=mode, p50_ms=gateway_ms),
        cell("sdk", 1, mode=mode, p50_ms=sdk_ms),
    ]
    _, got = verdict(cells, f"{mode} read: gateway-py-plain p50 / sdk's @1", modes=(mode,))
    assert got is met


@pytest.mark.parametrize(
    ("op", "redis_us", "redis_server_us", "memory_us", "want"),
    [
        ("read", 1100.0, 100.0, 1000.0, (1.2, True)),  # the Redis server's CPU counts: 1.1 + 0.1
        ("read", 1100.0, 150.0, 1000.0, (1.25, False)),
        ("write", 1300.0, 100.0, 1000.0, (1.4, True)),  # creates with request ids may cost more
        ("write", 1400.0, 100.0, 1000.0, (1.5, False)),
        ("write", 1300.0, None, 1000.0, (1.3, True)),  # no Redis column: the gateway's CPU alone
        ("read", None, None, 1000.0, (None, None)),
    ],
)
def test_shared_store_against_memory(
    op: str, redis_us: Any, redis_server_us: Any, memory_us: float, want: Any
) -> None:
    cells = [cell("gateway-memory", 8, op=op, gateway_cpu_us_per_call=memory_us)]
    if redis_us is not None:
        cells.append(
            cell(
                "gateway-redis",
                8,
                op=op,
                gateway_cpu_us_per_call=redis_us,
                redis_cpu_us_per_call=redis_server_us,
            )
        )
    assert verdict(cells, f"https {op}: gateway-redis") == want


@pytest.mark.parametrize(
    ("two_us", "one_us", "met"),
    [
        (1000.0, 1000.0, True),
        (1100.0, 1000.0, True),  # 0.909 calls per CPU-second of one's
        (1120.0, 1000.0, False),  # 0.893: two processes spend more per call than one
        (880.0, 1000.0, False),  # 1.136: outside 10 % the other way too (a starved single process)
        (None, 1000.0, None),
    ],
)
def test_processes_scale_within_ten_percent(two_us: Any, one_us: float, met: Any) -> None:
    cells = [cell("gateway-1proc", 32, gateway_cpu_us_per_call=one_us)]
    if two_us is not None:
        cells.append(cell("gateway-2proc", 32, gateway_cpu_us_per_call=two_us))
    _, got = verdict(cells, "https read: gateway-2proc")
    assert got is met


def test_process_cells_of_a_quick_run_are_checked_at_their_own_level() -> None:
    cells = [
        cell("gateway-1proc", 8, gateway_cpu_us_per_call=1000.0),
        cell("gateway-2proc", 8, gateway_cpu_us_per_call=1000.0),
    ]
    assert verdict(cells, "https read: gateway-2proc calls per gateway CPU-second / gateway-1proc's @8") == (
        1.0,
        True,
    )


def test_an_empty_run_reports_every_target_unmeasured_but_errors() -> None:
    checks = targets.targets([], ("http", "https"), ("read", "write"))
    # Per mode and op: CPU, calls/s and p50 for two paths, the store, the processes; then errors per mode.
    assert len(checks) == 2 * (2 * (3 * 2 + 2) + 1)
    assert all(c["met"] is None for c in checks if "errors" not in c["name"])
    assert [c["met"] for c in checks if "errors" in c["name"]] == [True, True]


def test_errors_anywhere_miss_the_errors_target() -> None:
    cells = [cell("floor", 1, mode="http"), {**cell("gateway-redis", 8, mode="http"), "errors": 2}]
    assert verdict(cells, "http: errors", modes=("http",)) == (2, False)


def test_ratios_name_the_pairs_the_docs_speak_of() -> None:
    cells = [
        cell("gateway-py", 1, op="write", p50_ms=4.0, gateway_cpu_us_per_call=2000.0),
        cell("gateway-py-plain", 1, op="write", p50_ms=2.0, gateway_cpu_us_per_call=1000.0),
        cell("gateway-memory", 1, op="write", p50_ms=2.0),
        cell("gateway-redis", 1, op="write", p50_ms=3.0),
        cell("gateway-1proc", 32, op="write", throughput_cps=500.0, gateway_cpu_us_per_call=1000.0),
        cell("gateway-2proc", 32, op="write", throughput_cps=900.0, gateway_cpu_us_per_call=1050.0),
    ]
    got = targets.ratios(cells, ("https",), ("write",))["https"]["write"]
    assert got["request_id/plain p50 @1"] == 2.0
    assert got["request_id/plain gateway CPU us/call @1"] == 2.0
    assert got["redis/memory p50 @1"] == 1.5
    assert got["2proc/1proc calls/s @32"] == 1.8
    assert got["2proc/1proc calls per gateway CPU-second @32"] == 0.952
