"""`make run`: an emulator and a gateway on loopback, every operation called once, the results as tables."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import grpc
import requests
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc

from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, Stack, running_stack, stop_on_signals
from encord_gateway.scopes import DATASET_SCOPES, PROJECT_SCOPES
from encord_gateway.signals import SignalInbox


def mask(api_key: str) -> str:
    return api_key[:6] + "…" if api_key else "(hidden)"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [f"\n{title}", line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*row) for row in rows]
    return "\n".join(out)


def project_row(key: pb.ProjectApiKey) -> list[str]:
    scopes = ",".join(PROJECT_SCOPES[s] for s in key.scopes)
    return [key.title, mask(key.api_key), key.fingerprint, scopes]


def dataset_row(key: pb.DatasetApiKey) -> list[str]:
    scopes = ",".join(DATASET_SCOPES[s] for s in key.scopes)
    return [key.title, mask(key.api_key), key.fingerprint, scopes]


def use_key(stack: Stack, api_key: str, resource_hash: str) -> str:
    """Calls the emulator with the new key, as a service holding it would (the SDK's first call)."""
    answer = requests.post(
        f"http://{stack.emulator.address}/public",
        headers={"Authorization": api_key, "ResourceID": resource_hash, "Content-Type": "application/json"},
        json={"query_type": "apikeymeta", "query_method": "GET", "values": {"uid": None, "payload": None}},
        timeout=10,
    ).json()
    meta = answer.get("response") or {}
    return f"status {answer.get('status')}: key {meta.get('title')!r} opens a {meta.get('resource_type')}"


def show(stack: Stack) -> None:
    with grpc.insecure_channel(stack.gateway.address) as channel:
        stub = pb_grpc.ApiKeyServiceStub(channel)
        header = ["title", "api_key", "fingerprint", "scopes"]
        created = stub.CreateProjectApiKey(
            pb.CreateProjectApiKeyRequest(
                project_hash=DEMO_PROJECT,
                title="Labelling vendor (read-only)",
                scopes=[pb.API_KEY_SCOPE_LABEL_READ],
            ),
            timeout=10,
        )
        print(table("CreateProjectApiKey", header, [project_row(created)]))
        master = stub.GetOrCreateProjectApiKey(
            pb.GetOrCreateProjectApiKeyRequest(project_hash=DEMO_PROJECT), timeout=10
        )
        print(table("GetOrCreateProjectApiKey (the master key)", header, [project_row(master)]))
        listed = stub.ListProjectApiKeys(pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=10)
        print(table(f"ListProjectApiKeys {DEMO_PROJECT}", header, [project_row(k) for k in listed.api_keys]))
        dataset_key = stub.CreateDatasetApiKey(
            pb.CreateDatasetApiKeyRequest(
                dataset_hash=DEMO_DATASET, title="Training job", scopes=[pb.DATASET_SCOPE_READ]
            ),
            timeout=10,
        )
        print(table("CreateDatasetApiKey", header, [dataset_row(dataset_key)]))
        stub.GetOrCreateDatasetApiKey(
            pb.GetOrCreateDatasetApiKeyRequest(dataset_hash=DEMO_DATASET), timeout=10
        )
        listed_ds = stub.ListDatasetApiKeys(
            pb.ListDatasetApiKeysRequest(dataset_hash=DEMO_DATASET), timeout=10
        )
        print(
            table(f"ListDatasetApiKeys {DEMO_DATASET}", header, [dataset_row(k) for k in listed_ds.api_keys])
        )
        print(
            "\nUsing the new project key against the emulator:", use_key(stack, created.api_key, DEMO_PROJECT)
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep both servers up until Ctrl-C")
    args = parser.parse_args(argv)
    stop_on_signals()
    with running_stack() as stack:
        print(f"emulator  http://{stack.emulator.address}   (demo fixture, throwaway SSH key)")
        print(f"gateway   {stack.gateway.address}   (plaintext gRPC, loopback only)")
        show(stack)
        if args.keep:
            print(
                "\nBoth servers stay up; Ctrl-C stops them. Try:\n"
                f"  .venv/bin/encord-gateway keys list-project-keys --gateway {stack.gateway.address} "
                f"--project {DEMO_PROJECT}\n"
                f"  .venv/bin/encord-gateway keys create-dataset-key --gateway {stack.gateway.address} "
                f"--dataset {DEMO_DATASET} --title demo --scope dataset.read"
            )
            # Not signal.pause(): it returns only for a signal delivered to the main thread, and the
            # kernel may give Ctrl-C or SIGTERM to an output-draining or gRPC thread instead.
            with SignalInbox((signal.SIGINT, signal.SIGTERM)) as stop:
                stop.get()
    print("\nstopped the gateway and the emulator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
