"""The measured processes: a self-signed certificate, the emulator, the gateway, and /proc accounting."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from encord_gateway.dev.devstack import cli_argv

STARTUP_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def write_self_signed(cert_path: Path, key_path: Path) -> None:
    """A P-256 certificate for 127.0.0.1 and localhost that is its own CA, so that it can be trusted alone."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "encord-gateway bench emulator")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)


@dataclass
class Process:
    """A server child that printed `listening on HOST:PORT`; its stderr goes to a file, not through us."""

    name: str
    popen: subprocess.Popen[str]
    address: str
    # A supervisor of worker processes (`serve --processes N`): its CPU is summed over the tree.
    tree: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def start(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    *,
    tree: bool = False,
) -> Process:
    """Starts `argv` and waits for its `listening on` line; its logs go straight to `log_path`."""
    log = log_path.open("ab")
    popen = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **(env or {})},
    )
    log.close()
    assert popen.stdout is not None
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        # Keeps draining stdout for the child's whole life (little comes after the first line).
        assert popen.stdout is not None
        for line in popen.stdout:
            if not found and line.startswith("listening on "):
                found.append(line.split()[-1])
                ready.set()
        ready.set()

    threading.Thread(target=read, name=f"{name}-stdout", daemon=True).start()
    if not ready.wait(STARTUP_TIMEOUT_S) or not found:
        popen.kill()
        popen.wait()
        raise RuntimeError(f"{name} did not start; see {log_path}:\n{log_path.read_text()[-2000:]}")
    return Process(name, popen, found[0], tree)


def pinned(cpus: str | None) -> list[str]:
    """The prefix that runs a command on `cpus` only; taskset execs it, so the pid stays the command's."""
    return ["taskset", "-c", cpus] if cpus else []


def start_emulator(
    workdir: Path, fixture: Path, tls: tuple[Path, Path] | None, cpus: str | None = None
) -> Process:
    argv = cli_argv("emulator", "--listen", "127.0.0.1:0", "--fixture", str(fixture), "--quiet")
    if tls:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    return start("emulator", [*pinned(cpus), *argv], workdir / "emulator.log")


def start_gateway(
    workdir: Path,
    url: str,
    key_file: Path,
    ca_file: Path | None,
    extra: Sequence[str],
    cpus: str | None = None,
    env: dict[str, str] | None = None,
    *,
    name: str = "gateway",
) -> Process:
    argv = cli_argv(
        "serve", "--listen", "127.0.0.1:0", "--encord-domain", url, "--ssh-key-file", str(key_file)
    )
    if ca_file:
        argv += ["--encord-ca-file", str(ca_file)]
    several = any(a.startswith("--processes") and not a.endswith("=1") for a in extra)
    return start(name, [*pinned(cpus), *argv, *extra], workdir / f"{name}.log", env, tree=several)


def start_empty_server(workdir: Path, read_keys: int, cpus: str | None = None) -> Process:
    script = Path(__file__).resolve().parent / "empty_server.py"
    argv = [sys.executable, str(script), "--listen", "127.0.0.1:0", "--read-keys", str(read_keys)]
    return start("grpc-empty", [*pinned(cpus), *argv], workdir / "empty-server.log")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_redis(workdir: Path, cpus: str | None = None) -> Process:
    """A throwaway redis-server on a free loopback port (the bench's twin of tests/support/redis_server.py).

    Append-only with `appendfsync everysec`, Redis's own default for AOF, as a fleet's store runs:
    the test twin's `always` would measure this disk's fsync, not the store.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    import redis

    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        port = free_port()
        argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
        argv += ["--logfile", str(workdir / "redis.log"), "--save", "", "--daemonize", "no"]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        popen = subprocess.Popen([*pinned(cpus), *argv], stdout=subprocess.DEVNULL, text=True)
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while popen.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return Process("redis", popen, f"127.0.0.1:{port}")
            except redis.RedisError:
                time.sleep(0.02)
        popen.kill()  # the port was taken between the probe and the bind, or it hung: try another
        popen.wait()
    raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}")


@dataclass(frozen=True)
class CpuSample:
    """utime + stime of a process, in seconds, and when it was read."""

    cpu_s: float
    at: float


def cpu_sample(pid: int) -> CpuSample:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name may hold spaces; the fields after it are fixed. utime, stime: fields 14, 15.
    fields = text[text.rindex(")") + 2 :].split()
    return CpuSample((int(fields[11]) + int(fields[12])) / CLOCK_TICKS, time.monotonic())


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds: its own code, and the kernel's work for it."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    text = f.read()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    return parents


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (this kernel has no /proc/PID/task/TID/children to ask)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, ()))
    return found


def tree_cpu_sample(pid: int) -> CpuSample:
    """utime + stime summed over `pid` and its live descendants (a supervisor and its workers)."""
    total = 0.0
    for member in descendants(pid):
        try:
            total += cpu_sample(member).cpu_s
        except OSError:
            continue  # exited between the scan and the read
    return CpuSample(total, time.monotonic())


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all CPUs; idle and iowait excluded), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB: resident now, and the peak since the process started."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


class RssSampler:
    """Polls a process's VmRSS every `interval` seconds; `take()` returns the peak since the last take.

    With `tree`, the sum over the process and its descendants (pages the workers share after the
    fork are counted in each: an upper bound).
    """

    def __init__(self, pid: int, interval: float = 0.05, *, tree: bool = False) -> None:
        self._pid = pid
        self._tree = tree
        self._interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _read(self) -> int:
        if not self._tree:
            return rss_kb(self._pid)[0]
        total = 0
        for member in descendants(self._pid):
            try:
                total += rss_kb(member)[0]
            except OSError:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                rss = self._read()
            except OSError:
                return
            with self._lock:
                self._peak = max(self._peak, rss)

    def take(self) -> int:
        try:
            rss = self._read()
        except OSError:
            rss = 0
        with self._lock:
            peak, self._peak = max(self._peak, rss), rss
        return peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
