"""Helpers for the emulator tests: the test fixture's users and resources, and a running emulator's handle."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import tomli_w
from encord.configs import SshConfig
from encord.http.error_utils import check_error_response
from encord.user_client import EncordUserClient
from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT, Service, cli_argv, start_service

PROJECT = DEMO_PROJECT
OTHER_PROJECT = "9b1f5c3e-2d4a-4e8b-8f6a-7c5d4e3b2a10"  # administered by the outsider only
DATASET = DEMO_DATASET
OTHER_DATASET = "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d10"
UNKNOWN_HASH = "00000000-0000-4000-8000-000000000000"

# Who signs: admin of PROJECT and DATASET; member of both; outsider (admin of the OTHER_*
# resources only); twin (a public key two users share); stranger (a key no user holds).
ROLES = ("admin", "member", "outsider", "twin", "stranger")
EMAILS = {"admin": "admin@example.com", "member": "member@example.com", "outsider": "outsider@example.com"}


def fixture_document(public_keys: dict[str, str], faults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The test fixture: three users, two twins sharing one key, two projects and two datasets."""
    users = [(EMAILS[r], public_keys[r]) for r in ("admin", "member", "outsider")]
    users += [("twin1@example.com", public_keys["twin"]), ("twin2@example.com", public_keys["twin"])]
    document: dict[str, Any] = {
        "users": [{"email": email, "public_key": key} for email, key in users],
        "projects": [],
        "datasets": [],
    }
    resources = [
        ("projects", "project_hash", PROJECT, "admin", ["member", "twin1@example.com"]),
        ("projects", "project_hash", OTHER_PROJECT, "outsider", []),
        ("datasets", "dataset_hash", DATASET, "admin", ["member"]),
        ("datasets", "dataset_hash", OTHER_DATASET, "outsider", []),
    ]
    for table, key, value, admin, members in resources:
        document[table].append({
            key: value,
            "title": f"Title of {value[:8]}",
            "admins": [EMAILS[admin]],
            "members": [EMAILS.get(m, m) for m in members],
        })  # fmt: skip
    if faults:
        document["faults"] = dict(faults)
    return document


def fixture_toml(public_keys: dict[str, str], faults: dict[str, Any] | None = None) -> str:
    return tomli_w.dumps(fixture_document(public_keys, faults))


@dataclass
class Emulator:
    """A running emulator process and the means to call it as each user."""

    service: Service
    keys: dict[str, Path]
    workdir: Path
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.service.address

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def user(self, who: str = "admin") -> EncordUserClient:
        return EncordUserClient.create_with_ssh_private_key(
            ssh_private_key_path=self.keys[who], domain=self.url
        )

    def ssh_config(self, who: str = "admin") -> SshConfig:
        return SshConfig.from_ssh_private_key(self.keys[who].read_text(), domain=self.url)

    def signed_headers(self, body: str, who: str = "admin") -> dict[str, str]:
        """The SDK's own v1 headers for `body`: the reference signer, not the gateway's."""
        return dict(self.ssh_config(who).define_headers(None, None, body))

    def post_user(
        self, body: str | bytes, headers: dict[str, str], *, timeout: float = 10, **kwargs: Any
    ) -> requests.Response:
        return requests.post(f"{self.url}/public/user", data=body, headers=headers, timeout=timeout, **kwargs)

    def call(
        self, query_type: str, query_method: str, uid: Any, payload: Any, who: str = "admin"
    ) -> requests.Response:
        """A raw, well-signed /public/user call with the SDK's exact body bytes."""
        body = sdk_body(query_type, query_method, uid, payload)
        return self.post_user(body, self.signed_headers(body, who))

    def admin(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.url}/_emulator/{endpoint}", timeout=10, **kwargs)

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        response = self.admin("PUT", "faults", json=settings)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def stats(self) -> dict[str, Any]:
        response = self.admin("GET", "stats")
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    def key_count(self, resource_hash: str) -> int:
        return int(self.stats()["keys"].get(resource_hash, 0))

    @property
    def log(self) -> str:
        return "".join(self.service.output)


def sdk_body(query_type: str, query_method: str, uid: Any, payload: Any) -> str:
    """Exactly what encord.http.request.Request serialises."""
    return json.dumps(
        {"query_type": query_type, "query_method": query_method, "values": {"uid": uid, "payload": payload}}
    )


def sdk_exception(response: requests.Response) -> BaseException:
    """The exception the SDK raises for this error envelope (via its own check_error_response)."""
    envelope = response.json()
    assert envelope["status"] != 200, envelope
    try:
        check_error_response(envelope["response"], None, envelope.get("payload"))
    except Exception as exc:
        return exc
    raise AssertionError(f"the SDK accepted {envelope}")


Spawn = Callable[..., Emulator]


def spawn_emulator(
    workdir: Path,
    ssh_keys: tuple[dict[str, Path], dict[str, str]],
    started: list[Emulator],
    *args: str,
    fixture_text: str | None = None,
    faults: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    use_fixture: bool = True,
) -> Emulator:
    paths, public = ssh_keys
    workdir.mkdir(parents=True, exist_ok=True)
    argv: list[str] = ["emulator", "--listen", "127.0.0.1:0"]
    if use_fixture:
        fixture = workdir / f"fixture-{len(started)}.toml"
        fixture.write_text(fixture_text if fixture_text is not None else fixture_toml(public, faults))
        argv += ["--fixture", str(fixture)]
    service = start_service("emulator", cli_argv(*argv, *args), env=env)
    emulator = Emulator(service, paths, workdir)
    started.append(emulator)
    return emulator


def stop_all(started: Sequence[Emulator]) -> None:
    codes = [e.service.stop() for e in started]
    assert all(code == 0 for code in codes), f"emulator exit codes {codes}"
