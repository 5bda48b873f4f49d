"""Fixtures for the emulator tests: SSH keys made once, and emulators started as real processes on port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from encord_gateway.dev.devstack import write_ssh_key
from support.emulator_users import ROLES, Emulator, Spawn, spawn_emulator, stop_all


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict[str, str]]:
    """One private key file per role and the public key lines; generated once for the whole run."""
    root = tmp_path_factory.mktemp("ssh-keys")
    paths = {role: root / f"{role}_ed25519" for role in ROLES}
    public = {role: write_ssh_key(path) for role, path in paths.items()}
    return paths, public


@pytest.fixture
def spawn(tmp_path: Path, ssh_keys: tuple[dict[str, Path], dict[str, str]]) -> Iterator[Spawn]:
    """Starts emulators for one test (`spawn("--mirror-status")`); each must exit 0 on SIGTERM."""
    started: list[Emulator] = []

    def start(*args: str, **kwargs: Any) -> Emulator:
        return spawn_emulator(tmp_path, ssh_keys, started, *args, **kwargs)

    yield start
    stop_all(started)


@pytest.fixture(scope="module")
def shared_emulator(
    tmp_path_factory: pytest.TempPathFactory, ssh_keys: tuple[dict[str, Path], dict[str, str]]
) -> Iterator[Emulator]:
    started: list[Emulator] = []
    emulator = spawn_emulator(tmp_path_factory.mktemp("emulator"), ssh_keys, started)
    yield emulator
    stop_all(started)


@pytest.fixture
def emulator(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The module's emulator, with no faults before and after the test."""
    assert shared_emulator.admin("DELETE", "faults").status_code == 200
    yield shared_emulator
    assert shared_emulator.admin("DELETE", "faults").status_code == 200
