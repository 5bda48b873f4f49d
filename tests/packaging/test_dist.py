"""The built wheels install into a fresh venv and run the gateway and emulator; nothing of the tests ships."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_PROJECT, start_service, write_fixture, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both distributions' wheels, built from this checkout as `make dist` builds them."""
    out = tmp_path_factory.mktemp("dist")
    for source in (ROOT / "client_stubs" / "python", ROOT):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(out),
                str(source),
            ],
            check=True,
            cwd=tmp_path_factory.mktemp("build"),
        )
    return out


@pytest.fixture(autouse=True)
def _no_checkout_on_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed venv's processes must not find this checkout through an inherited PYTHONPATH."""
    monkeypatch.delenv("PYTHONPATH", raising=False)


@pytest.fixture(scope="module")
def installed(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no editable installs) with `pip install --find-links DIST encord-gateway`."""
    target = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--find-links", str(wheels), "encord-gateway"],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    return target


def test_the_wheel_carries_the_service_and_nothing_of_the_tests(wheels: Path) -> None:
    (wheel,) = wheels.glob("encord_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "encord_gateway/cli/serve.py" in names
    assert "encord_gateway/emulator/demo_fixture.toml" in names
    assert "encord_gateway/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "docs/", "deploy/"))]


def test_pip_install_from_the_wheels_gives_a_working_gateway(installed: Path, tmp_path: Path) -> None:
    scripts = installed / "bin"
    # Nothing is imported from this checkout: the venv's own package answers.
    where = subprocess.run(
        [str(scripts / "python"), "-c", "import encord_gateway, sys; print(encord_gateway.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert str(installed) in where
    assert str(ROOT / "server") not in where

    key = tmp_path / "gateway_key"
    fixture = tmp_path / "fixture.toml"
    write_fixture(fixture, write_ssh_key(key))
    emulator = start_service(
        "emulator",
        [str(scripts / "encord-gateway"), "emulator", "--listen", "127.0.0.1:0", "--fixture", str(fixture)],
    )
    try:
        gateway = start_service(
            "gateway",
            [
                str(scripts / "encord-gateway"), "serve", "--listen", "127.0.0.1:0",
                "--encord-domain", f"http://{emulator.address}", "--ssh-key-file", str(key),
            ],
        )  # fmt: skip
        try:
            with grpc.insecure_channel(gateway.address) as channel:
                stub = pb_grpc.ApiKeyServiceStub(channel)
                created = stub.CreateProjectApiKey(
                    pb.CreateProjectApiKeyRequest(
                        project_hash=DEMO_PROJECT,
                        title="from the wheel",
                        scopes=[pb.API_KEY_SCOPE_LABEL_READ],
                    ),
                    timeout=10,
                )
                listed = stub.ListProjectApiKeys(
                    pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=10
                )
            assert created.fingerprint in {k.fingerprint for k in listed.api_keys}
        finally:
            assert gateway.stop() == 0
    finally:
        emulator.stop()


@pytest.fixture(autouse=True)
def _no_stray_build_dirs() -> Iterator[None]:
    """pip wheel of a local tree may leave build/ behind; the checkout stays as it was."""
    before = (ROOT / "build").exists()
    yield
    if not before and (ROOT / "build").exists():
        subprocess.run(["rm", "-rf", str(ROOT / "build")], check=False)


def test_make_dists_sdists_build_and_carry_the_source_but_not_the_tests(tmp_path: Path) -> None:
    """The sdists `make dist` builds beside the wheels: each holds its package, nothing of tests or bench."""
    out = tmp_path / "dist"
    for source in (ROOT / "client_stubs" / "python", ROOT):
        subprocess.run(
            [sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(source)],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
    members = {}
    for sdist in out.glob("*.tar.gz"):
        with tarfile.open(sdist) as archive:
            # Without the top folder (NAME-VERSION/).
            members[sdist.name.rsplit("-", 1)[0]] = {
                m.split("/", 1)[1] for m in archive.getnames() if "/" in m
            }
    assert set(members) == {"encord_gateway", "encord_gateway_client"}, sorted(members)
    gateway, client = members["encord_gateway"], members["encord_gateway_client"]
    assert {"pyproject.toml", "README.md", "server/encord_gateway/cli/serve.py"} <= gateway
    assert any(m.startswith("server/encord_gateway/emulator/") and m.endswith(".toml") for m in gateway)
    assert {"pyproject.toml", "src/encord_gateway_client/v1/api_keys_pb2.py"} <= client
    for shipped in (gateway, client):
        assert not [m for m in shipped if m.split("/")[0] in {"tests", "bench", "docs", "deploy", ".venv"}]
