"""`serve --processes 2 --metrics-listen`: one /metrics sums both workers, through a kill; --cpus pins."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import Service, start_gateway, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families
from support.fleet import channel_reaching, children, connections_to, wait_for
from support.reliability import metrics_address, new_hashes, scrape, start_emulator

LIST = "ListProjectApiKeys"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(page: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def get(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@dataclass
class Pair:
    gateway: Service
    project: str
    tmp: Path  # the gateway's TMPDIR: where the supervisor makes the workers' metrics directory
    calls: int = 0  # List calls made, each answered OK
    channels: list[grpc.Channel] = field(default_factory=list)

    def workers(self) -> set[int]:
        return children(self.gateway.process.pid)

    def page(self) -> Samples:
        address = metrics_address(self.gateway)
        assert address is not None, self.gateway.output[-5:]
        return samples(scrape(address))

    def listed(self) -> float | None:
        """What the page counts of the List calls answered OK."""
        return get(self.page(), "encord_gateway_calls_total", method=LIST, code="OK")

    def list_on(self, channel: grpc.Channel) -> None:
        pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(
            pb.ListProjectApiKeysRequest(project_hash=self.project), timeout=10
        )
        self.calls += 1

    def channel_to(self, worker: int, tries: int = 64) -> grpc.Channel:
        return channel_reaching(self.gateway.address, worker, self.list_on, self.channels, tries)


TWO_CPUS = len(os.sched_getaffinity(0)) >= 2


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    key_file = tmp_path / "gateway_ed25519"
    fixture = tmp_path / "fixture.toml"
    project = new_hashes(1)[0]
    write_fixture(fixture, write_ssh_key(key_file), projects=[project], datasets=[])
    emulator = start_emulator(tmp_path, fixture, state=tmp_path / "emulator.sqlite")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = [
        "--processes", "2", "--state-url", f"sqlite:///{tmp_path / 'state.db'}",
        "--metrics-listen", "127.0.0.1:0",
    ]  # fmt: skip
    if TWO_CPUS:
        args += ["--cpus", ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0))[:2])]
    gateway = start_gateway(
        f"http://{emulator.address}", key_file, *args,
        env={**os.environ, "TMPDIR": str(tmp)}, log_path=tmp_path / "gateway.log",
    )  # fmt: skip
    running = Pair(gateway, project, tmp)
    try:
        yield running
    finally:
        for channel in running.channels:
            channel.close()
        gateway.stop()
        emulator.stop()


def cpus_allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def test_one_page_sums_both_workers_and_keeps_a_killed_workers_counts(pair: Pair) -> None:
    gateway = pair.gateway
    assert sum("metrics on " in line for line in gateway.output) == 1
    first, second = sorted(pair.workers())
    (directory,) = list(pair.tmp.iterdir())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # The supervisor listens for scrapes; the workers closed the copy of that socket the fork gave them.
    metrics_port = int(str(metrics_address(gateway)).rsplit(":", 1)[1])
    assert connections_to(metrics_port, gateway.process.pid, state="0A") == 1
    assert [connections_to(metrics_port, worker, state="0A") for worker in (first, second)] == [0, 0]

    on_first = pair.channel_to(first)
    on_second = pair.channel_to(second)
    for _ in range(5):
        pair.list_on(on_first)
    for _ in range(7):
        pair.list_on(on_second)
    # Each worker wrote its own files: both took calls, and the one page counts them all.
    assert {f"counter_{first}.db", f"counter_{second}.db"} <= {p.name for p in directory.iterdir()}
    assert wait_for(lambda: pair.listed() == pair.calls)
    page = pair.page()
    assert get(page, "encord_gateway_calls_in_flight") == 0
    assert get(page, "encord_gateway_state_store_up", kind="sqlite") == 1
    assert get(page, "encord_gateway_build_info", **_build_labels(page)) == 1
    for process in ("supervisor", "0", "1"):
        assert (get(page, "process_resident_memory_bytes", process=process) or 0) > 0, process
        assert (get(page, "encord_gateway_threads", process=process) or 0) >= 1, process

    # A killed worker's counts stay in the sum, and its replacement adds to them, not over them.
    before = pair.calls
    os.kill(second, signal.SIGKILL)
    others: set[int] = set()

    def replaced() -> bool:
        others.clear()
        others.update(pair.workers() - {first})  # one reading of /proc: the set can change between two
        return len(others) == 1 and second not in others

    assert wait_for(replaced), gateway.output[-5:]
    (replacement,) = others
    assert wait_for(lambda: sum('"serving"' in line for line in gateway.output) == 3), gateway.output[-5:]
    assert pair.listed() == before
    # Its live gauges (in flight, store state) are dropped; its counters are kept.
    files = {p.name for p in directory.iterdir()}
    assert f"counter_{second}.db" in files
    assert f"gauge_livesum_{first}.db" in files
    assert wait_for(lambda: f"gauge_livesum_{second}.db" not in {p.name for p in directory.iterdir()})
    assert f"gauge_livemin_{second}.db" not in {p.name for p in directory.iterdir()}
    on_replacement = pair.channel_to(replacement)
    for _ in range(3):
        pair.list_on(on_replacement)
    assert wait_for(lambda: pair.listed() == pair.calls)
    page = pair.page()
    # The dead worker's live gauges are gone: one in-flight sum, one store state, of live workers only.
    assert get(page, "encord_gateway_calls_in_flight") == 0
    assert get(page, "encord_gateway_state_store_up", kind="sqlite") == 1
    assert get(page, "process_resident_memory_bytes", process="1") is not None

    if TWO_CPUS:
        # --cpus with two CPUs: one worker on each, the replacement on the dead one's.
        allowed = {cpus_allowed(first), cpus_allowed(replacement)}
        assert len(allowed) == 2, allowed
        assert all(cpus.isdigit() for cpus in allowed), allowed

    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0
    assert not directory.exists(), "the workers' metrics directory outlived the gateway"


def _build_labels(page: Samples) -> dict[str, str]:
    (labels,) = [dict(labels) for name, labels in page if name == "encord_gateway_build_info"]
    return labels
