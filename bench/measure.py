"""One measured window: the load-generator processes, their commands, and the CPU read from /proc."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import report
import stack

BENCH = Path(__file__).resolve().parent
READ_PROJECT = "7b1e0c52-4f0d-4c55-8a3e-2b9f6d1c0a11"
WRITE_PROJECT = "9c2f4e71-1d3b-4e8a-b6f0-5a7d2c3e8b22"
# gateway-py's creates carry a request_id and so list the project before sending: a project of their
# own keeps that listing as short as a real project's, not the thousands of keys the other paths make.
EXACTLY_ONCE_PROJECT = "3e7a1c52-8b4d-4f0e-9a6c-2d5b7e1f0c34"
# gateway-py-plain's creates, its pair, go to one of their own: sharing gateway-py's project, they put
# a thousand keys in every listing gateway-py's creates take (measured: 1 create/s at 32 in flight).
PLAIN_PROJECT = "3e7a1c52-8b4d-4f0e-9a6c-2d5b7e1f0c35"
WRITE_PROJECTS = {"gateway-py": EXACTLY_ONCE_PROJECT, "gateway-py-plain": PLAIN_PROJECT}
READ_KEYS = 10
GO_PATHS = ("floor-go", "gateway-go", "grpc-empty")
# Paths whose server (the gateway, or the empty grpcio server) has its CPU and RSS measured.
SERVER_PATHS = ("gateway-py", "gateway-py-plain", "gateway-go", "grpc-empty")


@dataclass(frozen=True)
class Plan:
    modes: tuple[str, ...]
    paths: tuple[str, ...]
    ops: tuple[str, ...]
    levels: tuple[int, ...]
    seconds: float
    warmup_s: float
    quick: bool
    variants: tuple[str, ...] = field(default=())


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
    path: str,
    target: str,
    files: dict[str, Path],
    tls: bool,
    go_binary: Path | None,
    *,
    channels: int = 1,
    write_project: str | None = None,
) -> list[str]:
    if write_project is None:
        write_project = WRITE_PROJECTS.get(path, WRITE_PROJECT)
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
    if channels > 1:
        argv += ["--channels", str(channels)]
    return argv + common


def run_cell(
    gen: LoadGen,
    op: str,
    concurrency: int,
    plan: Plan,
    server: stack.Process,
    emulator: stack.Process,
    rss: stack.RssSampler,
    *,
    measured: bool = True,
    others: dict[str, stack.Process] | None = None,
) -> dict[str, Any]:
    """One measured window: the client runs from now, is measured from `warmup_s` on, for `seconds`.

    `server` is the process the path calls (the gateway or the empty server): its CPU (with its
    children's, for a gateway of several processes) and RSS are reported in the gateway columns, or
    left empty when not `measured`. `others` (a Redis, say) get columns of their own.
    """
    window_start = time.time() + plan.warmup_s
    gen.send({"op": op, "concurrency": concurrency, "window_start": window_start, "seconds": plan.seconds})
    time.sleep(max(0.0, window_start - time.time()))
    roots = {"gateway": server, "emulator": emulator, **(others or {})}
    pids = {name: process.pid for name, process in roots.items()} | {"client": gen.popen.pid}
    trees = {name for name, process in roots.items() if process.tree}
    sample = {name: (stack.tree_cpu_sample if name in trees else stack.cpu_sample) for name in pids}
    before = {name: sample[name](pid) for name, pid in pids.items()}
    busy_before = stack.machine_busy_s()
    rss.take()  # forget the peak of earlier cells
    time.sleep(max(0.0, window_start + plan.seconds - time.time()))
    after = {name: sample[name](pid) for name, pid in pids.items()}
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
        cell[f"{name}_cpu_s"] = round(used, 4)
        cell[f"{name}_cpu_us_per_call"] = round(used / completed * 1e6, 1) if completed else None
        cell[f"{name}_cpu_util"] = round(used / wall, 3) if wall > 0 else None
    # Whatever else ran meanwhile (other test suites, say), in CPUs: the noise in this cell.
    other = (busy_after - busy_before) - ours
    cell["other_cpu_util"] = round(max(0.0, other) / wall, 3) if wall > 0 else None
    if not measured:
        # The gateway idles through the other paths' cells: its numbers there mean nothing.
        cell["gateway_cpu_s"] = cell["gateway_cpu_us_per_call"] = cell["gateway_cpu_util"] = None
        cell["gateway_peak_rss_mb"] = None
    else:
        cell["gateway_peak_rss_mb"] = round(peak_kb / 1024, 1)
    if server.tree:
        cell["gateway_processes"] = len(stack.descendants(server.pid))  # the supervisor and its workers
    return cell
