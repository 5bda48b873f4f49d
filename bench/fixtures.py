"""What every run needs first: the Encord user's key, the fixture, the certificate, the seeded keys."""

from __future__ import annotations

from pathlib import Path

import stack
from encord_gateway.dev.devstack import write_fixture, write_ssh_key
from loadgen import FloorClient
from measure import READ_KEYS, READ_PROJECT, WRITE_PROJECT, WRITE_PROJECTS
from variants import PROJECTS as VARIANT_PROJECTS


def prepare(workdir: Path) -> dict[str, Path]:
    """The Encord user's key (SSH, and its raw seed for the Go floor), the fixture and the certificate."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        load_ssh_private_key,
    )

    files = {
        "ssh_key": workdir / "encord_ed25519",
        "seed": workdir / "encord_ed25519.seed",
        "fixture": workdir / "fixture.toml",
        "cert": workdir / "emulator.crt",
        "cert_key": workdir / "emulator.key",
        "bundle": workdir / "ca-bundle.pem",
    }
    public = write_ssh_key(files["ssh_key"])
    key = load_ssh_private_key(files["ssh_key"].read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    files["seed"].write_text(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex())
    files["seed"].chmod(0o600)
    write_fixture(
        files["fixture"],
        public,
        projects=(READ_PROJECT, WRITE_PROJECT, *WRITE_PROJECTS.values(), *VARIANT_PROJECTS.values()),
        datasets=(),
    )
    stack.write_self_signed(files["cert"], files["cert_key"])
    # What a client trusts against api.encord.com (certifi's roots), plus the bench certificate: the
    # SDK loads this bundle on every connection, as it loads certifi's in production.
    import certifi

    files["bundle"].write_text(Path(certifi.where()).read_text() + "\n" + files["cert"].read_text())
    return files


def seed_read_project(url: str, files: dict[str, Path], tls: bool) -> None:
    """Ten keys on the read project, created straight on the emulator, then listed back."""
    floor = FloorClient(url, str(files["ssh_key"]), str(files["bundle"]) if tls else None)
    conn = floor.connection()
    try:
        for n in range(READ_KEYS):
            floor.call(conn, "POST", READ_PROJECT, {"title": f"seeded key {n}", "scopes": ["label.read"]})
        keys = floor.call(conn, "GET", READ_PROJECT, None)
    finally:
        conn.close()
    if len(keys) != READ_KEYS:
        raise RuntimeError(f"the read project has {len(keys)} keys, not {READ_KEYS}")
