"""A stack that can lose answers: emulator, a FaultProxy in front of it, and a gateway through the proxy."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
from encord_gateway.dev.devstack import Service, write_fixture, write_ssh_key

from support.reliability import FaultProxy, start_emulator, start_gateway, stored_keys

PROJECT = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"
# A proxy rule's needle for Encord creates: `faults.only_bodies_with = CREATES` loses only their answers.
CREATES = b'"query_method": "POST"'


@dataclass
class LossyStack:
    """Encord stores what it was sent (`state`, the emulator's SQLite) whatever the proxy lets back."""

    workdir: Path
    key_file: Path
    state: Path
    emulator: Service
    proxy: FaultProxy
    gateway_args: Sequence[str]
    gateway: Service = field(init=False)

    def another_gateway(self, *args: str) -> Service:
        """A gateway (audit file, metrics port) through the proxy, with the stack's arguments and `args`."""
        return start_gateway(self.workdir, self.key_file, self.proxy.url, args=[*self.gateway_args, *args])

    def start_gateway(self, *args: str) -> None:
        self.gateway = self.another_gateway(*args)

    def restart_gateway(self, *args: str) -> None:
        self.gateway.stop()
        self.start_gateway(*args)

    def titles(self) -> Counter[str]:
        """How many keys Encord holds of each title."""
        return Counter(title for _, title in stored_keys(self.state).values())

    def emulator_faults(self, **settings: object) -> None:
        answer = requests.put(f"http://{self.emulator.address}/_emulator/faults", json=settings, timeout=10)
        assert answer.status_code == 200, answer.text

    def keys(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`encord-gateway keys ...` against this stack's gateway, with no other gateway setting around."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORD_GATEWAY_")}
        env["ENCORD_GATEWAY_ADDRESS"] = self.gateway.address
        return subprocess.run(
            [sys.executable, "-m", "encord_gateway", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@contextlib.contextmanager
def lossy_stack(workdir: Path, *gateway_args: str) -> Iterator[LossyStack]:
    """One project (PROJECT), its admin's key for the gateway; stopped in reverse order."""
    key_file = workdir / "gateway_ed25519"
    fixture = workdir / "fixture.toml"
    write_fixture(fixture, write_ssh_key(key_file), projects=[PROJECT], datasets=[])
    state = workdir / "emulator.sqlite"
    emulator = start_emulator(workdir, fixture, state=state)
    proxy = FaultProxy(emulator.address)
    stack = LossyStack(workdir, key_file, state, emulator, proxy, gateway_args)
    try:
        stack.start_gateway()
        yield stack
    finally:
        if hasattr(stack, "gateway"):
            stack.gateway.stop()
        proxy.close()
        emulator.stop()
