"""Stand-in files at a deployment's container paths, rewritten under a temp dir, for `serve --check`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from encord_gateway.dev.devstack import cli_argv

ROOT = Path(__file__).resolve().parents[2]
STANDIN_PASSPHRASE = "stand-in passphrase"


def tool(name: str) -> str:
    """A tool from tools/install_go_tools.sh (.tools/bin), the venv, or PATH; in CI a missing one fails."""
    for candidate in (ROOT / ".tools" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: run tools/install_go_tools.sh, or make venv for Python tools")
        pytest.skip(f"{name} is not installed (tools/install_go_tools.sh, or make venv)")
    return found


@dataclass
class Container:
    """Container paths mapped to directories under `root`; `rewrite` moves an argument there."""

    root: Path
    mounts: dict[str, Path] = field(default_factory=dict)

    def mount(self, container_path: str, host: Path | None = None) -> Path:
        target = host or self.root / container_path.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        self.mounts[container_path.rstrip("/")] = target
        return target

    def rewrite(self, value: str) -> str:
        """Every mounted container path inside `value` (a flag, a URL, a path) as its stand-in path."""
        # Longest first: /etc/encord-gateway/ssh before a mount at /etc/encord-gateway.
        for path in sorted(self.mounts, key=len, reverse=True):
            if path in value:
                return value.replace(path, str(self.mounts[path]))
        return value


def check(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`encord-gateway serve --check` with a container's arguments (without the entrypoint) and env."""
    assert argv[0] == "serve", argv
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORD_SSH", "ENCORD_GATEWAY"))}
    return subprocess.run(
        cli_argv(*argv, "--check"),
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
