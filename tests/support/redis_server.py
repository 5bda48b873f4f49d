"""A throwaway redis-server on a free loopback port: started, stopped and restarted on the same port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis


def redis_server_binary() -> str:
    """Debian's redis-server (.ci/run installs it); outside CI a missing one skips, in CI it fails."""
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: apt-get install -y redis-server")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process in its own directory, with an append-only file that survives a restart.

    `appendfsync always`: a record written before Redis was stopped is there after it started again,
    as an operator's Redis with AOF persistence keeps it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.binary = redis_server_binary()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.tls = tls  # (CA certificate, server certificate, server private key), PEM files
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [
            self.binary,
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.tls:
            ca, cert, key = self.tls
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            argv += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self, timeout: float = 15.0) -> RedisServer:
        for _ in range(3):
            self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return self
            self.process.kill()
            self.process.wait()
            if self.tls or self.process.returncode is None:
                break
            self.port = free_port()  # taken by someone else between the probe and the bind
        log = (self.workdir / "redis.log").read_text() if (self.workdir / "redis.log").exists() else ""
        raise RuntimeError(f"redis-server did not start on port {self.port}: {log[-2000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with self.client() as probe:  # closed: a client left to the collector leaves its socket open
                    probe.ping()
                return True
            except redis.RedisError:
                time.sleep(0.02)
        return False

    def client(self) -> redis.Redis:
        ca = {"ssl_ca_certs": str(self.tls[0])} if self.tls else {}
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            ssl=bool(self.tls),
            socket_timeout=2,
            **ca,  # type: ignore[arg-type]
        )

    def stop(self) -> None:
        """SIGTERM, as an operator's restart does: Redis flushes its append-only file and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
