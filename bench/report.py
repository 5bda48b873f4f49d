"""Turns measured cells into percentiles, the table, the ratios, the target checks and the PNG."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# The targets, for a 2-core machine. Reported, never asserted: machines are noisy.
TARGET_LATENCY_VS_SDK = 1.0  # gateway p50 / SDK p50 at 1 in flight, at most
TARGET_THROUGHPUT_VS_FLOOR = 0.70  # gateway calls/s / floor calls/s at 32 in flight, at least
TARGET_CPU_US_PER_CALL = 300.0  # gateway CPU per call, at most
TARGET_PEAK_RSS_MB = 100.0  # gateway peak RSS at 128 in flight, at most
LATENCY_LEVEL = 1
THROUGHPUT_LEVEL = 32
RSS_LEVEL = 128
GATEWAY_PATHS = ("gateway-py", "gateway-py-plain", "gateway-go")
# Each gateway path against the floor whose client is written in the same language (client cost is
# the same on both sides), and against the compiled floor (the limit no gateway can beat).
FLOORS = {
    "gateway-py": ("floor", "floor-go"),
    "gateway-py-plain": ("floor", "floor-go"),
    "gateway-go": ("floor-go", "floor"),
}
PATH_ORDER = ("sdk", "floor", "floor-go", "gateway-py", "gateway-py-plain", "gateway-go", "grpc-empty")


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summarize(done: dict[str, Any]) -> dict[str, Any]:
    """Latency percentiles in milliseconds, calls per second and errors of one cell."""
    latencies = sorted(done["latencies_us"])
    ms = [v / 1000 for v in latencies]
    window = float(done["window_s"])

    def p(q: float) -> float | None:
        value = percentile(ms, q)
        return None if value is None else round(value, 3)

    return {
        "calls": len(latencies),
        "errors": int(done["errors"]),
        "error_samples": list(done.get("error_samples") or []),
        "p50_ms": p(50),
        "p90_ms": p(90),
        "p99_ms": p(99),
        "max_ms": round(ms[-1], 3) if ms else None,
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else None,
        "throughput_cps": round(int(done["completed_in_window"]) / window, 1) if window > 0 else None,
    }


# Levels at which the request_id cost is reported (a quick run has only the first).
LEVELS_OF_COST = (1, 8)


def _find(cells: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((c for c in cells if all(c.get(k) == v for k, v in match.items())), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else round(a / b, 3)


def ratios(cells: list[dict[str, Any]], modes: Sequence[str], ops: Sequence[str]) -> dict[str, Any]:
    """gateway/sdk p50 latency at 1 in flight, gateway/floor throughput at 32 in flight, per mode and op."""
    out: dict[str, Any] = {}
    for mode in modes:
        for op in ops:
            for gateway in GATEWAY_PATHS:
                at1 = _find(cells, mode=mode, op=op, path=gateway, concurrency=LATENCY_LEVEL)
                sdk = _find(cells, mode=mode, op=op, path="sdk", concurrency=LATENCY_LEVEL)
                if at1 and sdk:
                    key = f"{gateway}/sdk p50 @{LATENCY_LEVEL}"
                    out.setdefault(mode, {}).setdefault(op, {})[key] = _ratio(at1["p50_ms"], sdk["p50_ms"])
                at32 = _find(cells, mode=mode, op=op, path=gateway, concurrency=THROUGHPUT_LEVEL)
                for floor in FLOORS[gateway]:
                    base = _find(cells, mode=mode, op=op, path=floor, concurrency=THROUGHPUT_LEVEL)
                    if at32 and base:
                        key = f"{gateway}/{floor} calls/s @{THROUGHPUT_LEVEL}"
                        out.setdefault(mode, {}).setdefault(op, {})[key] = _ratio(
                            at32["throughput_cps"], base["throughput_cps"]
                        )
                # What the gateway spends per call, over what an empty Python grpcio server spends.
                empty = _find(cells, mode=mode, op=op, path="grpc-empty", concurrency=THROUGHPUT_LEVEL)
                if at32 and empty:
                    key = f"{gateway}/grpc-empty CPU us/call @{THROUGHPUT_LEVEL}"
                    out.setdefault(mode, {}).setdefault(op, {})[key] = _ratio(
                        at32.get("gateway_cpu_us_per_call"), empty.get("gateway_cpu_us_per_call")
                    )
            # What exactly-once costs a create: with a request_id (SQLite store) over without, same run.
            with_id = {
                c: _find(cells, mode=mode, op=op, path="gateway-py", concurrency=c) for c in LEVELS_OF_COST
            }
            plain = {
                c: _find(cells, mode=mode, op=op, path="gateway-py-plain", concurrency=c)
                for c in LEVELS_OF_COST
            }
            id_at1, plain_at1 = with_id[LATENCY_LEVEL], plain[LATENCY_LEVEL]
            if op == "write" and id_at1 and plain_at1:
                ratios_of = out.setdefault(mode, {}).setdefault(op, {})
                ratios_of[f"request_id/plain p50 @{LATENCY_LEVEL}"] = _ratio(
                    id_at1["p50_ms"], plain_at1["p50_ms"]
                )
                for level in LEVELS_OF_COST:
                    a, b = with_id[level], plain[level]
                    if a and b:
                        ratios_of[f"request_id/plain gateway CPU us/call @{level}"] = _ratio(
                            a.get("gateway_cpu_us_per_call"), b.get("gateway_cpu_us_per_call")
                        )
    return out


def targets(cells: list[dict[str, Any]], modes: Sequence[str], ops: Sequence[str]) -> list[dict[str, Any]]:
    """Each target of the issue, per mode, op and gateway path: the measured value and whether it is met."""
    checks: list[dict[str, Any]] = []

    def check(mode: str, name: str, target: str, value: float | None, met: bool | None) -> None:
        checks.append({"mode": mode, "name": name, "target": target, "value": value, "met": met})

    for mode in modes:
        for gateway in GATEWAY_PATHS:
            if not _find(cells, mode=mode, path=gateway):
                continue
            for op in ops:
                at1 = _find(cells, mode=mode, op=op, path=gateway, concurrency=LATENCY_LEVEL)
                sdk = _find(cells, mode=mode, op=op, path="sdk", concurrency=LATENCY_LEVEL)
                if at1 and sdk:
                    value = _ratio(at1["p50_ms"], sdk["p50_ms"])
                    met = None if value is None else value <= TARGET_LATENCY_VS_SDK
                    name = f"{op}: {gateway} p50 / sdk p50 @{LATENCY_LEVEL}"
                    check(mode, name, f"<= {TARGET_LATENCY_VS_SDK}", value, met)
                at32 = _find(cells, mode=mode, op=op, path=gateway, concurrency=THROUGHPUT_LEVEL)
                floor = FLOORS[gateway][0]
                base = _find(cells, mode=mode, op=op, path=floor, concurrency=THROUGHPUT_LEVEL)
                if at32 and base:
                    value = _ratio(at32["throughput_cps"], base["throughput_cps"])
                    met = None if value is None else value >= TARGET_THROUGHPUT_VS_FLOOR
                    name = f"{op}: {gateway} / {floor} calls/s @{THROUGHPUT_LEVEL}"
                    check(mode, name, f">= {TARGET_THROUGHPUT_VS_FLOOR}", value, met)
                if at32 and at32.get("gateway_cpu_us_per_call") is not None:
                    value = at32["gateway_cpu_us_per_call"]
                    name = f"{op}: {gateway} gateway CPU us/call @{THROUGHPUT_LEVEL}"
                    check(
                        mode, name, f"<= {TARGET_CPU_US_PER_CALL:g}", value, value <= TARGET_CPU_US_PER_CALL
                    )
            at128 = [
                c for c in cells if (c["mode"], c["path"], c["concurrency"]) == (mode, gateway, RSS_LEVEL)
            ]
            peaks = [c["gateway_peak_rss_mb"] for c in at128 if c.get("gateway_peak_rss_mb") is not None]
            if peaks:
                name = f"{gateway} gateway peak RSS MB @{RSS_LEVEL}"
                check(mode, name, f"<= {TARGET_PEAK_RSS_MB:g}", max(peaks), max(peaks) <= TARGET_PEAK_RSS_MB)
        errors = sum(c["errors"] for c in cells if c["mode"] == mode)
        check(mode, "errors, every path and level", "== 0", errors, errors == 0)
    return checks


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def table(cells: list[dict[str, Any]], mode: str) -> str:
    """One line per op, path and concurrency, in the order the paths are listed."""
    widths = (-5, -10, 9, 8, 8, 8, 8, 6, 14, 9, 7, 7)
    names: tuple[str, ...] = ("op", "path", "in flight", "p50 ms", "p90 ms", "p99 ms", "calls/s", "errors")
    names += ("gw cpu us/call", "gw rss MB", "emu cpu", "other")

    def row(values: Sequence[Any]) -> str:
        return " ".join(f"{v:<{-w}}" if w < 0 else f"{v:>{w}}" for v, w in zip(values, widths, strict=True))

    head = row(names)
    lines = [head, "-" * len(head)]
    rows = [c for c in cells if c["mode"] == mode]
    rows.sort(key=lambda c: (c["op"] != "read", PATH_ORDER.index(c["path"]), c["concurrency"]))
    previous = None
    for c in rows:
        if previous is not None and (c["op"], c["path"]) != previous:
            lines.append("")
        previous = (c["op"], c["path"])
        emu = c.get("emulator_cpu_util")
        lines.append(
            row(
                (
                    c["op"],
                    c["path"],
                    c["concurrency"],
                    _fmt(c["p50_ms"]),
                    _fmt(c["p90_ms"]),
                    _fmt(c["p99_ms"]),
                    _fmt(c["throughput_cps"], ".0f"),
                    c["errors"],
                    _fmt(c.get("gateway_cpu_us_per_call"), ".0f"),
                    _fmt(c.get("gateway_peak_rss_mb"), ".1f"),
                    "-" if emu is None else format(emu, ".0%"),
                    _fmt(c.get("other_cpu_util"), ".2f"),
                )
            )
        )
    return "\n".join(lines)


def _latency_cell(c: dict[str, Any] | None) -> str:
    if c is None or c["p50_ms"] is None:
        return "-"
    return f"{c['p50_ms']:.1f} / {c['p99_ms']:.0f} ms, {c['throughput_cps']:.0f}/s"


def _server_cell(c: dict[str, Any] | None) -> str:
    if c is None or c.get("gateway_cpu_us_per_call") is None:
        return "-"
    return f"{c['gateway_cpu_us_per_call']:.0f} µs, {c['gateway_peak_rss_mb']:.0f} MB"


def _used(c: dict[str, Any], name: str) -> str:
    us, util = c.get(f"{name}_cpu_us_per_call"), c.get(f"{name}_cpu_util")
    return "-" if us is None or util is None else f"{us:.0f} µs ({util:.0%})"


def _md_table(head: Sequence[str], rows: Iterable[Sequence[str]], right: int = 1) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * right + "---|" * (len(head) - right)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def markdown(cells: list[dict[str, Any]], modes: Sequence[str], ops: Sequence[str]) -> str:
    """The README's tables: latency and calls/s per path, the servers' CPU and RSS, CPU per process."""
    titles = {"read": "ListProjectApiKeys (10 keys)", "write": "CreateProjectApiKey"}
    levels = sorted({c["concurrency"] for c in cells})
    paths = [p for p in PATH_ORDER if any(c["path"] == p for c in cells)]
    servers = [p for p in ("gateway-py", "gateway-go", "grpc-empty") if p in paths]
    out: list[str] = []
    for mode in modes:
        for op in ops:
            out += [f"**{titles[op]}, emulator over {mode.upper()}** — p50 / p99 latency, calls/s", ""]
            rows = [
                [
                    str(level),
                    *(
                        _latency_cell(_find(cells, mode=mode, op=op, path=p, concurrency=level))
                        for p in paths
                    ),
                ]
                for level in levels
            ]
            out += _md_table(["in flight", *paths], rows)
        out += [f"**Servers, emulator over {mode.upper()}** — CPU per call and peak RSS", ""]
        columns = [(path, op) for op in ops for path in servers]
        rows = [
            [
                str(level),
                *(
                    _server_cell(_find(cells, mode=mode, op=op, path=p, concurrency=level))
                    for p, op in columns
                ),
            ]
            for level in levels
        ]
        out += _md_table(["in flight", *(f"{path} {op}" for path, op in columns)], rows)
        out += [
            f"**CPU per call by process, {THROUGHPUT_LEVEL} in flight, {mode.upper()}** (share of a CPU)",
            "",
        ]
        rows = []
        for op in ops:
            for path in paths:
                c = _find(cells, mode=mode, op=op, path=path, concurrency=THROUGHPUT_LEVEL)
                if c is not None and c["throughput_cps"] is not None:
                    calls = f"{c['throughput_cps']:.0f}"
                    rows.append(
                        [op, path, calls, _used(c, "gateway"), _used(c, "emulator"), _used(c, "client")]
                    )
        out += _md_table(["op", "path", "calls/s", "server", "emulator", "client"], rows, right=0)
    return "\n".join(out)


def target_lines(checks: list[dict[str, Any]]) -> str:
    lines = []
    for c in checks:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
        value = _fmt(c["value"], ".3g")
        lines.append(f"  [{c['mode']:<5}] {c['name']:<48} {value:>8}  target {c['target']:<8} {verdict}")
    return "\n".join(lines)


def draw(cells: list[dict[str, Any]], modes: Sequence[str], ops: Sequence[str], png: Path) -> str | None:
    """p50 (solid) and p99 (dashed) latency versus calls in flight, one line per path; None if drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib); no PNG drawn"
    figure, axes = plt.subplots(
        len(modes), len(ops), figsize=(6 * len(ops), 4.2 * len(modes)), squeeze=False, constrained_layout=True
    )
    colours = {
        "sdk": "tab:red",
        "floor": "tab:gray",
        "floor-go": "black",
        "gateway-py": "tab:blue",
        "gateway-py-plain": "tab:cyan",
        "gateway-go": "tab:green",
        "grpc-empty": "tab:olive",
    }
    for row, mode in enumerate(modes):
        for col, op in enumerate(ops):
            ax = axes[row][col]
            for path in PATH_ORDER:
                mine = sorted(
                    (c for c in cells if c["mode"] == mode and c["op"] == op and c["path"] == path),
                    key=lambda c: c["concurrency"],
                )
                if not mine:
                    continue
                xs = [c["concurrency"] for c in mine]
                colour = colours[path]
                ax.plot(xs, [c["p50_ms"] for c in mine], marker="o", color=colour, label=f"{path} p50")
                p99 = [c["p99_ms"] for c in mine]
                ax.plot(xs, p99, linestyle="--", color=colour, alpha=0.5, label=f"{path} p99")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("calls in flight")
            ax.set_ylabel("latency (ms)")
            title = "ListProjectApiKeys (10 keys)" if op == "read" else "CreateProjectApiKey"
            ax.set_title(f"{title}, emulator over {mode.upper()}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)
    return None
