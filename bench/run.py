"""`make bench`: the gateway side by side with the Encord SDK and the raw floor, on one emulator per run.

For each transport (the emulator over HTTP, then over HTTPS with a self-signed
certificate every client trusts) it starts one emulator and one gateway on
loopback, seeds 10 keys on the read project, and measures every path at each
number of calls in flight, interleaved so that a noisy neighbour hits all
paths alike:

  sdk         the real encord==0.1.145 SDK calling the emulator directly
  floor       our minimal Python client: signed calls, one keep-alive connection per worker
  floor-go    the same floor, compiled (bench/goclient)
  gateway-py  the gateway through the Python stub (encord_gateway_client)
  gateway-go  the gateway through the Go stub (bench/goclient)
  grpc-empty  the Go stub against bench/empty_server.py: a Python grpcio server whose
              handlers do nothing (the least any Python grpcio server spends on a call)

Then the gateway variant cells (bench/variants.py): the same client against
gateways one flag apart, `--state-url redis://` next to `memory://` and
`--processes 2` next to 1. Each path runs in its own load-generator process; the
gateways' CPU (summed over a supervisor's workers) and RSS are read from /proc.
Results, with each target of bench/targets.py met or not, go to
bench/results/latest.json, latest.md and a PNG next to them. `--profile` records
the gateway and grpc-empty with py-spy instead (bench/profiling.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fixtures
import profiling
import report
import stack
import targets
import variants
from gobuild import build_go
from measure import GO_PATHS, READ_KEYS, SERVER_PATHS, LoadGen, Plan, loadgen_argv, run_cell

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ALL_PATHS = report.MAIN_PATHS
GATEWAY_PATHS = ("gateway-py", "gateway-py-plain", "gateway-go")


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="levels 1 and 8, short windows: under a minute")
    parser.add_argument("--modes", default="http,https", help="emulator transports (default: http,https)")
    parser.add_argument("--paths", default=",".join(ALL_PATHS), help="client paths (default: all seven)")
    parser.add_argument(
        "--ops", default="read,write", help="read (ListProjectApiKeys), write (CreateProjectApiKey)"
    )
    parser.add_argument("--levels", help="calls in flight (default 1,8,32,128; --quick: 1,8)")
    parser.add_argument("--seconds", type=float, help="measured seconds per cell (default 2; --quick: 0.4)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each cell (default 0.3)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="results JSON")
    parser.add_argument("--png", type=Path, help="latency chart (default: --out with .png for .json)")
    parser.add_argument(
        "--go",
        choices=("auto", "on", "off"),
        default="auto",
        help="build bench/goclient for the Go paths (auto: if `go` is on PATH and the build works)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        metavar="LOAD",
        help="before each transport, wait (up to --wait-max s) for the 1-minute load to drop below LOAD",
    )
    parser.add_argument("--wait-max", type=float, default=600.0, metavar="SECONDS")
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `encord-gateway serve` (repeatable), e.g. --gateway-arg=--workers=16",
    )
    parser.add_argument(
        "--emulator-cpus",
        metavar="LIST",
        help="run the emulator under `taskset -c LIST` (default: 0 on a machine with 2 or more CPUs; "
        "'none': unpinned). On one CPU its threads hand the GIL over without crossing cores, which makes "
        "it about 1.5x faster, so that the floor measures more of the upstream and less of the emulator",
    )
    parser.add_argument(
        "--gateway-cpus",
        metavar="LIST",
        help="run the gateway (and the grpc-empty server) under `taskset -c LIST` (default: 1 on a "
        "machine with 2 or more CPUs, next to the emulator's 0; 'none': unpinned). On one CPU the "
        "gateway's threads hand the GIL over without crossing cores: about twice the calls per second",
    )
    parser.add_argument(
        "--sdk-ca",
        choices=("certifi", "bench-cert"),
        default="certifi",
        help="what the SDK trusts over HTTPS: certifi's roots plus the bench certificate, as against "
        "api.encord.com (the SDK loads this bundle on every call), or the bench certificate alone",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="trace the gateway (OTEL_TRACES_EXPORTER=otlp, needs the tracing extra) to a loopback OTLP "
        "collector that counts and drops the spans; compare with a run without it (tracing off)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(variants.VARIANTS),
        help="gateway variant cells: state (redis:// next to memory://), processes (--processes 2 next "
        "to 1); 'none': neither (default: both)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the cells: record the gateway and grpc-empty with py-spy at 8 in flight, for "
        "lists and creates, and write the summary to bench/results/profile.md (see --profile-out)",
    )
    parser.add_argument("--profile-out", type=Path, default=RESULTS / "profile.md", help="profile summary")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, keys)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    def items(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    levels = args.levels or ("1,8" if args.quick else "1,8,32,128")
    plan = Plan(
        modes=items(args.modes),
        paths=tuple(p for p in ALL_PATHS if p in items(args.paths)),
        ops=items(args.ops),
        levels=tuple(sorted(int(x) for x in items(levels))),
        seconds=args.seconds if args.seconds is not None else (0.4 if args.quick else 2.0),
        warmup_s=args.warmup if args.warmup is not None else (0.1 if args.quick else 0.3),
        quick=args.quick,
        variants=tuple(v for v in variants.VARIANTS if v in items(args.variants)),
    )
    unknown = set(items(args.paths)) - set(ALL_PATHS)
    unknown |= set(items(args.variants)) - {*variants.VARIANTS, "none"}
    if unknown or set(plan.modes) - {"http", "https"} or set(plan.ops) - {"read", "write"}:
        raise SystemExit(
            f"bench/run.py: unknown path, variant, mode or op in {args.paths!r} {args.variants!r} "
            f"{args.modes!r} {args.ops!r}"
        )
    return plan


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def default_cpu(cpu: int) -> str | None:
    """`cpu` when there is more than one and taskset can pin to it; else unpinned."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None or cpu not in os.sched_getaffinity(0):
        return None
    return str(cpu)


def chosen_cpus(given: str | None, default: int) -> str | None:
    cpus = default_cpu(default) if given is None else given
    return None if cpus in ("", "none") else cpus


def wait_idle(threshold: float, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    while (load := loadavg()[0]) >= threshold and time.monotonic() < deadline:
        log(f"1-minute load {load:.2f} >= {threshold}; waiting")
        time.sleep(15)


# One transport ---------------------------------------------------------------------------------------


def run_mode(
    mode: str,
    plan: Plan,
    workdir: Path,
    files: dict[str, Path],
    go_binary: Path | None,
    extra: Sequence[str],
    emulator_cpus: str | None,
    gateway_cpus: str | None,
    gateway_env: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    tls = mode == "https"
    mode_dir = workdir / mode
    mode_dir.mkdir()
    emulator = stack.start_emulator(
        mode_dir, files["fixture"], (files["cert"], files["cert_key"]) if tls else None, emulator_cpus
    )
    gens: list[LoadGen] = []
    gateway: stack.Process | None = None
    empty: stack.Process | None = None
    samplers: dict[int, stack.RssSampler] = {}
    try:
        url = f"{mode}://{emulator.address}"
        # A durable store, as a production gateway has: gateway-py's creates (with request ids) use it.
        state = (
            []
            if any(a.startswith("--state-url") for a in extra)
            else [f"--state-url=sqlite:///{mode_dir / 'gateway-state.db'}"]
        )
        gateway = stack.start_gateway(
            mode_dir,
            url,
            files["ssh_key"],
            files["bundle"] if tls else None,
            [*state, *extra],
            gateway_cpus,
            env=gateway_env,
        )
        log(f"{mode}: emulator {url} (pid {emulator.pid}), gateway {gateway.address} (pid {gateway.pid})")
        if "grpc-empty" in plan.paths:
            empty = stack.start_empty_server(mode_dir, READ_KEYS, gateway_cpus)
        fixtures.seed_read_project(url, files, tls)
        servers = {path: gateway for path in GATEWAY_PATHS}
        if empty is not None:
            servers["grpc-empty"] = empty
        for path in plan.paths:
            target = servers[path].address if path in servers else url
            argv = loadgen_argv(path, target, files, tls, go_binary)
            gens.append(LoadGen(path, argv, mode_dir / f"loadgen-{path}.log"))
        for gen in gens:
            gen.expect("ready")
        for process in (gateway, empty):
            if process is not None:
                samplers[process.pid] = stack.RssSampler(process.pid)
        cells: list[dict[str, Any]] = []
        for op in plan.ops:
            for level in plan.levels:
                for gen in gens:
                    server = servers.get(gen.path, gateway)
                    cell = {"mode": mode, "path": gen.path, "op": op, "concurrency": level}
                    measured = gen.path in SERVER_PATHS
                    sampler = samplers[server.pid]
                    cell.update(run_cell(gen, op, level, plan, server, emulator, sampler, measured=measured))
                    cells.append(cell)
                    log(
                        f"{mode} {op:<5} {gen.path:<10} {level:>3} in flight: p50 {cell['p50_ms']} ms, "
                        f"{cell['throughput_cps']} calls/s, {cell['errors']} errors"
                    )
        if plan.variants:
            cells += variants.run_variants(
                mode, plan, mode_dir, files, url, emulator, emulator_cpus, gateway_cpus, extra
            )
        rss_now, hwm = stack.rss_kb(gateway.pid)
        noise = [c["other_cpu_util"] for c in cells if c.get("other_cpu_util") is not None]
        info = {
            "emulator_url": url,
            # CPUs busy with processes outside the benchmark while cells were measured.
            "other_cpu_util_mean": round(sum(noise) / len(noise), 3) if noise else None,
            "other_cpu_util_max": max(noise) if noise else None,
            "gateway_rss_end_mb": round(rss_now / 1024, 1),
            "gateway_vm_hwm_mb": round(hwm / 1024, 1),
        }
        return cells, info
    finally:
        for gen in gens:
            gen.close()
        for sampler in samplers.values():
            sampler.close()
        if empty is not None:
            empty.stop()
        if gateway is not None:
            gateway.stop()
        emulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="encord-gateway-bench-"))
    skipped: dict[str, str] = {}
    cells: list[dict[str, Any]] = []
    modes: dict[str, Any] = {}
    load_start = loadavg()
    emulator_cpus = chosen_cpus(args.emulator_cpus, 0)
    gateway_cpus = chosen_cpus(args.gateway_cpus, 1)
    sink = None
    if args.tracing:
        from trace_sink import TraceSink  # only a traced run needs opentelemetry-proto

        sink = TraceSink()
    try:
        files = fixtures.prepare(workdir)
        files["sdk_bundle"] = files["bundle" if args.sdk_ca == "certifi" else "cert"]
        if args.profile:
            seconds = args.seconds if args.seconds is not None else (2.0 if plan.quick else 5.0)
            found = profiling.run_profile(
                plan.modes, plan.ops, seconds, workdir, files, args.gateway_arg, emulator_cpus, gateway_cpus
            )
            meta = {"started_at": started_at, "cpus": os.cpu_count(), "loadavg": load_start}
            meta |= {"platform": platform.platform(), "python": platform.python_version()}
            args.profile_out.parent.mkdir(parents=True, exist_ok=True)
            args.profile_out.write_text(profiling.summary(found, meta) + "\n")
            print(f"wrote {args.profile_out}")
            return 0 if found else 1
        go_binary, go_version = None, None
        paths = plan.paths
        if set(paths) & set(GO_PATHS):
            go_binary, go_version, why = build_go(workdir, args.go, plan.quick)
            if why:
                for path in GO_PATHS:
                    if path in paths:
                        skipped[path] = why
                paths = tuple(p for p in paths if p not in GO_PATHS)
                log(f"skipping {', '.join(GO_PATHS)}: {why}")
        skipped.update(variants.skipped_variants(plan.variants))
        plan = dataclasses.replace(plan, paths=paths)
        for mode in plan.modes:
            if args.wait_idle:
                wait_idle(args.wait_idle, args.wait_max)
            load_before = loadavg()
            mode_cells, info = run_mode(
                mode,
                plan,
                workdir,
                files,
                go_binary,
                args.gateway_arg,
                emulator_cpus,
                gateway_cpus,
                gateway_env=sink.env() if sink else None,
            )
            cells.extend(mode_cells)
            modes[mode] = {**info, "loadavg_before": load_before, "loadavg_after": loadavg()}
    finally:
        if sink is not None:
            sink.close()
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    result: dict[str, Any] = {
        "schema": 1,
        "started_at": started_at,
        "duration_s": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "go": go_version,
            "loadavg_start": load_start,
            "loadavg_end": loadavg(),
        },
        "config": {
            "quick": plan.quick,
            "modes": list(plan.modes),
            "paths": list(plan.paths),
            "ops": list(plan.ops),
            "levels": list(plan.levels),
            "variants": list(plan.variants),
            "seconds": plan.seconds,
            "warmup_s": plan.warmup_s,
            "read_keys": READ_KEYS,
            "gateway_args": list(args.gateway_arg),
            "sdk_ca": args.sdk_ca,
            "emulator_cpus": emulator_cpus,
            "gateway_cpus": gateway_cpus,
            "encord_sdk": _version("encord"),
            # The gateway traced to a loopback collector (--tracing), and how many spans it received.
            "tracing": bool(args.tracing),
            "spans_exported": sink.spans if sink else None,
        },
        "skipped": skipped,
        "modes": modes,
        "results": cells,
        "ratios": targets.ratios(cells, plan.modes, plan.ops),
        "targets": targets.targets(cells, plan.modes, plan.ops),
    }
    png = args.png or args.out.with_suffix(".png")
    result["png"] = None
    problem = report.draw(cells, plan.modes, plan.ops, png)
    if problem:
        log(problem)
    else:
        # Named relative to the JSON when it sits next to it, so that the results can move together.
        result["png"] = png.name if png.parent.resolve() == args.out.parent.resolve() else str(png)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    # The README's tables, from these very numbers.
    args.out.with_suffix(".md").write_text(
        report.markdown(cells, plan.modes, plan.ops, result["targets"]) + "\n"
    )

    print(report.console(result, cells))
    written = [args.out, args.out.with_suffix(".md"), *([png] if result["png"] else [])]
    print(f"\nwrote {', '.join(str(p) for p in written)} in {result['duration_s']}s")
    return 0


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
