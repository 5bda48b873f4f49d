"""A gateway with TLS, callers and an audit log in front of the emulator, and helpers to call it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import requests
import tomli_w
from encord_gateway.dev.devstack import Service, Stack, running_stack
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from support.pki import Authority, Issued


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def callers_toml(callers: Sequence[dict[str, Any]]) -> str:
    return tomli_w.dumps({"callers": list(callers)})


def new_trace() -> str:
    return secrets.token_hex(16)


@dataclass
class Outcome:
    """A call's answer or error, and the trace id it was sent with."""

    trace_id: str
    response: Any = None
    error: grpc.RpcError | None = None

    @property
    def code(self) -> grpc.StatusCode:
        return self.error.code() if self.error is not None else grpc.StatusCode.OK

    def detail(self, kind: type[Any]) -> Any:
        assert self.error is not None
        status = rpc_status.from_call(self.error)  # type: ignore[arg-type]
        assert status is not None, "no google.rpc.Status in the trailers"
        for any_detail in status.details:
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                return message
        raise AssertionError(f"no {kind.__name__} in the status details")

    @property
    def reason(self) -> str:
        return str(self.detail(error_details_pb2.ErrorInfo).reason)


def call(method: Callable[..., Any], request: Any, *, metadata: Sequence[tuple[str, str]] = ()) -> Outcome:
    trace_id = new_trace()
    try:
        response = method(
            request, timeout=15, metadata=(("x-cloud-trace-context", f"{trace_id}/1;o=1"), *metadata)
        )
    except grpc.RpcError as exc:
        return Outcome(trace_id, error=exc)
    return Outcome(trace_id, response=response)


def wait_for_output(service: Service, text: str, *, after: int = 0, timeout: float = 15.0) -> str:
    """The first line of the service's output past line `after` that contains `text`, waiting for it."""
    deadline = time.monotonic() + timeout
    with service.new_output:
        while True:
            for line in service.output[after:]:
                if text in line:
                    return line
            after = max(after, len(service.output))
            remaining = deadline - time.monotonic()
            if service.drained.is_set() or remaining <= 0 or not service.new_output.wait(remaining):
                raise AssertionError(
                    f"{service.name} never printed {text!r}; last lines: {service.output[-5:]}"
                )


@dataclass
class Secured:
    """A running emulator + gateway pair started with TLS material, a config file and an audit log."""

    stack: Stack
    ca: Authority
    config: Path
    audit_log: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.stack.gateway.address

    def channel(
        self, *, client: Issued | None = None, token: str | None = None, ca: Authority | None = None
    ) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            (ca or self.ca).cert_pem,
            client.key_pem if client else None,
            client.cert_pem if client else None,
        )
        if token is not None:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token)
            )
        channel = grpc.secure_channel(self.address, credentials)
        self.channels.append(channel)
        return channel

    def stub(self, **kwargs: Any) -> pb_grpc.ApiKeyServiceStub:
        return pb_grpc.ApiKeyServiceStub(self.channel(**kwargs))

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]

    def audit_for(self, trace_id: str) -> dict[str, Any]:
        [line] = [x for x in self.audit() if x["trace_id"] == trace_id]
        return line

    def key_counts(self) -> dict[str, int]:
        answer = requests.get(f"http://{self.stack.emulator.address}/_emulator/stats", timeout=5)
        answer.raise_for_status()
        return dict(answer.json()["keys"])

    def sighup(self) -> None:
        import signal

        self.stack.gateway.process.send_signal(signal.SIGHUP)

    def files_to_scan(self) -> list[Path]:
        """Everything the gateway wrote: its stdout/stderr log and the audit trail."""
        return [self.stack.workdir / "gateway.log", self.audit_log]


@contextlib.contextmanager
def secured_stack(
    workdir: Path,
    callers: Sequence[dict[str, Any]],
    *,
    mutual: bool,
    gateway_args: Sequence[str] = (),
    audit_log: Path | None = None,
) -> Iterator[Secured]:
    ca = Authority("gateway test CA")
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue("gateway", dns=("localhost",), ips=("127.0.0.1",), server=True).write(
        workdir, "server"
    )
    (workdir / "client-ca.crt").write_bytes(ca.cert_pem)
    config = workdir / "gateway.toml"
    config.write_text(callers_toml(callers))
    audit = audit_log or workdir / "audit.jsonl"
    args = [
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--config",
        str(config),
        "--audit-log",
        str(audit),
    ]
    if mutual:
        args += ["--client-ca", str(workdir / "client-ca.crt")]
    with running_stack(workdir, gateway_args=[*args, *gateway_args]) as stack:
        secured = Secured(stack, ca, config, audit)
        try:
            yield secured
        finally:
            for channel in secured.channels:
                channel.close()


def assert_no_key_in(paths: Sequence[Path], keys: Sequence[str]) -> None:
    """No created key appears in any file the gateway wrote."""
    assert keys, "no key was created, so the scan would prove nothing"
    for path in paths:
        text = path.read_text(errors="replace")
        assert text, f"{path} is empty, so the scan would prove nothing"
        for key in keys:
            assert key not in text, f"a created key is written in {path.name}"
