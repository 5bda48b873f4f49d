"""The audit trail's group commit: a durable record returns only once a sync that began after it ended."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from encord_gateway.access.audit import AuditTrail


class SlowDisk:
    """os.fsync, recorded: the size each sync began at, once it has ended; slow, so that records pile up."""

    def __init__(self, pause_s: float = 0.005, fail: Callable[[int], bool] = lambda fd: False) -> None:
        self.real = os.fsync
        self.pause_s = pause_s
        self.fail = fail
        self.lock = threading.Lock()
        self.synced_sizes: list[tuple[int, int]] = []  # (inode, size at the sync's start), once it ended
        self.calls = 0

    def __call__(self, fd: int) -> None:
        info = os.fstat(fd)
        with self.lock:
            self.calls += 1
        time.sleep(self.pause_s)
        if self.fail(fd):
            raise OSError(errno.EIO, "Input/output error")
        self.real(fd)
        with self.lock:
            self.synced_sizes.append((info.st_ino, info.st_size))

    def covered(self, inode: int, end: int) -> bool:
        with self.lock:
            return any(ino == inode and size >= end for ino, size in self.synced_sizes)


def _end_of(path: Path, marker: str) -> int:
    """Where the line holding `marker` ends in the file, in bytes."""
    data = path.read_bytes()
    start = data.index(marker.encode())
    return data.index(b"\n", start) + 1


def test_concurrent_mints_share_syncs_and_each_waits_for_one_that_covers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = SlowDisk()
    monkeypatch.setattr(os, "fsync", disk)
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(str(path))
    inode = os.stat(path).st_ino
    uncovered: list[str] = []
    threads_n, records_n = 16, 25

    def mint(worker: int) -> None:
        for i in range(records_n):
            marker = f"w{worker}-r{i}"
            trail.write({"type": "audit", "trace_id": marker}, durable=True)
            # Checked as it returns: the record is inside some sync that has already ended.
            if not disk.covered(inode, _end_of(path, marker)):
                uncovered.append(marker)

    threads = [threading.Thread(target=mint, args=(w,)) for w in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    trail.close()

    lines = path.read_text().splitlines()
    assert len(lines) == threads_n * records_n
    assert {json.loads(line)["trace_id"] for line in lines} == {
        f"w{w}-r{i}" for w in range(threads_n) for i in range(records_n)
    }
    assert uncovered == []
    # One sync per record was the old way; sixteen writers against a 5 ms disk share them.
    assert disk.calls < threads_n * records_n / 2, disk.calls


def test_a_lone_mint_is_synced_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = SlowDisk(pause_s=0)
    monkeypatch.setattr(os, "fsync", disk)
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(str(path))
    trail.write({"type": "audit", "trace_id": "alone"}, durable=True)
    assert disk.covered(os.stat(path).st_ino, _end_of(path, "alone"))
    trail.write({"type": "audit", "trace_id": "not a mint"})
    assert disk.calls == 1  # a record that is not a mint is not synced


def test_a_failed_sync_fails_every_mint_waiting_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = SlowDisk(fail=lambda fd: True)
    monkeypatch.setattr(os, "fsync", disk)
    trail = AuditTrail(str(tmp_path / "audit.jsonl"))
    failures: list[BaseException] = []
    successes: list[int] = []

    def mint(worker: int) -> None:
        try:
            trail.write({"type": "audit", "trace_id": f"w{worker}"}, durable=True)
            successes.append(worker)
        except OSError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=mint, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert successes == []
    assert len(failures) == 8
    assert all(getattr(f, "errno", None) == errno.EIO for f in failures)
    # A record that needs no sync still goes in.
    trail.write({"type": "audit", "trace_id": "a list"})


def test_a_reopen_while_a_sync_runs_leaves_no_mint_unsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGHUP's reopen waits for the running sync, then syncs the old file for the records still waiting."""
    release = threading.Event()
    first = threading.Event()
    real = os.fsync
    synced: list[tuple[int, int]] = []

    def blocking_fsync(fd: int) -> None:
        info = os.fstat(fd)
        if not first.is_set():
            first.set()
            assert release.wait(10)
        real(fd)
        synced.append((info.st_ino, info.st_size))

    monkeypatch.setattr(os, "fsync", blocking_fsync)
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(str(path))
    old_inode = os.stat(path).st_ino
    done: dict[str, bool] = {}

    def mint(name: str) -> None:
        trail.write({"type": "audit", "trace_id": name}, durable=True)
        done[name] = True

    leader = threading.Thread(target=mint, args=("leader",))
    leader.start()
    assert first.wait(10)  # the leader's sync is running, outside the lock
    follower = threading.Thread(target=mint, args=("follower",))
    follower.start()
    _wait_for(lambda: b"follower" in path.read_bytes())
    path.rename(tmp_path / "audit.jsonl.1")  # log rotation, then SIGHUP
    reopener = threading.Thread(target=trail.reopen)
    reopener.start()
    time.sleep(0.05)
    assert reopener.is_alive()  # waits for the running sync before the old descriptor is closed
    release.set()
    for thread in (leader, follower, reopener):
        thread.join(10)
        assert not thread.is_alive()
    assert done == {"leader": True, "follower": True}
    rotated = tmp_path / "audit.jsonl.1"
    assert any(ino == old_inode and size >= _end_of(rotated, "follower") for ino, size in synced)
    trail.write({"type": "audit", "trace_id": "after"}, durable=True)
    assert "after" in path.read_text()
    assert "after" not in rotated.read_text()


def test_a_reopen_whose_old_file_cannot_be_synced_fails_the_mints_waiting_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    started = threading.Event()
    path = tmp_path / "audit.jsonl"
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            started.set()
            assert release.wait(10)
            return
        raise OSError(errno.EIO, "Input/output error")  # the old file's sync, at the reopen

    monkeypatch.setattr(os, "fsync", fsync)
    trail = AuditTrail(str(path))
    outcome: dict[str, str] = {}

    def mint(name: str) -> None:
        try:
            trail.write({"type": "audit", "trace_id": name}, durable=True)
            outcome[name] = "ok"
        except OSError as exc:
            outcome[name] = errno.errorcode.get(exc.errno or 0, "?")

    leader = threading.Thread(target=mint, args=("leader",))
    leader.start()
    assert started.wait(10)
    follower = threading.Thread(target=mint, args=("follower",))
    follower.start()
    _wait_for(lambda: b"follower" in path.read_bytes())
    reopener = threading.Thread(target=trail.reopen)
    reopener.start()
    _wait_for(lambda: reopener.is_alive())
    release.set()
    for thread in (leader, follower, reopener):
        thread.join(10)
    # The follower may also have become the next leader before the reopen: its own sync failed then.
    assert outcome == {"leader": "ok", "follower": "EIO"}


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
