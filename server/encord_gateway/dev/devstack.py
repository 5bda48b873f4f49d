"""A throwaway emulator + gateway pair on free loopback ports, for the demo, tests and benchmarks."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from encord_gateway.signals import SignalInbox

DEMO_ADMIN = "admin@example.com"
DEMO_PROJECT = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"
DEMO_DATASET = "0c2f1f0e-7f37-4a0e-8c47-1d2e9a6b5f21"
STARTUP_TIMEOUT_S = 30.0


def write_ssh_key(path: Path, passphrase: bytes | None = None) -> str:
    """Writes a new OpenSSH Ed25519 private key to `path` and returns its public key line."""
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode() + " gateway@devstack"


def write_fixture(
    path: Path,
    public_key_line: str,
    *,
    email: str = DEMO_ADMIN,
    projects: Sequence[str] = (DEMO_PROJECT,),
    datasets: Sequence[str] = (DEMO_DATASET,),
) -> None:
    """Writes an emulator fixture with one admin user who administers every listed resource."""
    document = {
        "users": [{"email": email, "public_key": public_key_line}],
        "projects": [
            {"project_hash": h, "title": f"Demo project {n}", "admins": [email], "members": []}
            for n, h in enumerate(projects, 1)
        ],
        "datasets": [
            {"dataset_hash": h, "title": f"Demo dataset {n}", "admins": [email], "members": []}
            for n, h in enumerate(datasets, 1)
        ],
    }
    path.write_text(tomli_w.dumps(document))


@dataclass
class Service:
    """A child process that printed `listening on HOST:PORT`."""

    name: str
    process: subprocess.Popen[str]
    address: str
    output: list[str] = field(default_factory=list)
    drained: threading.Event = field(default_factory=threading.Event)
    new_output: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str | None:
        """The first output line (already seen or still to come) that satisfies `predicate`."""
        checked = 0
        with self.new_output:
            while True:
                for line in self.output[checked:]:
                    if predicate(line):
                        return line
                checked = len(self.output)
                if self.drained.is_set() or not self.new_output.wait(timeout):
                    return None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGABRT after `timeout`, then SIGKILL; the exit code once its output is drained.

        SIGABRT first so that a child with a fault handler (PYTHONFAULTHANDLER, which the tests set)
        prints every thread's stack: what kept it from stopping is then in its output, copied to stderr.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                self.drained.wait(5)
                tail = "".join(self.output[-200:])
                print(f"{self.name} did not stop within {timeout} s of SIGTERM; its last output:\n{tail}",
                      file=sys.stderr)  # fmt: skip
        self.drained.wait(5)
        return self.process.returncode


def start_service(
    name: str, argv: Sequence[str], env: dict[str, str] | None = None, log_path: Path | None = None
) -> Service:
    """Starts `argv`, waits for its `listening on` line, then keeps draining its output to `log_path`."""
    process = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    output: list[str] = []
    found = threading.Event()
    drained = threading.Event()
    new_output = threading.Condition()
    address: list[str] = []
    log = log_path.open("a") if log_path else None

    # One reader thread per child: the pipe must be drained for the child's whole
    # life, or it blocks on a full pipe once it logs enough.
    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with new_output:
                output.append(line)
                new_output.notify_all()
            if log:
                log.write(line)
                log.flush()
            if not found.is_set() and line.startswith("listening on "):
                address.append(line.split()[-1])
                found.set()
        process.stdout.close()
        if log:
            log.close()
        found.set()
        with new_output:
            drained.set()
            new_output.notify_all()

    threading.Thread(target=drain, name=f"{name}-output", daemon=True).start()
    if not found.wait(STARTUP_TIMEOUT_S) or not address:
        process.kill()
        process.wait()
        raise RuntimeError(f"{name} did not start: {''.join(output)[-2000:]}")
    return Service(name, process, address[0], output, drained, new_output)


def cli_argv(*args: str) -> list[str]:
    """The encord-gateway command line, run with this interpreter."""
    return [sys.executable, "-m", "encord_gateway", *args]


def start_gateway(
    encord_domain: str,
    ssh_key_file: Path | str,
    *args: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> Service:
    """`encord-gateway serve` on a free loopback port against `encord_domain`, signing with the key file."""
    argv = cli_argv(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--encord-domain",
        encord_domain,
        "--ssh-key-file",
        str(ssh_key_file),
    )
    return start_service("gateway", [*argv, *args], env=env, log_path=log_path)


def write_caller_config(path: Path, token: str, name: str = "devstack") -> None:
    """A gateway config with one caller, holding `token`, allowed everything: the dev stack's caller."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    caller = {
        "name": name,
        "tokens": [{"sha256": digest}],
        **{key: ["*"] for key in ("methods", "projects", "datasets", "project_scopes", "dataset_scopes")},
        "reveal_keys": True,
    }
    path.write_text(tomli_w.dumps({"callers": [caller]}))


@dataclass
class Stack:
    """A running emulator and gateway, with the files they were started from."""

    workdir: Path
    emulator: Service
    gateway: Service
    ssh_key_file: Path
    fixture_file: Path
    token: str | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {
            "ENCORD_GATEWAY_ADDRESS": self.gateway.address,
            "ENCORD_EMULATOR_URL": f"http://{self.emulator.address}",
            "ENCORD_DEMO_PROJECT": DEMO_PROJECT,
            "ENCORD_DEMO_DATASET": DEMO_DATASET,
        }
        if self.token:
            env["ENCORD_GATEWAY_TOKEN"] = self.token
        return env


@contextlib.contextmanager
def running_stack(
    workdir: Path | None = None,
    *,
    emulator_args: Sequence[str] = (),
    gateway_args: Sequence[str] = (),
    gateway_env: dict[str, str] | None = None,
    projects: Sequence[str] = (DEMO_PROJECT,),
    datasets: Sequence[str] = (DEMO_DATASET,),
    caller_token: str | None = None,
) -> Iterator[Stack]:
    """Starts the emulator with a demo fixture and a fresh key, then the gateway against it.

    With `caller_token`, the gateway accepts only that bearer token (one caller allowed everything).
    """
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="encord-gateway-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    key_file = root / "gateway_ed25519"
    fixture = root / "fixture.toml"
    write_fixture(fixture, write_ssh_key(key_file), projects=projects, datasets=datasets)
    if caller_token:
        write_caller_config(root / "gateway.toml", caller_token)
        gateway_args = [*gateway_args, "--config", str(root / "gateway.toml")]
    emulator = start_service(
        "emulator",
        cli_argv("emulator", "--listen", "127.0.0.1:0", "--fixture", str(fixture), *emulator_args),
        log_path=root / "emulator.log",
    )
    try:
        gateway = start_gateway(
            f"http://{emulator.address}",
            key_file,
            *gateway_args,
            env=gateway_env,
            log_path=root / "gateway.log",
        )
        try:
            yield Stack(root, emulator, gateway, key_file, fixture, caller_token)
        finally:
            gateway.stop()
    finally:
        emulator.stop()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stop_on_signals() -> None:
    """SIGTERM unwinds like Ctrl-C does, so `running_stack` stops its children instead of orphaning them.

    (A blocked signal mask would be inherited by the children and make them deaf to SIGTERM.)
    """
    signal.signal(signal.SIGTERM, _exit_on_signal)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m encord_gateway.dev.devstack",
        description="Start an emulator and a gateway on free loopback ports and run COMMAND against them "
        "(with ENCORD_GATEWAY_ADDRESS, ENCORD_EMULATOR_URL, ENCORD_DEMO_PROJECT and ENCORD_DEMO_DATASET "
        "set); without COMMAND, print those variables and serve until interrupted.",
    )
    parser.add_argument(
        "--token",
        action="store_true",
        help="make the gateway require a bearer token (a fresh one, exported as ENCORD_GATEWAY_TOKEN)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = [c for c in args.command if c != "--"] if args.command else []
    stop_on_signals()
    with running_stack(caller_token=secrets.token_urlsafe(24) if args.token else None) as stack:
        if command:
            return subprocess.call(command, env={**os.environ, **stack.env})
        for name, value in stack.env.items():
            print(f"{name}={value}", flush=True)
        # Not signal.pause(): it returns only for a signal delivered to the main thread, and the
        # kernel may give Ctrl-C or SIGTERM to an output-draining or gRPC thread instead.
        with SignalInbox((signal.SIGINT, signal.SIGTERM)) as stop:
            stop.get()
    return 0


if __name__ == "__main__":
    sys.exit(main())
