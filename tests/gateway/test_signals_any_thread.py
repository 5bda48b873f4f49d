"""A SIGTERM or SIGHUP the kernel hands to any thread of the gateway, or of its supervisor, is acted on.

A signal sent to a process may be delivered to any thread that does not block it. Before the wakeup
socket, one taken by a gRPC thread was never seen: the main thread slept on a queue, the gateway kept
serving, and whoever stopped it waited for the SIGKILL (exit -9, the CI failure these tests replay).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from encord_gateway.dev.devstack import Service, start_gateway, write_ssh_key

UNREACHABLE = "http://127.0.0.1:9"  # nothing here calls Encord
_libc = ctypes.CDLL(None, use_errno=True)


def thread_ids(pid: int) -> dict[int, str]:
    """Every thread of `pid` but its main one, with the name the kernel knows it by."""
    tasks = (int(name) for name in os.listdir(f"/proc/{pid}/task"))
    return {tid: Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() for tid in tasks if tid != pid}


def signal_thread(pid: int, tid: int, sig: signal.Signals) -> None:
    """tgkill(2): `sig` to the one thread `tid` of `pid`, as the kernel may deliver a process-wide one."""
    if _libc.tgkill(pid, tid, int(sig)) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}, {sig.name})")


def a_grpc_thread(pid: int) -> int:
    threads = thread_ids(pid)
    # gRPC's pollers are the threads a process-wide signal is likeliest to land on while the main one sleeps.
    pollers = [tid for tid, name in threads.items() if name.startswith("event_engine")]
    assert pollers, f"no gRPC poller among {threads}"
    return pollers[0]


def stopped_cleanly(gateway: Service) -> None:
    assert gateway.process.wait(15) == 0, "".join(gateway.output)[-3000:]
    gateway.drained.wait(5)
    assert any('"stopped"' in line for line in gateway.output)


@contextlib.contextmanager
def running_gateway(tmp_path: Path, *args: str) -> Iterator[Service]:
    """A gateway signing with a fresh key, stopped at the end whatever the test did to it."""
    key_file = tmp_path / "id_ed25519"
    write_ssh_key(key_file)
    gateway = start_gateway(UNREACHABLE, key_file, *args)
    try:
        yield gateway
    finally:
        gateway.stop()


def to_a_grpc_thread(gateway: Service, sig: signal.Signals) -> None:
    signal_thread(gateway.process.pid, a_grpc_thread(gateway.process.pid), sig)


def test_sigterm_taken_by_a_grpc_thread_stops_the_gateway(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gateway:
        to_a_grpc_thread(gateway, signal.SIGTERM)
        stopped_cleanly(gateway)


def test_sighup_taken_by_a_grpc_thread_reloads_the_config(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")
    with running_gateway(tmp_path, "--config", str(config)) as gateway:
        to_a_grpc_thread(gateway, signal.SIGHUP)
        reloaded = gateway.wait_for_line(lambda line: "config reloaded" in line, timeout=10)
        assert reloaded, "".join(gateway.output)
        to_a_grpc_thread(gateway, signal.SIGTERM)
        stopped_cleanly(gateway)


def test_sigterm_taken_by_a_supervisor_thread_stops_every_worker(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    args = ("--processes", "2", "--state-url", state, "--metrics-listen", "127.0.0.1:0")
    with running_gateway(tmp_path, *args) as gateway:
        # The supervisor creates no gRPC object; its other threads serve the fleet's /metrics.
        supervisor = gateway.process.pid
        others = thread_ids(supervisor)
        assert others, "the supervisor runs no thread besides its main one: nothing to deliver to"
        signal_thread(supervisor, min(others), signal.SIGTERM)
        stopped_cleanly(gateway)
        assert any("worker stopped" in line for line in gateway.output)


def test_the_dev_stack_stops_on_a_sigterm_taken_by_another_thread() -> None:
    # `python -m encord_gateway.dev.devstack` serves until interrupted; it slept in signal.pause(), which
    # a signal delivered to one of its output-draining threads never ended.
    with subprocess.Popen(
        [sys.executable, "-m", "encord_gateway.dev.devstack"], stdout=subprocess.PIPE, text=True
    ) as stack:
        children: list[str] = []
        try:
            assert stack.stdout is not None
            printed = [stack.stdout.readline() for _ in range(4)]
            assert any(line.startswith("ENCORD_GATEWAY_ADDRESS=") for line in printed), printed
            children = Path(f"/proc/{stack.pid}/task/{stack.pid}/children").read_text().split()
            assert len(children) == 2, children  # the emulator and the gateway
            signal_thread(stack.pid, min(thread_ids(stack.pid)), signal.SIGTERM)
            assert stack.wait(20) == 0
            assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a child was left running"
        finally:
            if stack.poll() is None:  # it did not stop: neither leave it nor its children running
                stack.kill()
                for pid in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
