"""docs/emulator.md and the examples stay true: every flag and admin endpoint documented, fixtures load."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from encord_gateway.emulator import cli
from encord_gateway.emulator.admin import Admin
from encord_gateway.emulator.faults import FaultInjector, FaultSettings
from encord_gateway.emulator.fixture import demo_fixture_text, load_fixture, parse_fixture
from encord_gateway.emulator.stats import Stats
from encord_gateway.emulator.store import Store
from encord_gateway.emulator.verify import parse_openssh_public_key

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "emulator.md").read_text()


def test_every_flag_and_its_variable_is_documented() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    flags = [
        s for action in parser._actions for s in action.option_strings if s.startswith("--") and s != "--help"
    ]
    assert len(flags) == 13
    for flag in flags:
        assert f"`{flag}" in DOC, flag
        variable = "ENCORD_EMULATOR_" + flag[2:].upper().replace("-", "_")
        assert variable in DOC, variable
        rows = [line for line in DOC.splitlines() if line.startswith("| ") and f"`{flag}" in line]
        assert any(f"`{variable}`" in row for row in rows), f"no flags-table row names {flag} with {variable}"


def test_every_admin_endpoint_and_fault_field_is_documented() -> None:
    store = Store()
    admin = Admin(store, FaultInjector(), Stats())
    for endpoint, methods in admin._routes.items():
        for method in methods:
            assert f"`{method} /_emulator/{endpoint}`" in DOC, (method, endpoint)
    for name in FaultSettings.__dataclass_fields__:
        assert re.search(rf'"{name}":', DOC), name
    store.close()


@pytest.mark.parametrize("path", [ROOT / "examples" / "fixture.toml", None], ids=["examples", "bundled-demo"])
def test_example_fixtures_load(path: Path | None) -> None:
    fixture = load_fixture(path)
    assert fixture.users
    assert {r.resource_type for r in fixture.resources} == {"project", "dataset"}
    assert FaultSettings.from_mapping(fixture.faults) == FaultSettings()


def test_bundled_demo_fixture_uses_the_devstack_hashes() -> None:
    from encord_gateway.dev.devstack import DEMO_DATASET, DEMO_PROJECT

    hashes = {r.resource_hash for r in parse_fixture(demo_fixture_text()).resources}
    assert hashes == {DEMO_PROJECT, DEMO_DATASET}


def test_public_key_parser_matches_cryptography() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert parse_openssh_public_key(line + " someone@host") == raw
    assert parse_openssh_public_key(f"  {line.replace(' ', chr(9))}\tsomeone else@host\n") == raw
    rsa_line = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    blob = line.split()[1]
    bad_lines = {
        "": "public key line",
        "ssh-ed25519": "public key line",
        "ssh-rsa " + blob: "public key line",
        "ssh-ed25519 !!!": "not valid base64",
        "ssh-ed25519 AAAA": "not an Ed25519 public key",
        "ssh-ed25519 " + blob[:-8]: "not an Ed25519 public key",
        "ssh-ed25519 " + rsa_line.split()[1]: "not an Ed25519 public key",  # the blob says ssh-rsa
    }
    for bad, why in bad_lines.items():
        with pytest.raises(ValueError, match=why):
            parse_openssh_public_key(bad)
