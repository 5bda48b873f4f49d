"""The admin endpoints' guards: only loopback peers, and a 400 for bodies nested too deeply to parse."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from encord_gateway.dev.devstack import cli_argv
from encord_gateway.emulator.app import Emulator as InProcessEmulator
from encord_gateway.emulator.faults import MAX_PAYLOAD_DEPTH
from encord_gateway.emulator.options import Options
from support.emulator_users import Emulator

DEEP = 100_000  # far past Python's recursion limit for both parsers


@pytest.fixture(scope="module")
def in_process() -> Iterator[InProcessEmulator]:
    emulator = InProcessEmulator(Options(port=0, quiet=True), log=lambda line: None)
    yield emulator
    emulator.stop()


def _admin_status_as_peer(emulator: InProcessEmulator, peer: str) -> int:
    """GET /_emulator/health over a real TCP connection that the handler is told comes from `peer`.

    No test host can route packets from ::1:2:3:4:5:6, so the accepted socket is handed to the server's
    own finish_request() with the peer address the kernel would have reported for such a client.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=10)
        accepted, _ = listener.accept()
    family_address = (peer, 40000, 0, 0) if ":" in peer else (peer, 40000)
    serving = threading.Thread(target=emulator.server.finish_request, args=(accepted, family_address))
    serving.start()
    with client:
        client.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: emulator\r\nConnection: close\r\n\r\n")
        status_line = client.makefile("rb").readline()
    serving.join(10)
    accepted.close()
    assert not serving.is_alive()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    ("peer", "status"),
    [
        ("127.0.0.1", 200),
        ("127.3.2.1", 200),  # all of 127.0.0.0/8 is loopback
        ("::1", 200),
        ("::ffff:127.0.0.1", 200),  # IPv4 loopback on a dual-stack socket
        ("::1:2:3:4:5:6", 403),  # starts with "::1" but is a global address
        ("::1.2.3.4", 403),  # IPv4-compatible form of 1.2.3.4
        ("::10.0.0.1", 403),
        ("::ffff:10.0.0.1", 403),
        ("::ffff:128.0.0.1", 403),
        ("10.0.0.1", 403),
        ("1.2.3.4", 403),
        ("fe80::1%2", 403),
        ("not-an-address", 403),
    ],
)
def test_only_loopback_peers_reach_admin_endpoints(
    in_process: InProcessEmulator, peer: str, status: int
) -> None:
    assert _admin_status_as_peer(in_process, peer) == status


def _nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_deeply_nested_fault_json_is_a_400(emulator: Emulator, method: str) -> None:
    response = emulator.admin(method, "faults", data=_nested_json(DEEP))
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]
    deep_value = f'{{"latency_ms": {_nested_json(DEEP)}}}'
    response = emulator.admin(method, "faults", data=deep_value)
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]
    assert emulator.admin("GET", "faults").json()["latency_ms"] == 0


def test_a_deep_error_payload_is_refused_and_a_shallow_one_is_kept(emulator: Emulator) -> None:
    # Parsable by json, but too deep for the copies and logs that follow: refused before it is stored.
    deep = 900
    body = f'{{"force_error": "RESOURCE_EXISTS_ERROR", "force_error_payload": {_nested_json(deep)}}}'
    response = emulator.admin("PUT", "faults", data=body)
    assert response.status_code == 400, response.text
    assert f"at most {MAX_PAYLOAD_DEPTH} deep" in response.json()["error"]
    assert emulator.admin("GET", "faults").json()["force_error"] is None
    shallow = {"force_error": "RESOURCE_EXISTS_ERROR", "force_error_payload": {"a": [[1]]}}
    assert emulator.set_faults(**shallow)["force_error_payload"] == {"a": [[1]]}


# Written by hand, not with tomli_w: nesting this deep is the point, and a recursive writer cannot write it.
@pytest.mark.parametrize(
    "toml",
    [f"a = {_nested_json(DEEP)}\n", "a = " + "{b = " * 2000 + "1" + "}" * 2000 + "\n"],
    ids=["arrays", "inline-tables"],
)
def test_deeply_nested_fixture_toml_is_a_400(emulator: Emulator, toml: str) -> None:
    before = emulator.stats()["keys"]
    response = emulator.admin("PUT", "fixture", data=toml.encode())
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]
    assert emulator.stats()["keys"] == before  # the fixture in force is untouched
    assert emulator.admin("GET", "health").status_code == 200


def test_a_deeply_nested_fixture_file_is_refused_at_start(tmp_path: Path) -> None:
    fixture = tmp_path / "deep.toml"
    # By hand, as above: tomli_w would hit the recursion limit long before 100,000 levels.
    fixture.write_text(f"a = {_nested_json(DEEP)}\n")
    argv = cli_argv("emulator", "--listen", "127.0.0.1:0", "--fixture", str(fixture))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "nested too deeply" in result.stderr
    assert "Traceback" not in result.stderr
