"""One /metrics for the workers of `serve --processes N`: each writes values to files, the supervisor sums.

prometheus_client's multiprocess mode: each worker keeps its values in memory-mapped files of its own
in one directory, and the supervisor's page merges every file there. A counter's files outlive their
worker, so a killed worker's counts stay in the sums (and its replacement counts on from zero in files
of its own: nothing is counted twice); `worker_exited()` drops a dead worker's live gauges. What a worker
cannot put in a file (its memory, CPU, descriptors, threads) the supervisor reads from /proc, by worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, values
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from encord_gateway.api.metrics import PREFIX, MetricsEndpoint

__all__ = ["FleetMetrics", "share_values"]

# prometheus_client names each worker's files after this variable (and has no other way to be told).
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR = "supervisor"


def share_values(directory: str) -> None:
    """In a worker, before it makes any metric: its values go to files of its own in `directory`."""
    os.environ[DIRECTORY_VARIABLE] = directory
    # The class every metric made from now on keeps its value in; chosen by prometheus_client when it
    # was imported, which was before the supervisor forked this worker.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def _threads(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"Threads:"):
                    return float(line.split()[1])
    except OSError:  # the worker has just exited
        return None
    return None


class _Processes(Collector):
    """process_* and encord_gateway_threads of the supervisor and each live worker, by `process` label."""

    def __init__(self, fleet: FleetMetrics) -> None:
        self._fleet = fleet

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        threads = GaugeMetricFamily(
            f"{PREFIX}_threads", "Live threads, by gateway process.", labels=["process"]
        )
        for name, pid in [(SUPERVISOR, os.getpid()), *self._fleet.live_workers()]:
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "process": name}, sample.value)
            count = _threads(pid)
            if count is not None:
                threads.add_metric([name], count)
        return [*families.values(), threads]


class FleetMetrics(MetricsEndpoint):
    """The supervisor's side: a private directory for the workers' files (0700) and the page summing them.

    Make it before forking the workers (they inherit `directory`), tell it of each worker's start and
    exit, and `close()` it at the end: that stops the page and removes the directory.
    """

    def __init__(self) -> None:
        # mkdtemp makes the directory 0700: another local user can neither read the counts nor plant files
        # that would be summed into them.
        self.directory = tempfile.mkdtemp(prefix="encord-gateway-metrics-")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._workers: dict[int, str] = {}  # pid -> the worker's slot, as a label value
        registry.register(_Processes(self))
        super().__init__(registry)

    def worker_started(self, slot: int, pid: int) -> None:
        with self._lock:
            self._workers[pid] = str(slot)

    def worker_exited(self, pid: int) -> None:
        """Drops a dead worker's live gauges (calls in flight, the store's state); its counters stay."""
        with self._lock:
            self._workers.pop(pid, None)
        mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def live_workers(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted((slot, pid) for pid, slot in self._workers.items())

    def forget_in_child(self) -> None:
        """In a freshly forked worker: close the inherited /metrics sockets (the supervisor keeps serving)."""
        http, self._http = self._http, None
        if http is not None:
            with contextlib.suppress(OSError):
                http.close_inherited()

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.directory, ignore_errors=True)
