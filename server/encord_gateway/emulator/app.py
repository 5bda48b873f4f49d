"""Assembles store, fault injector, operations and HTTP server from Options, and runs them in a thread."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable

from encord_gateway.emulator.admin import Admin
from encord_gateway.emulator.api import KeyApi, UserApi
from encord_gateway.emulator.faults import FaultInjector
from encord_gateway.emulator.options import Options, OptionsError
from encord_gateway.emulator.server import Behaviour, EmulatorServer, Logger
from encord_gateway.emulator.stats import Stats
from encord_gateway.emulator.store import Store

SHUTDOWN_POLL_S = 0.05


def tls_context(options: Options) -> ssl.SSLContext | None:
    if options.tls_cert is None or options.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(options.tls_cert, options.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise OptionsError(f"--tls-cert/--tls-key cannot be loaded: {exc}") from exc
    return context


class Emulator:
    """A bound, serving emulator; `stop()` shuts the server and then the store."""

    def __init__(self, options: Options, log: Callable[[str], None] | None = None) -> None:
        self.log = log or Logger()
        context = tls_context(options)
        self.store = Store(options.state)
        try:
            self.store.load_fixture(options.fixture)
            self.faults = FaultInjector(options.faults)
            self.stats = Stats()
            self.server = EmulatorServer(
                (options.host, options.port),
                user_api=UserApi(self.store, scopes_as_string=options.scopes_as_string),
                key_api=KeyApi(self.store),
                admin=Admin(self.store, self.faults, self.stats),
                faults=self.faults,
                stats=self.stats,
                behaviour=Behaviour(options.mirror_status, options.quiet, options.admin_any_host),
                log=self.log,
                tls=context,
            )
        except BaseException:
            self.store.close()
            raise
        # A short poll interval: shutdown() waits up to one interval, and a stop should be quick.
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(SHUTDOWN_POLL_S,), name="emulator-accept", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        return self.server.address

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
        self.store.close()
