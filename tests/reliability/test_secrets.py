"""After the whole suite: no API key it saw minted and no part of an SSH private key is in any output.

Scanned: every gateway and emulator log, every audit file and every metrics page that the suite's stacks
wrote (conftest.py runs this module last), and a Redis that a gateway minted keys through: every key name,
every value and its append-only file. The keys are those answered to callers and those the emulators
stored (read from their SQLite state), so a key whose create was answered with an error is looked for too.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import redis
from encord_gateway_client.v1 import api_keys_pb2 as pb
from support.fleet import create_request, running_fleet
from support.reliability import (
    Ledger,
    invoke,
    metrics_address,
    reliability_stack,
    report,
    scrape,
    secret_needles,
    stored_keys,
)

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


def redis_entries(client: redis.Redis) -> dict[str, tuple[str, int]]:
    """Every key in the Redis (SCAN, as `redis-cli --scan` does): its value as text, and its TTL in ms."""
    entries: dict[str, tuple[str, int]] = {}
    for raw in client.scan_iter(count=1000):
        kind_raw = client.type(raw)
        assert isinstance(kind_raw, bytes)
        kind = kind_raw.decode()
        if kind == "string":
            value: object = client.get(raw)
        elif kind == "hash":
            value = client.hgetall(raw)
        elif kind == "list":
            value = client.lrange(raw, 0, -1)
        elif kind == "set":
            value = client.smembers(raw)
        elif kind == "zset":
            value = client.zrange(raw, 0, -1, withscores=True)
        else:
            value = client.dump(raw)
        entries[raw.decode(errors="replace")] = (repr(value), int(client.pttl(raw)))
    return entries


def test_no_secret_in_redis(ledger: Ledger) -> None:
    """A gateway on Redis mints keys every way that writes there; nothing in Redis betrays a secret."""
    workdir = ledger.folder("secrets-redis")
    with running_fleet(workdir, replicas=1, projects=3) as fleet:
        with ledger.lock:
            ledger.ssh_key_files.append(fleet.key_file)
        stub = fleet.replica_stubs()[0]
        limited = fleet.replica_stubs(fleet.callers.limited)[0]
        project, other = fleet.fresh_project(), fleet.fresh_project()
        outcomes = [
            # A request-id record, and the lease of its title and scopes.
            invoke(
                "c",
                stub.CreateProjectApiKey,
                create_request(project, "redis scan", str(uuid.uuid4())),
                timeout=20,
            ),
            # A master key under the resource's lease.
            invoke(
                "g",
                stub.GetOrCreateProjectApiKey,
                pb.GetOrCreateProjectApiKeyRequest(project_hash=other),
                timeout=20,
            ),
            # A rate-limit bucket for the limited caller, whose list reveals the keys.
            invoke(
                "l",
                limited.ListProjectApiKeys,
                pb.ListProjectApiKeysRequest(project_hash=project),
                timeout=20,
            ),
        ]
        ledger.saw(outcomes)
        assert all(o.ok for o in outcomes), [o.code for o in outcomes]
        address = metrics_address(fleet.gateways[0])
        assert address is not None
        (workdir / "metrics-redis.txt").write_text(scrape(address))
        with fleet.redis.client() as client:
            entries = redis_entries(client)
        keys = {k for k in ledger.keys | set(stored_keys(fleet.emulator_state)) if len(k) >= 20}
        minted = set(stored_keys(fleet.emulator_state))
    needles = [*secret_needles(fleet.key_file), fleet.callers.fleet, fleet.callers.limited]
    lengths = {len(k) for k in keys}
    leaks = {name: found for name in entries if (found := leaks_in(name, keys, lengths, needles))}
    leaks |= {
        f"value of {name}": found
        for name, (value, _) in entries.items()
        if (found := leaks_in(value, keys, lengths, needles))
    }
    appendonly = sorted(fleet.redis.workdir.rglob("*.aof"))
    for path in appendonly:  # every write Redis took, those since deleted or expired too
        if found := leaks_in(path.read_text(errors="replace"), keys, lengths, needles):
            leaks[str(path)] = found
    report("secrets-redis", keys=len(keys), redis_keys=len(entries), appendonly_files=len(appendonly))
    assert len(minted) >= 2, minted  # the create and the master key
    prefix = "encord-gateway:"
    assert any(name.startswith(f"{prefix}rate:") for name in entries), sorted(entries)
    assert any(not name.startswith((f"{prefix}rate:", f"{prefix}lock:")) for name in entries), sorted(entries)
    assert all(name.startswith(prefix) for name in entries), sorted(entries)
    assert appendonly, "no append-only file to scan"
    assert not leaks, leaks
    assert not {name: ttl for name, (_, ttl) in entries.items() if ttl <= 0}, "a key that never expires"


def test_no_secret_in_any_output(ledger: Ledger) -> None:
    scan(ledger)


@pytest.mark.slow
def test_no_secret_in_any_output_after_the_long_suite(ledger: Ledger) -> None:
    scan(ledger)
