"""A gateway in this process, for tests that only call it: `with run_gateway(0, ...) as (server, port)`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from encord_gateway.api.server import GatewayServer
from encord_gateway.config import Settings, validate
from encord_gateway.context import CallRecord
from encord_gateway.upstream.signing import load_signing_key


class Calls(list[CallRecord]):
    """A CallObserver that keeps every finished call's record, in order.

    The frame finishes a call before gRPC sends its answer, so a record is here once the caller has one.
    """

    def call_finished(self, record: CallRecord) -> None:
        self.append(record)

    def last(self, method: str) -> CallRecord:
        return next(r for r in reversed(self) if r.method == method)


@contextlib.contextmanager
def run_gateway(
    port: int, *, encord_domain: str, ssh_key_file: Path, calls: Calls | None = None, **settings: Any
) -> Iterator[tuple[GatewayServer, int]]:
    """A GatewayServer built as `serve` builds it (Settings validated, the key loaded), without a process.

    What a process adds (signals, reloads, the policy, TLS, metrics, exit codes) is not here: tests of
    those start `encord-gateway serve`.
    """
    options = Settings(
        listen=f"127.0.0.1:{port}", encord_domain=encord_domain, ssh_key_file=str(ssh_key_file), **settings
    )
    validate(options)
    key = load_signing_key(key_file=str(ssh_key_file), key_text=None, passphrase=None, source="test")
    server = GatewayServer(options, key, observers=[calls] if calls is not None else [])
    address = server.start()
    try:
        yield server, int(address.rsplit(":", 1)[1])
    finally:
        server.stop(0)
