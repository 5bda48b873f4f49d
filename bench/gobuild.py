"""`go build` of bench/goclient, the compiled floor and the Go stub, or why it could not be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def build_go(workdir: Path, mode: str, quick: bool) -> tuple[Path | None, str | None, str | None]:
    """(binary, go version, why not) for bench/goclient."""
    go = shutil.which("go")
    if mode == "off":
        return None, None, "--go off"
    if go is None:
        return None, None, "`go` is not on PATH"
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout.strip()
    binary = workdir / "goclient"
    env = dict(os.environ)
    if quick:
        env["GOPROXY"] = "off"  # quick mode never waits on a download: cached modules or no Go paths
    started = time.monotonic()
    try:
        built = subprocess.run(
            [go, "build", "-o", str(binary), "."],
            cwd=BENCH / "goclient",
            capture_output=True,
            text=True,
            env=env,
            timeout=60 if quick else 300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, version, "go build timed out"
    if built.returncode != 0:
        why = built.stderr.strip().splitlines()[-1:] or ["unknown error"]
        if mode == "on":
            raise SystemExit(f"bench/run.py: go build failed:\n{built.stderr}")
        return None, version, f"go build failed: {why[0]}"
    log(f"built bench/goclient in {time.monotonic() - started:.1f}s")
    return binary, version, None
