"""bench/profiling.py's reading of py-spy's and perf's output, and its summary, on fixed text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import profiling

THREADS = "_worker (/root/.pyenv/versions/3.11.7/lib/python3.11/concurrent/futures/thread.py)"
RAW = (
    f"{THREADS};run (/work/x/server/encord_gateway/api/frame.py) 30\n"
    f"{THREADS};write (/work/x/server/encord_gateway/access/audit.py) 10\n"
    "_serve (/venv/lib/python3.11/site-packages/grpc/_server.py) 60\n"
)
PERF = """\
# Overhead  Shared Object
# ........  ......................
#
    55.00%  libpython3.11.so.1.0
    20.00%  [kernel.kallsyms]
    15.00%  cygrpc.cpython-311-x86_64-linux-gnu.so
     6.00%  libc.so.6
     4.00%  libfoo.so
"""


def test_raw_stacks_are_read_root_first_with_paths_cut_to_the_module() -> None:
    stacks = profiling.parse_raw(RAW)
    assert stacks[("_serve (grpc/_server.py)",)] == 60
    assert stacks[("_worker (concurrent/futures/thread.py)", "write (encord_gateway/access/audit.py)")] == 10
    assert sum(stacks.values()) == 100


@pytest.mark.parametrize(
    ("frame", "want"),
    [
        ("_serve (grpc/_server.py)", "grpc (framework)"),
        ("_worker (concurrent/futures/thread.py)", "grpc (framework)"),
        ("fill (encord_gateway/upstream/http1/framing.py)", "upstream exchange (http1, ssl, socket)"),
        ("emit (logging/__init__.py)", "logging"),
        ("iterencode (json/encoder.py)", "json"),
        ("write (encord_gateway/access/audit.py)", "gateway: access/audit.py"),
        ("claim (encord_gateway/state/redis.py)", "state store"),
        ("basename (<frozen posixpath>)", "other (stdlib, interpreter)"),
    ],
)
def test_frames_fall_into_groups_by_their_module(frame: str, want: str) -> None:
    assert profiling.group(frame) == want


def test_perf_shares_are_summed_by_group_of_shared_object() -> None:
    shares = profiling.parse_perf(PERF)
    assert shares == pytest.approx(
        {
            "interpreter (Python code)": 0.55,
            "kernel (sockets, futexes, scheduling)": 0.20,
            "grpc core (C)": 0.15,
            "libc (malloc, locks)": 0.06,
            "other": 0.04,
        }
    )


def test_samples_are_read_as_shares_of_the_measured_cpu_per_call() -> None:
    gateway = profiling.Profile(
        "gateway", "read", 1000.0, 200.0, profiling.parse_raw(RAW), profiling.parse_perf(PERF)
    )
    assert gateway.us(60) == pytest.approx(600.0)
    empty = profiling.Profile("grpc-empty", "read", 400.0, 100.0, {("_serve (grpc/_server.py)",): 50}, {})
    meta = {"started_at": "now", "cpus": 2, "platform": "linux", "python": "3.11", "loadavg": [1.0, 1.0, 1.0]}
    text = profiling.summary({"http": [(gateway, empty)]}, meta)
    assert "gateway 1000 µs, grpc-empty 400 µs: 2.50 times" in text
    # grpc's frames: 600 µs of the gateway's, all 400 of grpc-empty's.
    assert "| grpc (framework) | 600 | 400 | +200 |" in text
    assert "| gateway: access/audit.py | 100 | 0 | +100 |" in text
    # grpc-empty had no perf: no split by shared object is claimed for the pair.
    assert "no split by shared object" in text
