"""A Python load generator in its own process: one client path, driven cell by cell over stdin/stdout.

    python bench/loadgen.py --path sdk|floor|gateway-py --target URL-or-HOST:PORT ...

It prints `{"event": "ready"}`, then for each command line
`{"op": "read"|"write", "concurrency": N, "window_start": T, "seconds": S}` (T in
seconds since the epoch) it runs N closed-loop workers from now until T + S,
measures the calls that start between T and T + S, and prints
`{"event": "done", ...}` with each measured call's latency. The driver reads the
gateway's /proc at T and at T + S. The Go client in bench/goclient speaks the same
protocol.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import itertools
import json
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

WRITE_TITLE = "bench key"
WRITE_SCOPES = ("label.read",)
MAX_ERROR_SAMPLES = 3
USER_PATH = "/public/user"

Call = Callable[[], None]


class WrongAnswer(Exception):
    """The call succeeded but did not return what the benchmark expects (e.g. not 10 keys)."""


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# The paths ----------------------------------------------------------------------------------------


def sdk_path(args: argparse.Namespace) -> Callable[[str, int], Call]:
    """The real encord SDK calling the emulator directly: what a Python service does without the gateway."""
    if args.ca_file:
        # encord 0.1.145 sends with Session.send(), which ignores REQUESTS_CA_BUNDLE; requests then
        # verifies against this module-level bundle path, which is certifi's unless changed.
        import requests.adapters

        requests.adapters.DEFAULT_CA_BUNDLE_PATH = args.ca_file
    import warnings

    from encord.user_client import EncordUserClient
    from encord.utilities.client_utilities import APIKeyScopes

    warnings.simplefilter("ignore", DeprecationWarning)  # the key calls are deprecated since 0.1.141
    client = EncordUserClient.create_with_ssh_private_key(
        ssh_private_key_path=args.key_file, domain=args.target
    )
    scopes = [APIKeyScopes(s) for s in WRITE_SCOPES]

    def for_worker(op: str, worker: int) -> Call:
        if op == "read":

            def read() -> None:
                keys = client.get_project_api_keys(args.read_project)
                if len(keys) != args.read_keys:
                    raise WrongAnswer(f"{len(keys)} keys")

            return read

        def write() -> None:
            if not client.create_project_api_key(args.write_project, WRITE_TITLE, scopes):
                raise WrongAnswer("no key")

        return write

    return for_worker


class FloorClient:
    """Signs and sends Encord calls over one keep-alive connection: the least a client can do."""

    def __init__(self, url: str, key_file: str, ca_file: str | None) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_private_key

        key = load_ssh_private_key(Path(key_file).read_bytes(), None)
        assert isinstance(key, Ed25519PrivateKey)
        self._key = key
        self._public_hex = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        scheme, _, hostport = url.partition("://")
        host, _, port = hostport.rstrip("/").rpartition(":")
        self._https = scheme == "https"
        self._host, self._port = host, int(port)
        self._context = ssl.create_default_context(cafile=ca_file) if self._https else None

    def connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, context=self._context, timeout=30)
        return http.client.HTTPConnection(self._host, self._port, timeout=30)

    def call(self, conn: http.client.HTTPConnection, query_method: str, uid: str, payload: Any) -> Any:
        # The SDK's bytes: json.dumps with default separators, keys in this order.
        body = json.dumps(
            {
                "query_type": "projectapikey",
                "query_method": query_method,
                "values": {"uid": uid, "payload": payload},
            }
        ).encode()
        signature = self._key.sign(hashlib.sha256(body).digest()).hex()
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip",
            "ResourceType": "",
            "ResourceID": "",
            "Authorization": f"{self._public_hex}:{signature}",
            "User-Agent": "encord-gateway-bench-floor",
            "X-Cloud-Trace-Context": f"{uuid.uuid4().hex}/1;o=1",
        }
        try:
            conn.request("POST", USER_PATH, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except Exception:
            conn.close()  # the next request reconnects
            raise
        envelope = json.loads(data)
        if envelope.get("status") != 200:
            raise WrongAnswer(f"Encord error {envelope.get('response')}")
        return envelope.get("response")


def floor_path(args: argparse.Namespace) -> Callable[[str, int], Call]:
    floor = FloorClient(args.target, args.key_file, args.ca_file)
    # Worker i always uses connection i, across cells: one pooled keep-alive connection per worker.
    connections: list[http.client.HTTPConnection] = []
    write_payload = {"title": WRITE_TITLE, "scopes": list(WRITE_SCOPES)}

    def for_worker(op: str, worker: int) -> Call:
        while len(connections) <= worker:
            connections.append(floor.connection())
        conn = connections[worker]
        if op == "read":

            def read() -> None:
                keys = floor.call(conn, "GET", args.read_project, None)
                if len(keys) != args.read_keys:
                    raise WrongAnswer(f"{len(keys)} keys")

            return read

        def write() -> None:
            if not floor.call(conn, "POST", args.write_project, write_payload):
                raise WrongAnswer("no key")

        return write

    return for_worker


def gateway_path(args: argparse.Namespace) -> Callable[[str, int], Call]:
    """The gateway through the Python stub: one channel shared by every worker, as a service would.

    With `--channels N`, N channels each on a connection of its own, worker i on channel i mod N: a
    gateway of several processes gets connections, not calls, spread over its workers.
    """
    import grpc
    from encord_gateway_client import GatewayClient, ProjectScope, connect

    if args.channels > 1:
        # A local subchannel pool: otherwise channels to one target share one connection.
        options = [("grpc.use_local_subchannel_pool", 1)]
        clients = [
            GatewayClient(grpc.insecure_channel(args.target, options=options)) for _ in range(args.channels)
        ]
    else:
        clients = [connect(args.target)]
    scopes = [ProjectScope(s) for s in WRITE_SCOPES]

    def for_worker(op: str, worker: int) -> Call:
        client = clients[worker % len(clients)]
        if op == "read":

            def read() -> None:
                keys = client.list_project_api_keys(args.read_project)
                if len(keys) != args.read_keys:
                    raise WrongAnswer(f"{len(keys)} keys")

            return read

        titles = itertools.count()

        def write() -> None:
            # A title per create, as real callers give: creates of one title and scopes wait for each
            # other (the request_id lock), others run side by side.
            title = f"{WRITE_TITLE} {worker}-{next(titles)}"
            if not client.create_project_api_key(args.write_project, title, scopes).api_key:
                raise WrongAnswer("no key")

        return write

    return for_worker


def gateway_plain_path(args: argparse.Namespace) -> Callable[[str, int], Call]:
    """The gateway through the generated Python stub, creates without a request_id: no state store.

    gateway-py's creates carry one (the client sends a UUID4 with every create), so the pair of paths
    measures what exactly-once costs a create: the store's claim, lock and completion, and the list
    taken before sending.
    """
    import grpc
    from encord_gateway_client.v1 import api_keys_pb2 as pb
    from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc

    stub = pb_grpc.ApiKeyServiceStub(grpc.insecure_channel(args.target))
    scopes = [pb.API_KEY_SCOPE_LABEL_READ]  # WRITE_SCOPES, as enum numbers

    def for_worker(op: str, worker: int) -> Call:
        if op == "read":

            def read() -> None:
                answer = stub.ListProjectApiKeys(
                    pb.ListProjectApiKeysRequest(project_hash=args.read_project), timeout=30
                )
                if len(answer.api_keys) != args.read_keys:
                    raise WrongAnswer(f"{len(answer.api_keys)} keys")

            return read

        titles = itertools.count()

        def write() -> None:
            title = f"{WRITE_TITLE} {worker}-{next(titles)}"  # as gateway-py's, for a fair pair
            request = pb.CreateProjectApiKeyRequest(
                project_hash=args.write_project, title=title, scopes=scopes
            )
            if not stub.CreateProjectApiKey(request, timeout=30).api_key:
                raise WrongAnswer("no key")

        return write

    return for_worker


PATHS: dict[str, Callable[[argparse.Namespace], Callable[[str, int], Call]]] = {
    "sdk": sdk_path,
    "floor": floor_path,
    "gateway-py": gateway_path,
    "gateway-py-plain": gateway_plain_path,
}


# The measurement -----------------------------------------------------------------------------------


def run_cell(make_call: Callable[[str, int], Call], command: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: each worker calls again as soon as its call returns, until the window closes."""
    concurrency = int(command["concurrency"])
    calls = [make_call(command["op"], i) for i in range(concurrency)]
    # The driver sets the window in wall-clock time and reads /proc at its edges itself: a busy
    # client (a GIL shared by 128 threads) cannot then shift the window the CPU figures cover.
    window_start = time.perf_counter() + (float(command["window_start"]) - time.time())
    window_end = window_start + float(command["seconds"])
    # (started, finished, ok) of each call started inside the window, per worker (no lock needed).
    records: list[list[tuple[float, float, bool]]] = [[] for _ in range(concurrency)]
    errors: list[str] = []

    def worker(i: int) -> None:
        call, mine = calls[i], records[i]
        while True:
            started = time.perf_counter()
            if started >= window_end:
                return
            try:
                call()
                ok = True
            except Exception as exc:
                ok = False
                if len(errors) < MAX_ERROR_SAMPLES:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            if started >= window_start:
                mine.append((started, time.perf_counter(), ok))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [r for mine in records for r in mine]
    return {
        "event": "done",
        "latencies_us": [round((end - start) * 1e6) for start, end, ok in flat if ok],
        "errors": sum(1 for *_, ok in flat if not ok),
        "error_samples": errors,
        # Throughput counts what finished inside the window, so the tail after it is not counted twice.
        "completed_in_window": sum(1 for _, end, ok in flat if ok and end <= window_end),
        "window_s": float(command["seconds"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", choices=sorted(PATHS), required=True)
    parser.add_argument("--target", required=True, help="the emulator's URL, or the gateway's HOST:PORT")
    parser.add_argument("--key-file", help="the Encord user's OpenSSH private key (sdk, floor)")
    parser.add_argument("--ca-file", help="CA bundle that trusts the emulator's certificate")
    parser.add_argument("--read-project", required=True)
    parser.add_argument("--write-project", required=True)
    parser.add_argument("--read-keys", type=int, default=10, help="keys a read must return")
    parser.add_argument("--channels", type=int, default=1, help="gateway-py: channels (connections)")
    args = parser.parse_args()
    make_call = PATHS[args.path](args)
    emit({"event": "ready"})
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        emit(run_cell(make_call, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
