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

Each path runs in its own load-generator process; the gateway's CPU and RSS are
read from /proc. Results go to bench/results/latest.json and a PNG next to it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import report
import stack
from encord_gateway.dev.devstack import write_fixture, write_ssh_key
from loadgen import FloorClient

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
READ_PROJECT = "7b1e0c52-4f0d-4c55-8a3e-2b9f6d1c0a11"
WRITE_PROJECT = "9c2f4e71-1d3b-4e8a-b6f0-5a7d2c3e8b22"
# gateway-py's creates carry a request_id and so list the project before sending: a project of their
# own keeps that listing as short as a real project's, not the thousands of keys the other paths make.
EXACTLY_ONCE_PROJECT = "3e7a1c52-8b4d-4f0e-9a6c-2d5b7e1f0c34"
READ_KEYS = 10
ALL_PATHS = ("sdk", "floor", "floor-go", "gateway-py", "gateway-py-plain", "gateway-go", "grpc-empty")
GO_PATHS = ("floor-go", "gateway-go", "grpc-empty")
PYTHON_PATHS = ("sdk", "floor", "gateway-py", "gateway-py-plain")
GATEWAY_PATHS = ("gateway-py", "gateway-py-plain", "gateway-go")
# Paths whose server (the gateway, or the empty grpcio server) has its CPU and RSS measured.
SERVER_PATHS = (*GATEWAY_PATHS, "grpc-empty")
CELL_TIMEOUT_S = 120.0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    modes: tuple[str, ...]
    paths: tuple[str, ...]
    ops: tuple[str, ...]
    levels: tuple[int, ...]
    seconds: float
    warmup_s: float
    quick: bool


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
    )
    unknown = set(items(args.paths)) - set(ALL_PATHS)
    if unknown or set(plan.modes) - {"http", "https"} or set(plan.ops) - {"read", "write"}:
        raise SystemExit(
            f"bench/run.py: unknown path, mode or op in {args.paths!r} {args.modes!r} {args.ops!r}"
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


# The Go client -------------------------------------------------------------------------------------


def build_go(workdir: Path, mode: str, quick: bool) -> tuple[Path | None, str | None, str | None]:
    """(binary, go version, why not) for bench/goclient."""
    go = shutil.which("go")
    if mode == "off":
        return None, None, "--go off"
    if go is None:
        return None, None, "`go` is not on PATH"
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout.strip()
    binary = workdir / "goclient"
    env = dict(os.environ)
    if quick:
        env["GOPROXY"] = "off"  # quick mode never waits on a download: cached modules or no Go paths
    started = time.monotonic()
    try:
        built = subprocess.run(
            [go, "build", "-o", str(binary), "."],
            cwd=BENCH / "goclient",
            capture_output=True,
            text=True,
            env=env,
            timeout=60 if quick else 300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, version, "go build timed out"
    if built.returncode != 0:
        why = built.stderr.strip().splitlines()[-1:] or ["unknown error"]
        if mode == "on":
            raise SystemExit(f"bench/run.py: go build failed:\n{built.stderr}")
        return None, version, f"go build failed: {why[0]}"
    log(f"built bench/goclient in {time.monotonic() - started:.1f}s")
    return binary, version, None


# Load generators -----------------------------------------------------------------------------------


class LoadGen:
    """One load-generator process for one path, driven one cell at a time over its stdin and stdout."""

    def __init__(self, path: str, argv: list[str], log_file: Path) -> None:
        self.path = path
        self._log = log_file.open("ab")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1
        )

    def expect(self, event: str) -> dict[str, Any]:
        stdout: IO[str] | None = self.popen.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            self.popen.wait(10)
            raise RuntimeError(f"{self.path} load generator exited ({self.popen.returncode}); see its log")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != event:
            raise RuntimeError(f"{self.path}: expected {event}, got {line[:200]}")
        return message

    def send(self, command: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(command) + "\n")
        self.popen.stdin.flush()

    def close(self) -> None:
        if self.popen.poll() is None:
            try:
                self.send({"op": "quit"})
                self.popen.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def loadgen_argv(
    path: str, target: str, files: dict[str, Path], tls: bool, go_binary: Path | None
) -> list[str]:
    write_project = EXACTLY_ONCE_PROJECT if path in ("gateway-py", "gateway-py-plain") else WRITE_PROJECT
    common = ["--read-project", READ_PROJECT, "--write-project", write_project, "--read-keys", str(READ_KEYS)]
    if path in GO_PATHS:
        assert go_binary is not None
        # grpc-empty is the gateway path of the Go client, pointed at the empty server.
        argv = [str(go_binary), "-path", "gateway-go" if path == "grpc-empty" else path, "-target", target]
        if path == "floor-go":
            argv += ["-seed-file", str(files["seed"])]
            if tls:
                argv += ["-ca-file", str(files["cert"])]
        # Go's flag package takes -name value, the same as the Python ones' --name value.
        return argv + [f"-{a[2:]}" if a.startswith("--") else a for a in common]
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--path", path, "--target", target]
    if path in ("sdk", "floor"):
        argv += ["--key-file", str(files["ssh_key"])]
        if tls:
            argv += ["--ca-file", str(files["sdk_bundle" if path == "sdk" else "bundle"])]
    return argv + common


# One transport ---------------------------------------------------------------------------------------


def seed_read_project(url: str, files: dict[str, Path], tls: bool) -> None:
    """Ten keys on the read project, created straight on the emulator, then listed back."""
    floor = FloorClient(url, str(files["ssh_key"]), str(files["bundle"]) if tls else None)
    conn = floor.connection()
    try:
        for n in range(READ_KEYS):
            floor.call(conn, "POST", READ_PROJECT, {"title": f"seeded key {n}", "scopes": ["label.read"]})
        keys = floor.call(conn, "GET", READ_PROJECT, None)
    finally:
        conn.close()
    if len(keys) != READ_KEYS:
        raise RuntimeError(f"the read project has {len(keys)} keys, not {READ_KEYS}")


def run_cell(
    gen: LoadGen,
    op: str,
    concurrency: int,
    plan: Plan,
    server: stack.Process,
    emulator: stack.Process,
    rss: stack.RssSampler,
) -> dict[str, Any]:
    """One measured window: the client runs from now, is measured from `warmup_s` on, for `seconds`.

    `server` is the process the path calls (the gateway or the empty server): its CPU
    and RSS are reported in the gateway columns.
    """
    window_start = time.time() + plan.warmup_s
    gen.send({"op": op, "concurrency": concurrency, "window_start": window_start, "seconds": plan.seconds})
    time.sleep(max(0.0, window_start - time.time()))
    pids = {"gateway": server.pid, "emulator": emulator.pid, "client": gen.popen.pid}
    before = {name: stack.cpu_sample(pid) for name, pid in pids.items()}
    busy_before = stack.machine_busy_s()
    rss.take()  # forget the peak of earlier cells
    time.sleep(max(0.0, window_start + plan.seconds - time.time()))
    after = {name: stack.cpu_sample(pid) for name, pid in pids.items()}
    busy_after = stack.machine_busy_s()
    peak_kb = rss.take()
    done = gen.expect("done")
    cell = report.summarize(done)
    completed = int(done["completed_in_window"])
    wall = after["gateway"].at - before["gateway"].at
    ours = 0.0
    for name in pids:
        used = after[name].cpu_s - before[name].cpu_s
        ours += used
        cell[f"{name}_cpu_us_per_call"] = round(used / completed * 1e6, 1) if completed else None
        cell[f"{name}_cpu_util"] = round(used / wall, 3) if wall > 0 else None
    # Whatever else ran meanwhile (other test suites, say), in CPUs: the noise in this cell.
    other = (busy_after - busy_before) - ours
    cell["other_cpu_util"] = round(max(0.0, other) / wall, 3) if wall > 0 else None
    if gen.path not in SERVER_PATHS:
        # The gateway idles through the other paths' cells: its numbers there mean nothing.
        cell["gateway_cpu_us_per_call"] = cell["gateway_cpu_util"] = None
        cell["gateway_peak_rss_mb"] = None
    else:
        cell["gateway_peak_rss_mb"] = round(peak_kb / 1024, 1)
    return cell


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
        seed_read_project(url, files, tls)
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
                    cell.update(run_cell(gen, op, level, plan, server, emulator, samplers[server.pid]))
                    cells.append(cell)
                    log(
                        f"{mode} {op:<5} {gen.path:<10} {level:>3} in flight: p50 {cell['p50_ms']} ms, "
                        f"{cell['throughput_cps']} calls/s, {cell['errors']} errors"
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


def prepare(workdir: Path) -> dict[str, Path]:
    """The Encord user's key (SSH, and its raw seed for the Go floor), the fixture and the certificate."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        load_ssh_private_key,
    )

    files = {
        "ssh_key": workdir / "encord_ed25519",
        "seed": workdir / "encord_ed25519.seed",
        "fixture": workdir / "fixture.toml",
        "cert": workdir / "emulator.crt",
        "cert_key": workdir / "emulator.key",
        "bundle": workdir / "ca-bundle.pem",
    }
    public = write_ssh_key(files["ssh_key"])
    key = load_ssh_private_key(files["ssh_key"].read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    files["seed"].write_text(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex())
    files["seed"].chmod(0o600)
    write_fixture(
        files["fixture"], public, projects=(READ_PROJECT, WRITE_PROJECT, EXACTLY_ONCE_PROJECT), datasets=()
    )
    stack.write_self_signed(files["cert"], files["cert_key"])
    # What a client trusts against api.encord.com (certifi's roots), plus the bench certificate: the
    # SDK loads this bundle on every connection, as it loads certifi's in production.
    import certifi

    files["bundle"].write_text(Path(certifi.where()).read_text() + "\n" + files["cert"].read_text())
    return files


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
        files = prepare(workdir)
        files["sdk_bundle"] = files["bundle" if args.sdk_ca == "certifi" else "cert"]
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
        plan = Plan(plan.modes, paths, plan.ops, plan.levels, plan.seconds, plan.warmup_s, plan.quick)
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
        "ratios": report.ratios(cells, plan.modes, plan.ops),
        "targets": report.targets(cells, plan.modes, plan.ops),
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
    args.out.with_suffix(".md").write_text(report.markdown(cells, plan.modes, plan.ops) + "\n")

    for mode in plan.modes:
        noise = modes[mode]["other_cpu_util_mean"]
        print(
            f"\n== emulator over {mode.upper()} (1-min load {modes[mode]['loadavg_before'][0]:.2f} before; "
            f"other processes used {_fmt_cpus(noise)} CPUs on average while cells ran) =="
        )
        print(report.table(cells, mode))
    print("\nratios:")
    for mode, by_op in result["ratios"].items():
        for op, values in by_op.items():
            for name, value in values.items():
                print(f"  [{mode:<5}] {op:<5} {name:<34} {value}")
    print("\ntargets (reported, not asserted):")
    print(report.target_lines(result["targets"]))
    if skipped:
        print("\nskipped: " + "; ".join(f"{p}: {why}" for p, why in skipped.items()))
    written = [args.out, args.out.with_suffix(".md"), *([png] if result["png"] else [])]
    print(f"\nwrote {', '.join(str(p) for p in written)} in {result['duration_s']}s")
    return 0


def _fmt_cpus(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
