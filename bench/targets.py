"""The issue's targets, each a ratio to a path measured in the same run, and the ratios reported beside them.

Reported, never asserted: machines are noisy. Every check is `{name, target, value, met}`; `met` is
None when the run did not measure what the check needs (a quick run has no 32 in flight, say).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

TARGET_CPU_VS_EMPTY = 2.5  # gateway CPU per call / grpc-empty's at 32 in flight, at most
TARGET_THROUGHPUT_VS_FLOOR = 0.6  # gateway calls/s / floor calls/s at 32 in flight, at least
TARGET_LATENCY_VS_SDK = {"https": 0.1, "http": 1.0}  # gateway p50 / SDK p50 at 1 in flight, at most
TARGET_STORE_VS_MEMORY = {"read": 1.2, "write": 1.4}  # redis:// cost per call / memory://'s, at most
TARGET_PROCESSES_SPREAD = 0.10  # calls per gateway CPU-second, 2 processes / 1, within this of 1
LATENCY_LEVEL = 1
THROUGHPUT_LEVEL = 32
STATE_LEVEL = 8
RSS_LEVEL = 128
# The paths the CPU, calls/s and latency targets apply to: the same two calls grpc-empty answers,
# without a request id (gateway-py's creates carry one; what it costs is `request_id/plain`).
TARGET_PATHS = ("gateway-go", "gateway-py-plain")
GATEWAY_PATHS = ("gateway-py", "gateway-py-plain", "gateway-go")
# Each gateway path against the floor whose client is written in the same language (client cost is
# the same on both sides), and against the compiled floor (the limit no gateway can beat).
FLOORS = {
    "gateway-py": ("floor", "floor-go"),
    "gateway-py-plain": ("floor", "floor-go"),
    "gateway-go": ("floor-go", "floor"),
}
# Levels at which the request_id cost is reported (a quick run has only the first).
LEVELS_OF_COST = (1, 8)

Cells = Sequence[dict[str, Any]]


def find(cells: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((c for c in cells if all(c.get(k) == v for k, v in match.items())), None)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else round(a / b, 3)


def _field(cell: dict[str, Any] | None, name: str) -> float | None:
    value = None if cell is None else cell.get(name)
    return None if value is None else float(value)


def store_cost_us(cell: dict[str, Any] | None) -> float | None:
    """Gateway CPU per call plus the Redis server's, if the cell had one: what the store costs in all."""
    gateway = _field(cell, "gateway_cpu_us_per_call")
    if gateway is None:
        return None
    return gateway + (_field(cell, "redis_cpu_us_per_call") or 0.0)


def calls_per_cpu_s(cell: dict[str, Any] | None) -> float | None:
    """Calls per second of gateway CPU (over every process of the gateway)."""
    us = _field(cell, "gateway_cpu_us_per_call")
    return None if us in (None, 0) else 1e6 / us


def at_most(limit: float) -> tuple[str, Callable[[float], bool]]:
    return f"<= {limit:g}", lambda v: v <= limit


def at_least(limit: float) -> tuple[str, Callable[[float], bool]]:
    return f">= {limit:g}", lambda v: v >= limit


def within(spread: float) -> tuple[str, Callable[[float], bool]]:
    low, high = round(1 - spread, 6), round(1 + spread, 6)
    return f"{low:g} to {high:g}", lambda v: low <= v <= high


def check(name: str, bound: tuple[str, Callable[[float], bool]], value: float | None) -> dict[str, Any]:
    text, test = bound
    return {"name": name, "target": text, "value": value, "met": None if value is None else test(value)}


def targets(cells: Cells, modes: Sequence[str], ops: Sequence[str]) -> list[dict[str, Any]]:
    """Every target of the issue, per mode, op and path, measured or not (then `met` is None)."""
    checks: list[dict[str, Any]] = []
    for mode in modes:
        for op in ops:

            def cell(path: str, level: int, op: str = op, mode: str = mode) -> dict[str, Any] | None:
                return find(cells, mode=mode, op=op, path=path, concurrency=level)

            where = f"{mode} {op}"
            empty = cell("grpc-empty", THROUGHPUT_LEVEL)
            for path in TARGET_PATHS:
                at32, at1 = cell(path, THROUGHPUT_LEVEL), cell(path, LATENCY_LEVEL)
                value = ratio(
                    _field(at32, "gateway_cpu_us_per_call"), _field(empty, "gateway_cpu_us_per_call")
                )
                name = f"{where}: {path} CPU per call / grpc-empty's @{THROUGHPUT_LEVEL}"
                checks.append(check(name, at_most(TARGET_CPU_VS_EMPTY), value))
                floor = FLOORS[path][0]
                value = ratio(
                    _field(at32, "throughput_cps"), _field(cell(floor, THROUGHPUT_LEVEL), "throughput_cps")
                )
                name = f"{where}: {path} calls/s / {floor}'s @{THROUGHPUT_LEVEL}"
                checks.append(check(name, at_least(TARGET_THROUGHPUT_VS_FLOOR), value))
                value = ratio(_field(at1, "p50_ms"), _field(cell("sdk", LATENCY_LEVEL), "p50_ms"))
                name = f"{where}: {path} p50 / sdk's @{LATENCY_LEVEL}"
                checks.append(check(name, at_most(TARGET_LATENCY_VS_SDK[mode]), value))
            value = ratio(
                store_cost_us(cell("gateway-redis", STATE_LEVEL)),
                store_cost_us(cell("gateway-memory", STATE_LEVEL)),
            )
            name = f"{where}: gateway-redis CPU per call (with Redis's) / gateway-memory's @{STATE_LEVEL}"
            checks.append(check(name, at_most(TARGET_STORE_VS_MEMORY[op]), value))
            level = _process_level(cells, mode, op)
            value = ratio(
                calls_per_cpu_s(cell("gateway-2proc", level)), calls_per_cpu_s(cell("gateway-1proc", level))
            )
            name = f"{where}: gateway-2proc calls per gateway CPU-second / gateway-1proc's @{level}"
            checks.append(check(name, within(TARGET_PROCESSES_SPREAD), value))
        errors = sum(c["errors"] for c in cells if c["mode"] == mode)
        checks.append(check(f"{mode}: errors, every path and level", ("== 0", lambda v: v == 0), errors))
    return checks


def _process_level(cells: Cells, mode: str, op: str) -> int:
    """32 in flight, or the level the process cells ran at (a quick run's is lower)."""
    levels = [
        c["concurrency"] for c in cells if (c["mode"], c["op"], c["path"]) == (mode, op, "gateway-2proc")
    ]
    return max(levels) if levels else THROUGHPUT_LEVEL


def ratios(cells: Cells, modes: Sequence[str], ops: Sequence[str]) -> dict[str, Any]:
    """Every pair the targets and the docs speak of, per mode and op, whether or not it has a target."""
    out: dict[str, Any] = {}
    for mode in modes:
        for op in ops:
            mine: dict[str, float | None] = {}

            def cell(path: str, level: int, op: str = op, mode: str = mode) -> dict[str, Any] | None:
                return find(cells, mode=mode, op=op, path=path, concurrency=level)

            def put(key: str, a: float | None, b: float | None, mine: dict[str, float | None] = mine) -> None:
                if a is not None and b is not None:
                    mine[key] = ratio(a, b)

            empty = cell("grpc-empty", THROUGHPUT_LEVEL)
            for gateway in GATEWAY_PATHS:
                at1, at32 = cell(gateway, LATENCY_LEVEL), cell(gateway, THROUGHPUT_LEVEL)
                sdk = cell("sdk", LATENCY_LEVEL)
                put(f"{gateway}/sdk p50 @{LATENCY_LEVEL}", _field(at1, "p50_ms"), _field(sdk, "p50_ms"))
                for floor in FLOORS[gateway]:
                    put(
                        f"{gateway}/{floor} calls/s @{THROUGHPUT_LEVEL}",
                        _field(at32, "throughput_cps"),
                        _field(cell(floor, THROUGHPUT_LEVEL), "throughput_cps"),
                    )
                # What the gateway spends per call, over what an empty Python grpcio server spends.
                put(
                    f"{gateway}/grpc-empty CPU us/call @{THROUGHPUT_LEVEL}",
                    _field(at32, "gateway_cpu_us_per_call"),
                    _field(empty, "gateway_cpu_us_per_call"),
                )
                put(
                    f"{gateway}/grpc-empty peak RSS @{RSS_LEVEL}",
                    _field(cell(gateway, RSS_LEVEL), "gateway_peak_rss_mb"),
                    _field(cell("grpc-empty", RSS_LEVEL), "gateway_peak_rss_mb"),
                )
            if op == "write":
                # What exactly-once costs a create: with a request_id (SQLite store) over without.
                with_id, plain = cell("gateway-py", LATENCY_LEVEL), cell("gateway-py-plain", LATENCY_LEVEL)
                put(
                    f"request_id/plain p50 @{LATENCY_LEVEL}",
                    _field(with_id, "p50_ms"),
                    _field(plain, "p50_ms"),
                )
                for level in LEVELS_OF_COST:
                    put(
                        f"request_id/plain gateway CPU us/call @{level}",
                        _field(cell("gateway-py", level), "gateway_cpu_us_per_call"),
                        _field(cell("gateway-py-plain", level), "gateway_cpu_us_per_call"),
                    )
            redis, memory = cell("gateway-redis", LATENCY_LEVEL), cell("gateway-memory", LATENCY_LEVEL)
            put(f"redis/memory p50 @{LATENCY_LEVEL}", _field(redis, "p50_ms"), _field(memory, "p50_ms"))
            redis, memory = cell("gateway-redis", STATE_LEVEL), cell("gateway-memory", STATE_LEVEL)
            put(
                f"redis/memory gateway CPU us/call @{STATE_LEVEL}",
                _field(redis, "gateway_cpu_us_per_call"),
                _field(memory, "gateway_cpu_us_per_call"),
            )
            put(f"redis/memory CPU with Redis's @{STATE_LEVEL}", store_cost_us(redis), store_cost_us(memory))
            level = _process_level(cells, mode, op)
            two, one = cell("gateway-2proc", level), cell("gateway-1proc", level)
            put(f"2proc/1proc calls/s @{level}", _field(two, "throughput_cps"), _field(one, "throughput_cps"))
            put(
                f"2proc/1proc calls per gateway CPU-second @{level}",
                calls_per_cpu_s(two),
                calls_per_cpu_s(one),
            )
            if mine:
                out.setdefault(mode, {})[op] = mine
    return out
