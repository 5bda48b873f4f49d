"""Turns measured cells into percentiles, the table, the ratios, the target checks and the PNG."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from targets import THROUGHPUT_LEVEL, find

MAIN_PATHS = ("sdk", "floor", "floor-go", "gateway-py", "gateway-py-plain", "gateway-go", "grpc-empty")
VARIANT_PATHS = ("gateway-memory", "gateway-redis", "gateway-1proc", "gateway-2proc")
PATH_ORDER = (*MAIN_PATHS, *VARIANT_PATHS)


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


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def table(cells: list[dict[str, Any]], mode: str) -> str:
    """One line per op, path and concurrency, in the order the paths are listed."""
    widths = (-5, -16, 9, 8, 8, 8, 8, 6, 14, 9, 7, 7)
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


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[met]


def markdown(
    cells: list[dict[str, Any]],
    modes: Sequence[str],
    ops: Sequence[str],
    checks: Sequence[dict[str, Any]] = (),
) -> str:
    """The targets, then the tables: latency and calls/s per path, the servers' CPU and RSS, CPU per
    process, and the gateway variants."""
    titles = {"read": "ListProjectApiKeys (10 keys)", "write": "CreateProjectApiKey"}
    main = [c for c in cells if c["path"] in MAIN_PATHS]
    levels = sorted({c["concurrency"] for c in main})
    paths = [p for p in MAIN_PATHS if any(c["path"] == p for c in main)]
    servers = [p for p in ("gateway-py", "gateway-go", "grpc-empty") if p in paths]
    out: list[str] = []
    if checks:
        out += ["**Targets** — ratios to paths of this same run (see docs/performance.md)", ""]
        rows = [[c["name"], c["target"], _fmt(c["value"], ".3g"), _verdict(c["met"])] for c in checks]
        out += _md_table(["target", "bound", "value", "verdict"], rows, right=0)
    for mode in modes:
        for op in ops:
            out += [f"**{titles[op]}, emulator over {mode.upper()}** — p50 / p99 latency, calls/s", ""]
            rows = [
                [
                    str(level),
                    *(_latency_cell(find(cells, mode=mode, op=op, path=p, concurrency=level)) for p in paths),
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
                    _server_cell(find(cells, mode=mode, op=op, path=p, concurrency=level))
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
                c = find(cells, mode=mode, op=op, path=path, concurrency=THROUGHPUT_LEVEL)
                if c is not None and c["throughput_cps"] is not None:
                    calls = f"{c['throughput_cps']:.0f}"
                    rows.append(
                        [op, path, calls, _used(c, "gateway"), _used(c, "emulator"), _used(c, "client")]
                    )
        out += _md_table(["op", "path", "calls/s", "server", "emulator", "client"], rows, right=0)
        variants = [c for c in cells if c["mode"] == mode and c["path"] in VARIANT_PATHS]
        if variants:
            out += [f"**Gateway variants, {mode.upper()}** — one flag apart, pair by pair", ""]
            variants.sort(key=lambda c: (c["op"] != "read", c["concurrency"], PATH_ORDER.index(c["path"])))
            rows = [
                [
                    c["op"],
                    c["path"],
                    str(c["concurrency"]),
                    _fmt(c["p50_ms"]),
                    _fmt(c["throughput_cps"], ".0f"),
                    _fmt(c.get("gateway_cpu_us_per_call"), ".0f"),
                    _fmt(c.get("redis_cpu_us_per_call"), ".0f"),
                    _fmt(c.get("gateway_peak_rss_mb"), ".0f"),
                ]
                for c in variants
            ]
            head = ["op", "path", "in flight", "p50 ms", "calls/s", "gateway µs/call", "redis µs/call"]
            out += _md_table([*head, "gateway RSS MB"], rows, right=0)
    return "\n".join(out)


def console(result: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    """What `make bench` prints: each mode's table, the ratios, the targets, what was skipped."""
    out = []
    for mode, info in result["modes"].items():
        noise = info["other_cpu_util_mean"]
        out += [
            f"\n== emulator over {mode.upper()} (1-min load {info['loadavg_before'][0]:.2f} before; "
            f"other processes used {_fmt(noise)} CPUs on average while cells ran) ==",
            table(cells, mode),
        ]
    out.append("\nratios:")
    for mode, by_op in result["ratios"].items():
        for op, values in by_op.items():
            out += [f"  [{mode:<5}] {op:<5} {name:<34} {value}" for name, value in values.items()]
    out += ["\ntargets (reported, not asserted):", target_lines(result["targets"])]
    if result["skipped"]:
        out.append("\nskipped: " + "; ".join(f"{p}: {why}" for p, why in result["skipped"].items()))
    return "\n".join(out)


def target_lines(checks: list[dict[str, Any]]) -> str:
    lines = []
    for c in checks:
        verdict = _verdict(c["met"])
        value = _fmt(c["value"], ".3g")
        lines.append(f"  {c['name']:<78} {value:>8}  target {c['target']:<10} {verdict}")
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
            for path in MAIN_PATHS:
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
