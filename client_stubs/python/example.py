"""Mint a read-only project key through encord-gateway, list the project's keys, and decode an error.

Run it against a local stack:
`python -m encord_gateway.dev.devstack -- python client_stubs/python/example.py`.
It prints fingerprints, never keys: a key is a credential.
"""

import os

from encord_gateway_client import GatewayError, ProjectScope, connect

address = os.environ.get("ENCORD_GATEWAY_ADDRESS", "127.0.0.1:50051")
project = os.environ.get("ENCORD_DEMO_PROJECT", "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10")
token = os.environ.get("ENCORD_GATEWAY_TOKEN")  # None: a gateway without caller tokens

with connect(address, token=token, default_timeout=10) as gateway:
    key = gateway.create_project_api_key(project, "labelling vendor", [ProjectScope.LABEL_READ])
    print("created", key.fingerprint, ",".join(key.scopes))
    for listed in gateway.list_project_api_keys(project):
        print("listed", listed.fingerprint, listed.title, ",".join(listed.scopes))
    try:
        gateway.list_project_api_keys("")
    except GatewayError as err:
        print("error", err.code.name, err.reason, [v.field for v in err.field_violations])
