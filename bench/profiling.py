"""`bench/run.py --profile`: where the gateway's CPU goes next to grpc-empty's, at 8 in flight, as text.

For each transport it starts the emulator, a gateway (SQLite store, pinned as in the cells) and the
empty grpcio server, drives each with gateway-py-plain's client (no request id: the same calls
grpc-empty answers) at 8 in flight, and, one after the other within one load window:

- `perf record` (when perf is installed and allowed): every CPU sample of the server by shared
  object, so the CPU per call that /proc counts splits into the interpreter, grpc core, the kernel
  (sockets, futexes, scheduling), libc (malloc), protobuf and TLS;
- `py-spy record --nonblocking`: the Python stack of every thread that is running, so the CPU
  splits by the Python frame it was spent under (the C and kernel work a frame calls included). A
  frame's share of the samples is read as its share of /proc's CPU per call.

py-spy's default (blocking) mode stops the process for each sample, and a stopped thread no longer
looks idle: threads parked in a blocking read then count as running (three per CPU tick, measured).
`--gil` keeps one thread per sample but, measured against perf, saw a tenth of the interpreter's
time, most of it in grpc's hand-off to its thread pool. Non-blocking samples the running process
without stopping it, and found at most one running thread per tick on a gateway pinned to one CPU.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fixtures
import stack
from measure import READ_KEYS, LoadGen, loadgen_argv

LEVEL = 8
RATE = 250  # py-spy samples per second
PERF_HZ = 499
PY_SPY_FLAGS = ["--nonblocking"]  # see the module's docstring
TOP = 12
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
PERF_LINE = re.compile(r"^\s+(?P<share>[\d.]+)%\s+(?P<dso>\S.*?)\s*$")
# What a frame's file (as `short` cuts it) starts with, in the order tried, names its group.
GROUPS = (
    ("grpc (framework)", ("grpc/", "grpc_", "threading.py", "concurrent/futures/", "queue.py")),
    ("upstream exchange (http1, ssl, socket)", ("encord_gateway/upstream/http1/", "ssl.py", "socket.py")),
    ("protobuf", ("google/protobuf/",)),
    ("logging", ("logging/", "encord_gateway/logs.py")),
    ("json", ("json/", "encord_gateway/upstream/bounded_json.py")),
    (
        "signing (cryptography, hashlib)",
        ("encord_gateway/upstream/signing.py", "cryptography/", "hashlib.py"),
    ),
    ("state store", ("encord_gateway/state/", "sqlite3/", "redis/")),
)
# perf's shared objects, by what part of the name says what they are; the first match wins.
DSO_GROUPS = (
    ("interpreter (Python code)", ("libpython", "python3")),
    ("grpc core (C)", ("cygrpc",)),
    ("kernel (sockets, futexes, scheduling)", ("[kernel",)),
    ("libc (malloc, locks)", ("libc.so", "ld-linux", "libm.so", "[vdso]")),
    ("protobuf (C)", ("_message", "protobuf")),
    ("TLS and hashing (OpenSSL)", ("libcrypto", "libssl", "_ssl", "_hashlib")),
    ("json (C)", ("_json",)),
)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Profile:
    server: str
    op: str
    cpu_us_per_call: float
    system_us_per_call: float  # of which the kernel's, by /proc
    # Stacks, root first, -> py-spy samples; a frame is "function (file)".
    stacks: dict[tuple[str, ...], int]
    # perf's share (0..1) of the CPU by DSO group; empty without perf.
    dsos: dict[str, float]

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def us(self, samples: int) -> float:
        """The CPU per call under the frames of `samples` of py-spy's samples."""
        return self.cpu_us_per_call * samples / self.samples if self.samples else 0.0


def parse_raw(text: str) -> dict[tuple[str, ...], int]:
    """py-spy's raw (collapsed) output: `frame;frame;...;leaf count` per line, root first."""
    stacks: dict[tuple[str, ...], int] = collections.Counter()
    for line in text.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(short(f) for f in frames.split(";"))] += int(count)
    return dict(stacks)


def parse_perf(text: str) -> dict[str, float]:
    """`perf report --sort dso --stdio` lines (`  55.14%  libpython3.11.so.1.0`) as shares by DSO group."""
    shares: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        match = PERF_LINE.match(line)
        if match:
            name = next((g for g, parts in DSO_GROUPS if any(p in match["dso"] for p in parts)), "other")
            shares[name] += float(match["share"]) / 100
    return dict(shares)


def short(frame: str) -> str:
    """`func (path)` with the path cut to what names the module (site-packages/..., encord_gateway/...)."""
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/server/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path.removeprefix('.11/').removeprefix('.12/')})"


def group(frame: str) -> str:
    match = FRAME.match(frame)
    path = match["file"] if match else frame
    for name, starts in GROUPS:
        if path.startswith(starts):
            return name
    if path.startswith("encord_gateway/"):
        return f"gateway: {path.removeprefix('encord_gateway/')}"
    return "other (stdlib, interpreter)"


def self_by(profile: Profile, key: Any) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for frames, n in profile.stacks.items():
        counts[key(frames[-1])] += n
    return counts


def total_by_frame(profile: Profile) -> collections.Counter[str]:
    """Samples whose stack holds each frame (once per stack, however deep the recursion)."""
    counts: collections.Counter[str] = collections.Counter()
    for frames, n in profile.stacks.items():
        for frame in set(frames):
            counts[frame] += n
    return counts


def _perf(pid: int, seconds: float, out: Path) -> dict[str, float]:
    perf = shutil.which("perf")
    if perf is None:
        return {}
    argv = [perf, "record", "-F", str(PERF_HZ), "-p", str(pid), "-o", str(out), "--", "sleep", f"{seconds:g}"]
    recorded = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if recorded.returncode != 0 or not out.exists():
        log(f"perf record failed (perf_event_paranoid?): {recorded.stderr.strip()[-300:]}")
        return {}
    argv = [perf, "report", "-i", str(out), "--sort", "dso", "--stdio", "--no-children", "-g", "none"]
    report = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return parse_perf(report.stdout)


def record(
    mode: str, op: str, gen: LoadGen, server: stack.Process, seconds: float, out: Path
) -> Profile | None:
    """Drives `gen` at LEVEL in flight; perf, then py-spy, each for `seconds`, after a short warm-up."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    warmup = 0.5
    window = 2 * seconds + 1.0  # both recorders and their start-up, inside the load
    window_start = time.time() + warmup
    gen.send({"op": op, "concurrency": LEVEL, "window_start": window_start, "seconds": window})
    time.sleep(warmup)
    before, split = stack.cpu_sample(server.pid), stack.cpu_split(server.pid)
    dsos = _perf(server.pid, seconds, out.with_suffix(".perf"))
    argv = [py_spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", str(RATE)]
    argv += [*PY_SPY_FLAGS, "--format", "raw", "--nolineno", "--output", str(out)]
    spy = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    after, system_s = stack.cpu_sample(server.pid), stack.cpu_split(server.pid)[1] - split[1]
    done = gen.expect("done")
    if spy.returncode != 0 or not out.exists():
        log(f"py-spy failed on {server.name} ({mode} {op}): {spy.stderr.strip()[-500:]}")
        return None
    # /proc's CPU over the recorded part of the window, for the calls that finished in that part.
    recorded_s = after.at - before.at
    calls = int(done["completed_in_window"]) * min(1.0, recorded_s / window)
    if not calls:
        return None
    us = (after.cpu_s - before.cpu_s) / calls * 1e6
    stacks = parse_raw(out.read_text())
    return Profile(server.name, op, round(us, 1), round(system_s / calls * 1e6, 1), stacks, dsos)


def run_profile(
    modes: Sequence[str],
    ops: Sequence[str],
    seconds: float,
    workdir: Path,
    files: dict[str, Path],
    extra: Sequence[str],
    emulator_cpus: str | None,
    gateway_cpus: str | None,
) -> dict[str, list[tuple[Profile, Profile]]]:
    """(gateway, grpc-empty) profiles per mode and op."""
    found: dict[str, list[tuple[Profile, Profile]]] = {}
    for mode in modes:
        tls = mode == "https"
        mode_dir = workdir / f"profile-{mode}"
        mode_dir.mkdir()
        started: list[stack.Process] = []
        gens: list[LoadGen] = []
        try:
            emulator = stack.start_emulator(
                mode_dir, files["fixture"], (files["cert"], files["cert_key"]) if tls else None, emulator_cpus
            )
            started.append(emulator)
            url = f"{mode}://{emulator.address}"
            state = [f"--state-url=sqlite:///{mode_dir / 'gateway-state.db'}"]
            ca = files["bundle"] if tls else None
            gateway = stack.start_gateway(mode_dir, url, files["ssh_key"], ca, [*state, *extra], gateway_cpus)
            empty = stack.start_empty_server(mode_dir, READ_KEYS, gateway_cpus)
            started += [gateway, empty]
            fixtures.seed_read_project(url, files, tls)
            servers = {"gateway": gateway, "grpc-empty": empty}
            pairs: dict[str, LoadGen] = {}
            for name, server in servers.items():
                argv = loadgen_argv("gateway-py-plain", server.address, files, tls, None)
                pairs[name] = LoadGen(name, argv, mode_dir / f"loadgen-profile-{name}.log")
                gens.append(pairs[name])
            for gen in gens:
                gen.expect("ready")
            for op in ops:
                got = {
                    name: record(mode, op, pairs[name], server, seconds, mode_dir / f"{name}-{op}.txt")
                    for name, server in servers.items()
                }
                if got["gateway"] and got["grpc-empty"]:
                    found.setdefault(mode, []).append((got["gateway"], got["grpc-empty"]))
                    counts = f"{got['gateway'].samples} + {got['grpc-empty'].samples}"
                    log(f"profiled {mode} {op}: {counts} samples")
        finally:
            for gen in gens:
                gen.close()
            for process in reversed(started):
                process.stop()
    return found


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _frames(counts: collections.Counter[str], profile: Profile, top: int) -> list[list[str]]:
    return [
        [f"`{name}`", f"{100 * n / profile.samples:.1f} %", f"{profile.us(n):.0f}"]
        for name, n in counts.most_common(top)
    ]


def _beyond(mine: dict[str, float], theirs: dict[str, float]) -> list[list[str]]:
    names = sorted(set(mine) | set(theirs), key=lambda n: -mine.get(n, 0.0))
    return [
        [n, f"{mine.get(n, 0):.0f}", f"{theirs.get(n, 0):.0f}", f"{mine.get(n, 0) - theirs.get(n, 0):+.0f}"]
        for n in names
    ]


def summary(found: dict[str, list[tuple[Profile, Profile]]], meta: dict[str, Any]) -> str:
    """The profile as markdown: per mode and op, the CPU by shared object and Python by group, next to
    grpc-empty's, then the top frames."""
    out = [
        "# Where the gateway's CPU goes",
        "",
        "Written by `make bench ARGS=--profile` (`bench/run.py --profile`; bench/profiling.py says how). "
        f"The gateway and grpc-empty, each pinned to one CPU, driven at {LEVEL} in flight by the "
        "gateway-py-plain client (no request id). CPU per call is /proc's over the recorded window; "
        f"`perf record -F {PERF_HZ}` splits it by shared object; `py-spy record --nonblocking` at {RATE}/s "
        "splits it by the Python frame it ran under (what that frame calls in C and in the kernel "
        "included). "
        f"Run {meta['started_at']} on {meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}; "
        f"1-minute load {meta['loadavg'][0]:.2f} at the start: a shared machine, so read proportions.",
        "",
    ]
    for mode, pairs in found.items():
        for gateway, empty in pairs:
            op = "ListProjectApiKeys (10 keys)" if gateway.op == "read" else "CreateProjectApiKey"
            ratio = gateway.cpu_us_per_call / empty.cpu_us_per_call if empty.cpu_us_per_call else 0.0
            out += [
                f"## {op}, emulator over {mode.upper()}",
                "",
                f"CPU per call: gateway {gateway.cpu_us_per_call:.0f} µs, grpc-empty "
                f"{empty.cpu_us_per_call:.0f} µs: {ratio:.2f} times. In the kernel (/proc's system time): "
                f"{gateway.system_us_per_call:.0f} and {empty.system_us_per_call:.0f} µs.",
                "",
            ]
            if gateway.dsos and empty.dsos:
                out += ["By shared object (perf), µs per call:", ""]
                mine = {k: v * gateway.cpu_us_per_call for k, v in gateway.dsos.items()}
                theirs = {k: v * empty.cpu_us_per_call for k, v in empty.dsos.items()}
                out += _table(["where", "gateway", "grpc-empty", "beyond grpc-empty"], _beyond(mine, theirs))
            else:
                out += ["(perf was not available or not allowed: no split by shared object.)", ""]
            out += ["By the group of the running Python frame (py-spy, self), µs per call:", ""]
            mine = {k: gateway.us(n) for k, n in self_by(gateway, group).items()}
            theirs = {k: empty.us(n) for k, n in self_by(empty, group).items()}
            out += _table(["group", "gateway", "grpc-empty", "beyond grpc-empty"], _beyond(mine, theirs))
            out += [f"Top frames of the gateway, self ({gateway.samples} samples):", ""]
            out += _table(["frame", "share", "µs/call"], _frames(self_by(gateway, lambda f: f), gateway, TOP))
            out += [f"Top frames of grpc-empty, self ({empty.samples} samples):", ""]
            out += _table(
                ["frame", "share", "µs/call"], _frames(self_by(empty, lambda f: f), empty, TOP // 2)
            )
            ours = collections.Counter(
                {f: n for f, n in total_by_frame(gateway).items() if "encord_gateway/" in f}
            )
            out += ["Top gateway frames, total (self and what they call):", ""]
            out += _table(["frame", "share", "µs/call"], _frames(ours, gateway, TOP + 4))
    return "\n".join(out).rstrip()
