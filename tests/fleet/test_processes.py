"""`serve --processes 2`: two workers on one port; SIGHUP and SIGTERM reach both; a dead one is replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import Service, cli_argv, start_gateway, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.fleet import channel_reaching, children, outcome, wait_for
from support.reliability import FaultProxy, new_hashes, start_emulator


@dataclass
class Supervised:
    gateway: Service
    proxy: FaultProxy
    project: str

    def workers(self) -> set[int]:
        return children(self.gateway.process.pid)

    def connect_until(self, worker: int, channels: list[grpc.Channel], tries: int = 64) -> grpc.Channel:
        def list_keys(channel: grpc.Channel) -> None:
            pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(
                pb.ListProjectApiKeysRequest(project_hash=self.project), timeout=10
            )

        return channel_reaching(self.gateway.address, worker, list_keys, channels, tries)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    key_file = tmp_path / "gateway_ed25519"
    fixture = tmp_path / "fixture.toml"
    project = new_hashes(1)[0]
    write_fixture(fixture, write_ssh_key(key_file), projects=[project], datasets=[])
    emulator = start_emulator(tmp_path, fixture, state=tmp_path / "emulator.sqlite")
    proxy = FaultProxy(emulator.address)
    args = ["--processes", "2", "--state-url", f"sqlite:///{tmp_path / 'state.db'}"]
    gateway = start_gateway(proxy.url, key_file, *args, log_path=tmp_path / "gateway.log")
    try:
        yield Supervised(gateway, proxy, project)
    finally:
        proxy.release()
        gateway.stop()
        proxy.close()
        emulator.stop()


def lines(gateway: Service, text: str) -> int:
    return sum(text in line for line in list(gateway.output))


def test_two_workers_serve_one_port_reload_drain_and_are_replaced(supervised: Supervised) -> None:
    gateway = supervised.gateway
    assert lines(gateway, "listening on ") == 1
    first, second = sorted(supervised.workers())
    channels: list[grpc.Channel] = []
    try:
        # Calls land on both workers.
        on_first = supervised.connect_until(first, channels)
        on_second = supervised.connect_until(second, channels)

        # SIGHUP to the supervisor reaches both.
        gateway.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: lines(gateway, '"config reloaded"') == 2), gateway.output[-5:]

        # A killed worker is replaced, and the replacement serves the same port.
        os.kill(second, signal.SIGKILL)
        assert wait_for(
            lambda: len(supervised.workers() - {first}) == 1 and second not in supervised.workers()
        )
        (replacement,) = supervised.workers() - {first}
        assert wait_for(lambda: lines(gateway, '"serving"') == 3)  # two at start, one replacement
        on_second = supervised.connect_until(replacement, channels)

        # SIGTERM drains both: a call held upstream on each worker finishes OK, then exit 0.
        supervised.proxy.hold()
        answers: list[str] = []
        request = pb.ListProjectApiKeysRequest(project_hash=supervised.project)
        held = [
            threading.Thread(
                target=lambda c=channel: answers.append(
                    outcome(lambda: pb_grpc.ApiKeyServiceStub(c).ListProjectApiKeys(request, timeout=30))
                )
            )
            for channel in (on_first, on_second)
        ]
        for thread in held:
            thread.start()
        assert supervised.proxy.wait_held(2, timeout=15)
        gateway.process.send_signal(signal.SIGTERM)
        assert wait_for(lambda: lines(gateway, "stopping: draining in-flight calls") == 2)
        supervised.proxy.release()
        for thread in held:
            thread.join(30)
        assert answers == ["OK", "OK"]
        assert gateway.process.wait(30) == 0
        assert lines(gateway, '"stopped"') == 3  # each worker, then the supervisor
    finally:
        for channel in channels:
            channel.close()


def test_processes_above_one_refuse_the_memory_store_with_one_line(tmp_path: Path) -> None:
    key_file = tmp_path / "gateway_ed25519"
    write_ssh_key(key_file)
    result = subprocess.run(
        [*cli_argv("serve", "--processes", "2", "--ssh-key-file", str(key_file), "--listen", "127.0.0.1:0")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "processes above 1 need a shared state_url" in result.stderr
    assert "listening on" not in result.stdout
