"""The reliability suite's tools: stacks of real processes, a fault proxy, call outcomes, /proc figures."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from encord_gateway.dev.devstack import Service, cli_argv, start_service, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_status import rpc_status

# Answers that say nothing about whether Encord stored a key: the request may have been sent (and
# processed) before the connection dropped, the answer was garbled, or the deadline ran out.
UNKNOWN_OUTCOME = {
    ("UNAVAILABLE", "UPSTREAM_CONNECTION_ERROR"),
    ("UNAVAILABLE", "UPSTREAM_TIMEOUT"),
    ("UNAVAILABLE", "UPSTREAM_BAD_RESPONSE"),
    ("UNAVAILABLE", "UPSTREAM_HTTP_ERROR"),
    ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
    ("DEADLINE_EXCEEDED", ""),  # the caller's own deadline fired first: grpc's status, no details
}
# Codes no test may ever see.
FORBIDDEN = {"INTERNAL", "UNKNOWN"}
METRICS_LINE = re.compile(r"^metrics on (\S+)$")


# Outcomes of calls --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One RPC as the caller saw it."""

    kind: str
    code: str
    reason: str = ""
    message: str = ""
    started: float = 0.0
    ended: float = 0.0
    response: Any = None
    request: Any = None

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def reason_of(error: grpc.RpcError) -> str:
    """The ErrorInfo reason in the trailers, or "" when grpc itself ended the call (no details)."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        return "?"  # a status whose code disagrees with the call's: worth seeing in a report
    if status is None:
        return ""
    from google.rpc import error_details_pb2

    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def retry_delay(error: grpc.RpcError) -> float:
    """The seconds a refusal's RetryInfo asks the caller to wait (REQUEST_IN_PROGRESS has one), or 0."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    from google.rpc import error_details_pb2

    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return 0.0


def invoke(kind: str, method: Callable[..., Any], request: Any, **kwargs: Any) -> Outcome:
    """Calls a stub method and records what came back; never raises for a gRPC status."""
    started = time.monotonic()
    try:
        response = method(request, **kwargs)
    except grpc.RpcError as error:
        call: grpc.Call = error  # type: ignore[assignment]
        return Outcome(
            kind,
            call.code().name,
            reason_of(error),
            call.details() or "",
            started,
            time.monotonic(),
            request=request,
        )
    return Outcome(kind, "OK", "", "", started, time.monotonic(), response, request)


def tally(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Answers by `CODE` or `CODE/REASON`, for assertions messages and the report."""
    counts: Counter[str] = Counter(f"{o.code}/{o.reason}" if o.reason else o.code for o in outcomes)
    return dict(sorted(counts.items()))


def forbidden(outcomes: Sequence[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.code in FORBIDDEN]


# What the suite must find nowhere: the ledger ----------------------------------------------------------


@dataclass
class Ledger:
    """Every API key the suite saw minted, every SSH key file, and the folders whose outputs are scanned."""

    root: Path
    keys: set[str] = field(default_factory=set)
    ssh_key_files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def folder(self, name: str) -> Path:
        path = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        with self.lock:
            self.folders.append(path)
        return path

    def saw(self, outcomes: Sequence[Outcome]) -> None:
        """Keeps the keys in OK answers (creates, get-or-creates and lists)."""
        found: set[str] = set()
        for outcome in outcomes:
            response = outcome.response
            if response is None:
                continue
            for item in getattr(response, "api_keys", [response]):
                if getattr(item, "api_key", ""):
                    found.add(item.api_key)
        with self.lock:
            self.keys |= found

    def stored(self, state_file: Path) -> None:
        """Every key the emulator stored, whatever the caller was told."""
        with self.lock:
            self.keys |= set(stored_keys(state_file))


def stored_keys(state_file: Path) -> dict[str, tuple[str, str]]:
    """api_key -> (resource hash, title) of every key in an emulator's SQLite state."""
    with contextlib.closing(sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT api_key, resource_hash, title FROM api_keys").fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def secret_needles(ssh_key_file: Path) -> list[str]:
    """Strings that would betray the SSH private key: its PEM, each body line, the raw seed (hex, base64)."""
    pem = ssh_key_file.read_text()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    key = load_ssh_private_key(pem.encode(), password=None)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return [
        pem.strip(),
        *[line for line in body if len(line) >= 20],
        raw.hex(),
        base64.b64encode(raw).decode()[:40],
    ]


# A fault proxy between the gateway and the emulator -----------------------------------------------


@dataclass
class ProxyFaults:
    """What the proxy does to an API call *after* the emulator has answered it (and so stored any key)."""

    drop_after: float = 0.0  # close the gateway's connection without an answer
    garbage_after: float = 0.0  # answer HTTP 200 with an HTML page instead of Encord's answer
    gateway_timeout_after: float = 0.0  # answer HTTP 504, as a load balancer whose backend was slow
    only_bodies_with: bytes = b""  # strike only calls whose body holds this (b'"POST"' for creates)


class FaultProxy:
    """A keep-alive HTTP/1.1 forwarder to the emulator that can lose answers and can hold requests.

    The emulator's own faults strike *before* it processes a call; these strike after, which is the case
    where a create's outcome is unknown to the gateway: the key exists, the answer never arrived.
    """

    def __init__(self, upstream: str, seed: int = 7) -> None:
        self.upstream = upstream
        self.faults = ProxyFaults()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self._held = 0
        self.hold_only = b""
        self._changed = threading.Condition()
        self.forwarded = 0
        self.injected: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._closed = False
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._gate.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            # A request still being handled (a held one, just released) opens no connection after this.
            self._closed = True
            for conn in self._connections:
                conn.close()

    # Holding requests (for shutdown tests) ------------------------------------------------------------

    def hold(self, only_bodies_with: bytes = b"") -> None:
        """Holds each request from now on (only those whose body has `only_bodies_with`) until release()."""
        self.hold_only = only_bodies_with
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def held(self) -> int:
        """Requests held right now."""
        with self._changed:
            return self._held

    def wait_held(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._held >= count, timeout)

    # One request ---------------------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            host, port = self.upstream.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            with self._lock:
                if self._closed:
                    raise ConnectionRefusedError("the proxy is closed")
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _forward(
        self, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[Any], bytes]:
        """Sends once: a retry here would be a second create upstream that the gateway never sent."""
        conn = self._connection()
        try:
            conn.request("POST", path, body=body, headers=dict(headers))
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            self._local.conn = None
            raise

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        if not self._gate.is_set() and self.hold_only in body:
            with self._changed:
                self._held += 1
                self._changed.notify_all()
            self._gate.wait()
            with self._changed:
                self._held -= 1
        headers = [(k, v) for k, v in handler.headers.items() if k.lower() != "connection"]
        try:
            status, answer_headers, answer = self._forward(handler.path, headers, body)
        except (http.client.HTTPException, OSError):
            handler.close_connection = True  # the emulator is gone: so is the answer
            return
        with self._lock:
            self.forwarded += 1
            draw = self._random.random()
        faults = self.faults
        if faults.only_bodies_with not in body:
            draw = 1.0
        if draw < faults.drop_after:
            self._count("drop_after")
            handler.close_connection = True
            return
        draw -= faults.drop_after
        if draw < faults.garbage_after:
            self._count("garbage_after")
            status, answer_headers, answer = 200, [("Content-Type", "text/html")], b"<html>oops</html>"
        elif draw - faults.garbage_after < faults.gateway_timeout_after:
            self._count("gateway_timeout_after")
            status, answer_headers, answer = 504, [("Content-Type", "text/plain")], b"upstream timed out"
        try:
            handler.send_response(status)
            for name, value in answer_headers:
                if name.lower() not in (
                    "content-length",
                    "connection",
                    "date",
                    "server",
                    "transfer-encoding",
                ):
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        except OSError:
            handler.close_connection = True  # the gateway gave up on this call (its deadline ran out)

    def _count(self, what: str) -> None:
        with self._lock:
            self.injected[what] += 1


# Real processes -----------------------------------------------------------------------------------


def new_hashes(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def start_emulator(
    workdir: Path,
    fixture: Path,
    *,
    listen: str = "127.0.0.1:0",
    state: Path | None = None,
    args: Sequence[str] = (),
) -> Service:
    argv = cli_argv("emulator", "--listen", listen, "--fixture", str(fixture))
    if state is not None:
        argv += ["--state", str(state)]
    return start_service("emulator", [*argv, *args], log_path=workdir / "emulator.log")


def start_gateway(
    workdir: Path, key_file: Path, domain: str, *, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Service:
    """A gateway with an audit file and a metrics port (ignored by a gateway without metrics wired)."""
    argv = cli_argv(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--encord-domain",
        domain,
        "--ssh-key-file",
        str(key_file),
        "--audit-log",
        str(workdir / "audit.jsonl"),
        "--metrics-listen",
        "127.0.0.1:0",
        *args,
    )
    return start_service("gateway", argv, env=env, log_path=workdir / "gateway.log")


def metrics_address(gateway: Service) -> str | None:
    """HOST:PORT from the gateway's `metrics on HOST:PORT` line, printed before `listening on`."""
    for line in list(gateway.output):
        match = METRICS_LINE.match(line.strip())
        if match:
            return match.group(1)
    return None


def scrape(address: str) -> str:
    response = requests.get(f"http://{address}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


@dataclass
class ReliabilityStack:
    """Emulator (with a SQLite state file), optional fault proxy, and gateway, all on loopback port 0."""

    workdir: Path
    key_file: Path
    fixture: Path
    state: Path
    projects: list[str]
    datasets: list[str]
    emulator: Service
    gateway: Service
    proxy: FaultProxy | None = None

    @property
    def admin_url(self) -> str:
        return f"http://{self.emulator.address}/_emulator"

    def faults(self, **settings: Any) -> None:
        requests.put(f"{self.admin_url}/faults", json=settings, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.admin_url}/faults", timeout=10).raise_for_status()

    def emulator_stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(f"{self.admin_url}/stats", timeout=10).json()
        return answer

    def posts_answered(self) -> int:
        """Create calls the emulator has finished answering (stats count a call once it is answered)."""
        by_query = self.emulator_stats()["requests"]["by_query"]
        return sum(
            sum(by_query.get(kind, {}).get("POST", {}).values())
            for kind in ("projectapikey", "datasetapikey")
        )

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.gateway.address)
        grpc.channel_ready_future(channel).result(timeout=15)
        return channel

    def stub(self, channel: grpc.Channel) -> pb_grpc.ApiKeyServiceStub:
        return pb_grpc.ApiKeyServiceStub(channel)

    def save_metrics(self, name: str = "final") -> str | None:
        """Scrapes the metrics page (if the gateway serves one) into the workdir, for the secrets scan."""
        address = metrics_address(self.gateway)
        if address is None or self.gateway.process.poll() is not None:
            return None
        page = scrape(address)
        (self.workdir / f"metrics-{name}.txt").write_text(page)
        return page


@contextlib.contextmanager
def reliability_stack(
    ledger: Ledger,
    name: str,
    *,
    projects: int = 2,
    datasets: int = 2,
    proxy: bool = False,
    project_hashes: Sequence[str] = (),
    dataset_hashes: Sequence[str] = (),
    emulator_args: Sequence[str] = (),
    gateway_args: Sequence[str] = (),
    gateway_env: dict[str, str] | None = None,
) -> Iterator[ReliabilityStack]:
    workdir = ledger.folder(name)
    key_file = workdir / "gateway_ed25519"
    with ledger.lock:
        ledger.ssh_key_files.append(key_file)
    project_hashes = list(project_hashes) or new_hashes(projects)
    dataset_hashes = list(dataset_hashes) or new_hashes(datasets)
    fixture = workdir / "fixture.toml"
    write_fixture(fixture, write_ssh_key(key_file), projects=project_hashes, datasets=dataset_hashes)
    state = workdir / "emulator.sqlite"
    emulator = start_emulator(workdir, fixture, state=state, args=emulator_args)
    fault_proxy = FaultProxy(emulator.address) if proxy else None
    try:
        domain = fault_proxy.url if fault_proxy else f"http://{emulator.address}"
        gateway = start_gateway(workdir, key_file, domain, args=gateway_args, env=gateway_env)
        stack = ReliabilityStack(
            workdir, key_file, fixture, state, project_hashes, dataset_hashes, emulator, gateway, fault_proxy
        )
        try:
            yield stack
            stack.save_metrics()
        finally:
            gateway.stop()
    finally:
        if fault_proxy is not None:
            fault_proxy.close()
        emulator.stop()
        if state.exists():
            ledger.stored(state)


# Process figures from /proc ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcFigures:
    rss_kib: int
    threads: int
    fds: int
    upstream_sockets: int = 0  # of the fds: TCP connections to the upstream port (the keep-alive pool)

    def __str__(self) -> str:
        return (
            f"RSS {self.rss_kib / 1024:.1f} MiB, {self.threads} threads, {self.fds} fds "
            f"({self.upstream_sockets} to Encord)"
        )


def _socket_remote_ports(pid: int) -> dict[str, int]:
    """Socket inode -> remote port, for the process's TCP sockets (IPv4 and IPv6)."""
    ports = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            ports[parts[9]] = int(parts[2].rsplit(":", 1)[1], 16)
    return ports


def proc_figures(pid: int, upstream_port: int | None = None) -> ProcFigures:
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # an fd closed while we look
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    upstream = 0
    if upstream_port is not None:
        ports = _socket_remote_ports(pid)
        inodes = [link[len("socket:[") : -1] for link in links if link.startswith("socket:[")]
        upstream = sum(1 for inode in inodes if ports.get(inode) == upstream_port)
    return ProcFigures(
        rss_kib=int(values["VmRSS"].split()[0]),
        threads=int(values["Threads"].strip()),
        fds=len(links),
        upstream_sockets=upstream,
    )


# Gateway log lines --------------------------------------------------------------------------------


def call_lines(gateway: Service) -> list[dict[str, Any]]:
    """The gateway's per-call JSON log lines seen so far."""
    lines = []
    for text in list(gateway.output):
        if text.startswith("{") and '"message": "call"' in text:
            with contextlib.suppress(ValueError):
                lines.append(json.loads(text))
    return lines


def report(title: str, **figures: Any) -> None:
    """One greppable line per figure: `pytest -s` shows them, and they end up in the test's output."""
    print(f"\n[reliability] {title}: " + json.dumps(figures, default=str, sort_keys=True), flush=True)
