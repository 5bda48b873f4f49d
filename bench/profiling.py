"""`bench/run.py --profile`: py-spy records the gateway and grpc-empty at 8 in flight; a text summary.

For each transport it starts the emulator, a gateway (SQLite store, pinned as in the cells) and the
empty grpcio server, drives each with gateway-py-plain's client (no request id: the same calls
grpc-empty answers) at 8 in flight, and samples the server with `py-spy record --gil` while /proc
counts its CPU. `--gil` keeps only the thread that holds the interpreter lock: on a process pinned to
one CPU that is the Python it runs, one sample per tick, so samples / rate / calls is Python time per
call, and what /proc counts beyond it is CPU outside the lock (grpc core's C threads, the kernel's
socket and TLS work). Without `--gil`, py-spy also counts threads parked in a blocking read or a
queue, which are not using a CPU. The gateway's frames are put next to grpc-empty's: what the gateway
spends beyond the framework.
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
RATE = 250  # samples per second and thread
TOP = 12
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
# What a frame's file (as `short` cuts it) starts with, in the order tried, names its group.
GROUPS = (
    ("grpc (framework)", ("grpc/", "grpc_", "threading.py", "concurrent/futures/", "queue.py")),
    ("upstream exchange (http1, ssl, socket)", ("encord_gateway/upstream/http1.py", "ssl.py", "socket.py")),
    ("protobuf", ("google/protobuf/",)),
    ("logging", ("logging/", "encord_gateway/logs.py")),
    ("json", ("json/", "encord_gateway/upstream/bounded_json.py")),
    (
        "signing (cryptography, hashlib)",
        ("encord_gateway/upstream/signing.py", "cryptography/", "hashlib.py"),
    ),
    ("state store", ("encord_gateway/state/", "sqlite3/", "redis/")),
)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Profile:
    server: str
    op: str
    cpu_us_per_call: float
    system_us_per_call: float  # of which the kernel's (sockets, futexes, scheduling)
    calls_spied: float
    # Stacks, root first, -> samples; a frame is "function (file)".
    stacks: dict[tuple[str, ...], int]

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def us(self, samples: int) -> float:
        """Interpreter-lock time per call of `samples` samples."""
        return samples / RATE / self.calls_spied * 1e6 if self.calls_spied else 0.0

    @property
    def outside_us(self) -> float:
        """CPU per call that /proc counted and no sample holds: outside the interpreter lock."""
        return max(0.0, self.cpu_us_per_call - self.us(self.samples))


def parse_raw(text: str) -> dict[tuple[str, ...], int]:
    """py-spy's raw (collapsed) output: `frame;frame;...;leaf count` per line, root first."""
    stacks: dict[tuple[str, ...], int] = collections.Counter()
    for line in text.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(short(f) for f in frames.split(";"))] += int(count)
    return dict(stacks)


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


def record(
    mode: str, op: str, gen: LoadGen, server: stack.Process, seconds: float, out: Path
) -> Profile | None:
    """Drives `gen` at LEVEL in flight and samples `server` for `seconds` after a short warm-up."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    warmup = 0.5
    window_start = time.time() + warmup
    gen.send({"op": op, "concurrency": LEVEL, "window_start": window_start, "seconds": seconds})
    time.sleep(warmup)
    before, split = stack.cpu_sample(server.pid), stack.cpu_split(server.pid)
    argv = [py_spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", str(RATE)]
    argv += ["--gil", "--format", "raw", "--nolineno", "--output", str(out)]
    spy = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    after, system_s = stack.cpu_sample(server.pid), stack.cpu_split(server.pid)[1] - split[1]
    done = gen.expect("done")
    calls = int(done["completed_in_window"])
    if spy.returncode != 0 or not out.exists():
        log(f"py-spy failed on {server.name} ({mode} {op}): {spy.stderr.strip()[-500:]}")
        return None
    # /proc's CPU over py-spy's own window: the calls of the whole window, scaled to it.
    spied_s = after.at - before.at
    calls_spied = calls * min(1.0, spied_s / seconds) if seconds > 0 else calls
    us = (after.cpu_s - before.cpu_s) / calls_spied * 1e6 if calls_spied else 0.0
    system_us = system_s / calls_spied * 1e6 if calls_spied else 0.0
    return Profile(
        server.name, op, round(us, 1), round(system_us, 1), calls_spied, parse_raw(out.read_text())
    )


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


def _rows(counts: collections.Counter[str], profile: Profile, top: int) -> Iterable[list[str]]:
    for name, n in counts.most_common(top):
        yield [f"`{name}`", f"{100 * n / profile.samples:.1f} %", f"{profile.us(n):.0f}"]


def summary(found: dict[str, list[tuple[Profile, Profile]]], meta: dict[str, Any]) -> str:
    """The profile as markdown: per mode and op, by group next to grpc-empty, then the top frames."""
    out = [
        "# Where the gateway's CPU goes",
        "",
        "Written by `make bench ARGS=--profile` (`bench/run.py --profile`): `py-spy record --gil` at "
        f"{RATE} samples/s on the gateway and on grpc-empty, each pinned to one CPU and driven at {LEVEL} "
        "in flight by the gateway-py-plain client (no request id). A sample is the thread holding the "
        "interpreter lock, so µs per call are Python time per call; the CPU per call is /proc's over "
        "the sampled window, and the difference is CPU outside the lock (grpc core, kernel, TLS). "
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
                f"CPU per call: gateway {gateway.cpu_us_per_call:.0f} µs ({gateway.samples} samples), "
                f"grpc-empty {empty.cpu_us_per_call:.0f} µs ({empty.samples} samples): {ratio:.2f} times. "
                f"Of which in the kernel (system time): gateway {gateway.system_us_per_call:.0f} µs, "
                f"grpc-empty {empty.system_us_per_call:.0f} µs.",
                "",
                "By where the running frame is (self time):",
                "",
                "| group | gateway µs/call | grpc-empty µs/call | beyond grpc-empty |",
                "|---|---:|---:|---:|",
            ]
            mine, theirs = self_by(gateway, group), self_by(empty, group)
            rows = [(name, gateway.us(n), empty.us(theirs.get(name, 0))) for name, n in mine.most_common()]
            rows += [(name, 0.0, empty.us(n)) for name, n in theirs.most_common() if name not in mine]
            rows.append(
                (
                    "outside the interpreter lock (grpc core, kernel, TLS)",
                    gateway.outside_us,
                    empty.outside_us,
                )
            )
            for name, g, e in rows:
                out.append(f"| {name} | {g:.0f} | {e:.0f} | {g - e:+.0f} |")
            out += [
                "",
                "Top frames of the gateway, self:",
                "",
                "| frame | share | µs/call |",
                "|---|---:|---:|",
            ]
            out += [
                "| " + " | ".join(row) + " |" for row in _rows(self_by(gateway, lambda f: f), gateway, TOP)
            ]
            out += [
                "",
                "Top frames of grpc-empty, self:",
                "",
                "| frame | share | µs/call |",
                "|---|---:|---:|",
            ]
            out += [
                "| " + " | ".join(row) + " |" for row in _rows(self_by(empty, lambda f: f), empty, TOP // 2)
            ]
            ours = collections.Counter(
                {f: n for f, n in total_by_frame(gateway).items() if "encord_gateway/" in f}
            )
            out += [
                "",
                "Top gateway frames, total (self and what they call):",
                "",
                "| frame | share | µs/call |",
            ]
            out += ["|---|---:|---:|"]
            out += ["| " + " | ".join(row) + " |" for row in _rows(ours, gateway, TOP + 4)]
            out.append("")
    return "\n".join(out)
