"""The reliability suite's shared state: one ledger of keys and outputs, and the secrets scan run last."""

from __future__ import annotations

import pytest
from support.reliability import Ledger

SCAN_MODULE = "test_secrets.py"


@pytest.fixture(scope="session")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """Every key minted and every log, audit file and metrics page written by this suite's stacks."""
    return Ledger(tmp_path_factory.mktemp("reliability"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The secrets scan reads what every other test wrote, so it runs after all of them."""
    scans = [item for item in items if item.path.name == SCAN_MODULE]
    if scans:
        items[:] = [item for item in items if item.path.name != SCAN_MODULE] + scans
