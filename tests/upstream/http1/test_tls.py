"""Http1Client over TLS: the context given decides trust; keep-alive and the stale check hold."""

from __future__ import annotations

import pytest
from encord_gateway.upstream import client as upstream
from encord_gateway.upstream.http1 import ConnectFailed
from support.loopback import Wire
from upstream.http1.peers import BODY, HEADERS, OK, PATH, MakeClient, Serve, Tls, replying, soon


def test_tls_origin_trusted_by_the_context(serve: Serve, client: MakeClient, tls: Tls) -> None:
    server = serve(replying(OK, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"), tls=tls.server)
    http = client(server.url(), ssl_context=upstream.verifying_context(str(tls.ca_file)))
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert http.post(HEADERS, BODY, soon()).body == b"two"
    assert server.accepts == 1  # keep-alive over TLS too
    assert server.requests[0].startswith(
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
    )


def test_tls_origin_not_trusted_by_the_default_context(serve: Serve, client: MakeClient, tls: Tls) -> None:
    server = serve(replying(OK), tls=tls.server)
    with pytest.raises(ConnectFailed):
        client(server.url()).post(HEADERS, BODY, soon())
    assert server.requests == []  # nothing was sent


def test_tls_stale_pooled_connection_is_replaced(serve: Serve, client: MakeClient, tls: Tls) -> None:
    def handle(wire: Wire) -> None:
        wire.read_request()
        wire.send(OK)
        if wire.index > 0:
            wire.wait_for_close()

    server = serve(handle, tls=tls.server)
    http = client(server.url(), ssl_context=tls.trusting())
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    server.wait_ended()
    assert http.post(HEADERS, BODY, soon()).body == b"ok"
    assert server.accepts == 2
