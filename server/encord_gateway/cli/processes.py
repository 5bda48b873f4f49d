"""`serve --processes N`: a pre-fork supervisor; every worker serves the one port with SO_REUSEPORT.

The pattern of grpc's examples/python/multiprocessing: the parent creates no gRPC object (gRPC's
threads do not survive a fork), forks each worker, and the kernel spreads new connections over the
workers' listening sockets. The parent binds no gRPC port: the first worker binds the address as given
(port 0 picks one), reports what it bound through a pipe, and the others, and any replacement, bind that.
With --metrics-listen the parent serves the one /metrics, the sum of every worker's (api/metrics_fleet.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from encord_gateway import config, logs
from encord_gateway.api.metrics_fleet import FleetMetrics
from encord_gateway.signals import SignalInbox

log = logging.getLogger("encord_gateway.cli.processes")

# What a worker runs: the ordinary serve, with its settings, a way to report the lines it would print,
# and the directory its metrics' values go to (None without --metrics-listen).
Announce = Callable[[str], None]
ServeWorker = Callable[[config.Settings, Announce, str | None], int]

STARTUP_TIMEOUT_S = 60.0
# A worker that dies sooner than this after its start is replaced only after this long, so that one
# that cannot start does not fork in a tight loop.
RESTART_PAUSE_S = 1.0


@dataclass
class Worker:
    slot: int
    pid: int
    started: float
    exit_code: int | None = None


def _fields(**values: object) -> dict[str, object]:
    return {logs.FIELDS: values}


class Supervisor:
    def __init__(self, settings: config.Settings, serve_worker: ServeWorker) -> None:
        self.settings = settings
        self.serve_worker = serve_worker
        self.cpus = sorted(config.parse_cpus(settings.cpus)) if settings.cpus else []
        # Filled in from the first worker's report: what every later worker binds.
        self.listen = settings.listen
        self.health_listen = settings.health_listen
        self.workers: dict[int, Worker] = {}
        self.signals: SignalInbox | None = None  # from the first fork on
        self.metrics: FleetMetrics | None = None

    def _worker_settings(self, slot: int) -> config.Settings:
        cpus = str(self.cpus[slot % len(self.cpus)]) if self.cpus else None
        return dataclasses.replace(
            self.settings, listen=self.listen, health_listen=self.health_listen, cpus=cpus
        )

    def _fork(self, slot: int, *, report: bool) -> tuple[Worker, int | None]:
        """Starts a worker; with `report`, the read end of the pipe its announced lines come through."""
        read_fd, write_fd = os.pipe() if report else (None, None)
        worker_settings = self._worker_settings(slot)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            if read_fd is not None:
                os.close(read_fd)
            if self.metrics is not None:
                self.metrics.forget_in_child()
            if self.signals is not None:
                self.signals.forget_in_child()

            def announce(line: str) -> None:
                if write_fd is not None:
                    with contextlib.suppress(OSError):  # the supervisor stopped listening
                        os.write(write_fd, (line + "\n").encode())

            code = 1
            try:
                directory = self.metrics.directory if self.metrics is not None else None
                code = self.serve_worker(worker_settings, announce, directory)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        if write_fd is not None:
            os.close(write_fd)
        worker = Worker(slot, pid, time.monotonic())
        self.workers[slot] = worker
        if self.metrics is not None:
            self.metrics.worker_started(slot, pid)
        log.info("worker started", extra=_fields(worker=slot, pid=pid, cpus=worker_settings.cpus))
        return worker, read_fd

    def _await_serving(self, worker: Worker, read_fd: int) -> list[str] | None:
        """The lines a worker announced up to `listening on ...`; None if it stopped first."""
        lines: list[str] = []
        pending = b""
        give_up = time.monotonic() + STARTUP_TIMEOUT_S
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while time.monotonic() < give_up:
                ready, _, _ = select.select([pipe], [], [], 0.5)
                if not ready:
                    continue
                chunk = pipe.read(4096)
                if not chunk:
                    return None
                pending += chunk
                while b"\n" in pending:
                    line, _, pending = pending.partition(b"\n")
                    lines.append(line.decode())
                    if lines[-1].startswith("listening on "):
                        return lines
        return None

    def _reap(self, stopping: bool) -> None:
        for worker in list(self.workers.values()):
            if worker.exit_code is not None:
                continue
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = worker.pid, 0
            if pid == 0:
                continue
            worker.exit_code = os.waitstatus_to_exitcode(status)
            self._exited(worker)
            if stopping:
                log.info("worker stopped", extra=_fields(worker=worker.slot, exit_code=worker.exit_code))
                continue
            log.warning(
                "worker exited; starting another",
                extra=_fields(worker=worker.slot, pid=worker.pid, exit_code=worker.exit_code),
            )
            if time.monotonic() - worker.started < RESTART_PAUSE_S:
                time.sleep(RESTART_PAUSE_S)
            self._fork(worker.slot, report=False)

    def _exited(self, worker: Worker) -> None:
        if self.metrics is not None:
            self.metrics.worker_exited(worker.pid)

    def _signal_all(self, sig: int) -> None:
        for worker in self.workers.values():
            if worker.exit_code is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, sig)

    def _stop_all(self) -> None:
        self._signal_all(signal.SIGTERM)
        for worker in self.workers.values():
            if worker.exit_code is None:
                with contextlib.suppress(ChildProcessError):
                    worker.exit_code = os.waitstatus_to_exitcode(os.waitpid(worker.pid, 0)[1])
                self._exited(worker)

    def run(self) -> int:
        if self.settings.metrics_listen:
            # Before the first fork: every worker inherits the directory its values go to.
            self.metrics = FleetMetrics()
            try:
                # Printed first, as one process prints it before `listening on`.
                print(f"metrics on {self.metrics.serve(self.settings.metrics_listen)}", flush=True)
            except OSError as exc:
                self.metrics.close()
                print(f"encord-gateway: error: cannot serve metrics on {self.settings.metrics_listen}: {exc}",
                      file=sys.stderr, flush=True)  # fmt: skip
                return 2
        try:
            return self._run()
        finally:
            if self.metrics is not None:
                self.metrics.close()

    def _run(self) -> int:
        # The one thread that acts on signals; it hears of a SIGCHLD taken by the metrics server's thread.
        signals = SignalInbox((signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD))
        self.signals = signals  # each worker forgets it as it forks
        try:
            return self._supervise(signals)
        finally:
            signals.close()

    def _supervise(self, signals: SignalInbox) -> int:
        announced: list[str] = []
        for slot in range(self.settings.processes):
            worker, read_fd = self._fork(slot, report=True)
            assert read_fd is not None
            lines = self._await_serving(worker, read_fd)
            if lines is None:
                self._stop_all()
                code = worker.exit_code if worker.exit_code is not None else 1
                log.error("a worker did not start; stopping", extra=_fields(worker=slot, exit_code=code))
                return code or 1
            if slot == 0:
                announced = lines
                for line in lines:
                    if line.startswith("listening on "):
                        self.listen = line.removeprefix("listening on ")
                    elif line.startswith("health on "):
                        self.health_listen = line.removeprefix("health on ")
        for line in announced:
            print(line, flush=True)
        log.info("supervising", extra=_fields(address=self.listen, processes=self.settings.processes))
        stopping = False
        while not (stopping and all(w.exit_code is not None for w in self.workers.values())):
            sig = signals.get()
            if sig == signal.SIGHUP:
                self._signal_all(signal.SIGHUP)
            elif sig in (signal.SIGTERM, signal.SIGINT) and not stopping:
                stopping = True
                log.info("stopping: draining every worker", extra=_fields(grace_s=self.settings.grace_period))
                self._signal_all(signal.SIGTERM)
            self._reap(stopping)
        codes = [w.exit_code for w in self.workers.values()]
        log.info("stopped", extra=_fields(exit_codes=codes))
        return 0 if all(code == 0 for code in codes) else 1


def supervise(settings: config.Settings, serve_worker: ServeWorker) -> int:
    """Runs `settings.processes` workers until SIGTERM; 0 once every one has drained and exited 0."""
    return Supervisor(settings, serve_worker).run()
