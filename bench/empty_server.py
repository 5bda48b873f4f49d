"""The `grpc-empty` reference: a Python grpcio server like the gateway's whose handlers do nothing.

It answers ListProjectApiKeys with 10 keys and CreateProjectApiKey with a key,
from memory, on a thread pool of the gateway's default size: what is left of a
gateway call when Encord, signing, policy, logging and audit cost nothing. Its
CPU per call is the least any Python grpcio server spends on a call.
"""

from __future__ import annotations

import argparse
import signal
import sys
from concurrent import futures
from typing import Any

import grpc
from encord_gateway.config import Settings
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc


class EmptyServicer(pb_grpc.ApiKeyServiceServicer):
    def __init__(self, read_keys: int) -> None:
        self._list = pb.ListProjectApiKeysResponse(
            api_keys=[
                pb.ProjectApiKey(api_key=f"key-{i:02d}", title="bench key", fingerprint="0" * 16)
                for i in range(read_keys)
            ]
        )
        self._created = pb.ProjectApiKey(api_key="new-key", title="bench key", fingerprint="0" * 16)

    def ListProjectApiKeys(self, request: Any, context: Any) -> Any:
        return self._list

    def CreateProjectApiKey(self, request: Any, context: Any) -> Any:
        return self._created


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/empty_server.py", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--read-keys", type=int, default=10)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=Settings().workers))
    # The generated stub marks every method abstract; the generated base class answers UNIMPLEMENTED
    # for the ones the bench never calls.
    servicer = EmptyServicer(args.read_keys)  # type: ignore[abstract]
    pb_grpc.add_ApiKeyServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(args.listen)
    server.start()
    host = args.listen.rpartition(":")[0]
    print(f"listening on {host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
