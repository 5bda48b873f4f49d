"""deploy/systemd/encord-gateway.service: systemd-analyze verify where it exists, and its command's check."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from deploy.standins import ROOT, Container, check
from encord_gateway.config import OPTIONS
from encord_gateway.dev.devstack import write_ssh_key

UNIT = ROOT / "deploy" / "systemd" / "encord-gateway.service"
INSTALLED = "/opt/encord-gateway/bin/encord-gateway"


def service() -> configparser.SectionProxy:
    # Keys repeat in units (Environment=, LoadCredential=); none does in this one, so strict parsing holds.
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    return parser["Service"]


def exec_start() -> list[str]:
    # A trailing backslash continues the line, as in a shell; configparser keeps the continuation lines.
    return shlex.split(service()["ExecStart"].replace("\\\n", " ").replace("\n", " "))


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the parse tests below still check the unit")
    # verify insists that ExecStart's program exists: this venv's encord-gateway stands in for /opt's.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(Path(sys.executable).parent / "encord-gateway")))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stdout + result.stderr, result.stderr


def test_the_unit_drains_reloads_and_writes_only_its_own_directories() -> None:
    unit = service()
    argv = exec_start()
    assert argv[:2] == [INSTALLED, "serve"]
    grace = next(o.default for o in OPTIONS if o.name == "grace_period")
    if "--grace-period" in argv:
        grace = float(argv[argv.index("--grace-period") + 1])
    assert float(unit["TimeoutStopSec"]) > grace
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["User"] != "root"
    assert unit["ProtectSystem"] == "strict"
    assert unit["NoNewPrivileges"] == "true"
    # ProtectSystem=strict leaves writable only the directories systemd makes for the service.
    writable = [f"/var/lib/{unit['StateDirectory']}/", f"/var/log/{unit['LogsDirectory']}/"]
    audit = argv[argv.index("--audit-log") + 1]
    state = argv[argv.index("--state-url") + 1].removeprefix("sqlite:///")
    for path in (audit, state):
        assert any(path.startswith(w) for w in writable), path


def test_the_units_command_passes_serve_check(tmp_path: Path) -> None:
    unit = service()
    box = Container(tmp_path)
    for path in ("/etc/encord-gateway", "/var/lib/encord-gateway", "/var/log/encord-gateway"):
        box.mount(path)
    # LoadCredential=NAME:PATH hands the service a copy of PATH as $CREDENTIALS_DIRECTORY/NAME (%d/NAME).
    credentials = box.mount("/run/credentials/encord-gateway.service")
    name, source = unit["LoadCredential"].split(":", 1)
    write_ssh_key(Path(box.rewrite(source)))
    (credentials / name).write_bytes(Path(box.rewrite(source)).read_bytes())
    ops = {"name": "ops", "tokens": [{"sha256": "cd" * 32}], "methods": ["*"]}
    (box.mounts["/etc/encord-gateway"] / "gateway.toml").write_text(tomli_w.dumps({"callers": [ops]}))
    variable, _, value = unit["Environment"].partition("=")
    env = {variable: value.replace("%d", str(credentials))}
    argv = [box.rewrite(a) for a in exec_start()[1:]]
    result = check(argv, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"from $ENCORD_SSH_KEY_FILE ({credentials / name})" in result.stdout
    assert "callers: ops" in result.stdout
    assert "health: 127.0.0.1:8081" in result.stdout
    assert "metrics: 127.0.0.1:9464" in result.stdout
