"""A call that meets the emulator's store already closed by shutdown gets a 503, never an Encord error."""

from __future__ import annotations

import requests
from encord_gateway.emulator.app import Emulator as InProcessEmulator
from encord_gateway.emulator.options import Options


def test_a_call_after_the_store_closed_is_a_503_that_says_nothing_was_done() -> None:
    emulator = InProcessEmulator(Options(port=0, quiet=True), log=lambda line: None)
    host, port = emulator.server.server_address[:2]
    assert isinstance(host, str)
    try:
        # Shutdown closes the store once the server stops; a request accepted in between meets it closed.
        emulator.store.close()
        response = requests.post(
            f"http://{host}:{port}/public",
            data=b'{"query_type": "labelrow", "query_method": "GET", "values": {"uid": null}}',
            headers={"Authorization": "some-api-key", "ResourceID": "r", "Content-Type": "application/json"},
            timeout=10,
        )
    finally:
        emulator.stop()
    # A 503 with a plain body is what the gateway reads as "not processed, send it again"; Encord's
    # UNKNOWN_ERROR envelope would be an answer a client must not retry blindly.
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "shutting down" in response.text
    assert response.headers.get("Connection", "").lower() == "close"
