"""The gateway variant cells: the shared store (redis:// next to memory://) and two processes next to one.

Each pair runs the same client against two gateways that differ in one flag, cell after cell on the
same emulator, so that the ratio of the pair is the cost of that flag:

  gateway-memory  gateway-py's client, `--state-url memory://`
  gateway-redis   gateway-py's client, `--state-url redis://` on a redis-server of the run's own
  gateway-1proc   gateway-py's client over several channels, `--processes 1` (SQLite store)
  gateway-2proc   the same, `--processes 2`, one worker per CPU (`--cpus`)

Every create carries a request id (the Python client sends one), so the state cells measure the store.
The process cells' client opens several channels, each its own connection: the kernel spreads
connections, not calls, over the workers' sockets. Each path creates in a project of its own, so that
the listing a create with a request id takes first stays equally short on both sides of a pair.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import stack
from measure import LoadGen, Plan, loadgen_argv, run_cell

VARIANTS = ("state", "processes")
STATE_PATHS = ("gateway-memory", "gateway-redis")
PROCESS_PATHS = ("gateway-1proc", "gateway-2proc")
VARIANT_PATHS = (*STATE_PATHS, *PROCESS_PATHS)
PROJECTS = {
    "gateway-memory": "5d0a2b61-7c3e-4f19-8e2a-1b6c9d4e7f01",
    "gateway-redis": "5d0a2b61-7c3e-4f19-8e2a-1b6c9d4e7f02",
    "gateway-1proc": "5d0a2b61-7c3e-4f19-8e2a-1b6c9d4e7f03",
    "gateway-2proc": "5d0a2b61-7c3e-4f19-8e2a-1b6c9d4e7f04",
}
# p50 at 1 in flight and CPU per call at 8; calls/s and CPU at 32 (or the run's highest level below).
STATE_LEVELS = (1, 8)
PROCESS_LEVEL = 32
CHANNELS = 8


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def state_levels(levels: Sequence[int]) -> tuple[int, ...]:
    chosen = tuple(level for level in levels if level in STATE_LEVELS)
    return chosen or (min(levels),)


def process_level(levels: Sequence[int]) -> int:
    below = [level for level in levels if level <= PROCESS_LEVEL]
    return max(below) if below else min(levels)


def skipped_variants(variants: Sequence[str]) -> dict[str, str]:
    """The variant paths this machine cannot run, and why."""
    why: dict[str, str] = {}
    if "state" in variants and shutil.which("redis-server") is None:
        why.update(dict.fromkeys(STATE_PATHS, "redis-server is not installed"))
    if "processes" in variants and len(os.sched_getaffinity(0)) < 2:
        why.update(dict.fromkeys(PROCESS_PATHS, "one CPU: nothing for a second process to run on"))
    return why


def _gateway_cpus(gateway_cpus: str | None) -> str:
    """The CPU of the one-process gateway (the main gateway's), and a list of two for the two workers."""
    return gateway_cpus or str(max(os.sched_getaffinity(0)))


def run_variants(
    mode: str,
    plan: Plan,
    mode_dir: Path,
    files: dict[str, Path],
    url: str,
    emulator: stack.Process,
    emulator_cpus: str | None,
    gateway_cpus: str | None,
    extra: Sequence[str],
) -> list[dict[str, Any]]:
    """Starts each pair's gateways (and the Redis), runs their cells interleaved, and stops them."""
    tls = mode == "https"
    wanted = set(plan.variants) - {v for v in VARIANTS if _all_skipped(v)}
    processes: list[stack.Process] = []
    gens: dict[str, LoadGen] = {}
    servers: dict[str, stack.Process] = {}
    samplers: dict[str, stack.RssSampler] = {}
    others: dict[str, dict[str, stack.Process]] = {}
    ca = files["bundle"] if tls else None
    # The flags under test are ours: whatever --gateway-arg says about them is left out.
    ours = ("--state-url", "--processes", "--cpus")
    common = [a for a in extra if not a.startswith(ours)]
    one_cpu = _gateway_cpus(gateway_cpus)
    try:
        if "state" in wanted:
            redis = stack.start_redis(mode_dir / "redis", emulator_cpus)
            processes.append(redis)
            stores = {"gateway-memory": "memory://", "gateway-redis": f"redis://{redis.address}/0"}
            for path, state_url in stores.items():
                argv = [f"--state-url={state_url}", f"--cpus={one_cpu}", *common]
                servers[path] = stack.start_gateway(mode_dir, url, files["ssh_key"], ca, argv, name=path)
                processes.append(servers[path])
            others["gateway-redis"] = {"redis": redis}
        if "processes" in wanted:
            cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:2])
            for path, count, on in (("gateway-1proc", 1, one_cpu), ("gateway-2proc", 2, cpus)):
                state = f"--state-url=sqlite:///{mode_dir / (path + '-state.db')}"
                argv = [state, f"--processes={count}", f"--cpus={on}", *common]
                servers[path] = stack.start_gateway(mode_dir, url, files["ssh_key"], ca, argv, name=path)
                processes.append(servers[path])
        for path, server in servers.items():
            channels = CHANNELS if path in PROCESS_PATHS else 1
            argv = loadgen_argv(
                "gateway-py",
                server.address,
                files,
                tls,
                None,
                channels=channels,
                write_project=PROJECTS[path],
            )
            gens[path] = LoadGen(path, argv, mode_dir / f"loadgen-{path}.log")
            samplers[path] = stack.RssSampler(server.pid, tree=server.tree)
        for gen in gens.values():
            gen.expect("ready")
        log(f"{mode}: variant gateways " + ", ".join(f"{p} {s.address}" for p, s in servers.items()))
        cells: list[dict[str, Any]] = []
        pairs = [(STATE_PATHS, state_levels(plan.levels)), (PROCESS_PATHS, (process_level(plan.levels),))]
        for op in plan.ops:
            for pair, levels in pairs:
                for level in levels:
                    for path in (p for p in pair if p in gens):
                        cell: dict[str, Any] = {"mode": mode, "path": path, "op": op, "concurrency": level}
                        cell.update(
                            run_cell(
                                gens[path], op, level, plan, servers[path], emulator, samplers[path],
                                others=others.get(path),
                            )
                        )  # fmt: skip
                        cells.append(cell)
                        log(
                            f"{mode} {op:<5} {path:<14} {level:>3} in flight: p50 {cell['p50_ms']} ms, "
                            f"{cell['throughput_cps']} calls/s, {cell['gateway_cpu_us_per_call']} us/call"
                        )
        return cells
    finally:
        for gen in gens.values():
            gen.close()
        for sampler in samplers.values():
            sampler.close()
        for process in reversed(processes):
            process.stop()


def _all_skipped(variant: str) -> bool:
    paths = STATE_PATHS if variant == "state" else PROCESS_PATHS
    return set(paths) <= set(skipped_variants((variant,)))
