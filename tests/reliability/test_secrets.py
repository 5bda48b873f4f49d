"""After the whole suite: no API key it saw minted and no part of an SSH private key is in any output.

Scanned: every gateway and emulator log, every audit file and every metrics page that the suite's stacks
wrote (conftest.py runs this module last). The keys are those answered to callers and those the emulators
stored (read from their SQLite state), so a key whose create was answered with an error is looked for too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from encord_gateway_client.v1 import api_keys_pb2 as pb
from reliability.harness import Ledger, invoke, reliability_stack, report, secret_needles

SCANNED = ("*.log", "*.jsonl", "metrics-*.txt")
# Runs of the key alphabet (URL-safe base64) long enough to hold a key; each is checked window by window.
TOKEN = re.compile(r"[A-Za-z0-9_\-]{20,}")


def exercise(ledger: Ledger) -> None:
    """When this module runs alone: mint keys through every kind of call, so there is something to find."""
    with reliability_stack(ledger, "secrets-alone") as stack, stack.channel() as channel:
        stub = stack.stub(channel)
        project, dataset = stack.projects[0], stack.datasets[0]
        ledger.saw(
            [
                invoke(
                    "c",
                    stub.CreateProjectApiKey,
                    pb.CreateProjectApiKeyRequest(
                        project_hash=project, title="secret scan", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
                    ),
                    timeout=20,
                ),
                invoke(
                    "c",
                    stub.CreateDatasetApiKey,
                    pb.CreateDatasetApiKeyRequest(
                        dataset_hash=dataset, title="secret scan", scopes=[pb.DATASET_SCOPE_READ]
                    ),
                    timeout=20,
                ),
                invoke(
                    "g",
                    stub.GetOrCreateProjectApiKey,
                    pb.GetOrCreateProjectApiKeyRequest(project_hash=project),
                    timeout=20,
                ),
                invoke(
                    "l",
                    stub.ListDatasetApiKeys,
                    pb.ListDatasetApiKeysRequest(dataset_hash=dataset),
                    timeout=20,
                ),
            ]
        )


def leaks_in(text: str, keys: set[str], key_lengths: set[int], needles: list[str]) -> list[str]:
    found = [n[:12] + "..." for n in needles if n in text]
    for match in TOKEN.finditer(text):
        token = match.group(0)
        for length in key_lengths:
            for start in range(0, len(token) - length + 1):
                if token[start : start + length] in keys:
                    found.append(f"api key {token[start : start + 8]}...")
    return found


def scan(ledger: Ledger) -> None:
    if not ledger.keys:
        exercise(ledger)
    keys = {k for k in ledger.keys if len(k) >= 20}
    needles = [n for path in ledger.ssh_key_files if path.exists() for n in secret_needles(path)]
    files = sorted({f for folder in ledger.folders for pattern in SCANNED for f in folder.rglob(pattern)})
    leaks: dict[Path, list[str]] = {}
    scanned_bytes = 0
    for path in files:
        text = path.read_text(errors="replace")
        scanned_bytes += len(text)
        found = leaks_in(text, keys, {len(k) for k in keys}, needles)
        if found:
            leaks[path] = found
    kinds = {"logs": 0, "audit": 0, "metrics": 0}
    for path in files:
        kinds[
            "audit" if path.suffix == ".jsonl" else "metrics" if path.name.startswith("metrics") else "logs"
        ] += 1
    report("secrets", keys=len(keys), ssh_keys=len(ledger.ssh_key_files), files=kinds, bytes=scanned_bytes)
    assert keys, "the suite minted no keys to look for"
    assert needles, "no SSH key to look for"
    assert kinds["logs"], kinds
    assert kinds["audit"], kinds
    assert not leaks, {str(path): found[:5] for path, found in leaks.items()}


def test_the_scanner_finds_what_it_looks_for() -> None:
    key = "0-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-xyz"[:41]
    assert leaks_in(f'{{"x": "prefix{key}suffix"}}', {key}, {len(key)}, [])
    assert leaks_in("ssh PEM line here", set(), set(), ["PEM line"])
    assert not leaks_in(f"fingerprint {key[:16]}", {key}, {len(key)}, [])


def test_no_secret_in_any_output(ledger: Ledger) -> None:
    scan(ledger)


@pytest.mark.slow
def test_no_secret_in_any_output_after_the_long_suite(ledger: Ledger) -> None:
    scan(ledger)
