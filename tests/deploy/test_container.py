"""The Dockerfile and compose.yaml, checked without building an image (no base image can be pulled here).

What a build would show is checked from the files: the user is numeric and not root, the wheels are the
ones `make dist` builds, nothing secret can enter the build context, the entrypoint is the console script,
every path the gateway writes is a declared volume, and the image's and compose's commands start a
gateway (`serve --check`, and compose's stack run as plain processes).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import tomllib
from pathlib import Path

import grpc
import tomli_w
import yaml
from deploy.standins import ROOT, Container, check
from encord_gateway.config import state_kind
from encord_gateway.dev.devstack import DEMO_PROJECT, cli_argv, start_service, write_ssh_key
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.redis_server import RedisServer

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\n[A-Za-z0-9+/=]{16,}")
SECRET_NAMES = ("*.pem", "*.key", "*.crt", "*.p12", "id_*", "*_key", "*.env", ".netrc", "*token*")


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    steps = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            steps.append((keyword.upper(), " ".join(rest.split())))
    return steps


def stages() -> dict[str, list[tuple[str, str]]]:
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in instructions(DOCKERFILE):
        if keyword == "FROM":
            current = named.setdefault(rest.split(" AS ")[-1], [])
        current.append((keyword, rest))
    return named


def runtime(keyword: str) -> list[str]:
    return [rest for kw, rest in stages()["runtime"] if kw == keyword]


def exec_form(keyword: str) -> list[str]:
    (args,) = runtime(keyword)
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"{keyword} is not in exec form: a shell would be PID 1, not the gateway"
    return [str(a) for a in parsed]


def test_the_image_runs_as_a_numeric_user_that_is_not_root() -> None:
    assert list(stages()) == ["build", "runtime"]
    (user,) = runtime("USER")
    uid, _, gid = user.partition(":")
    # Numeric: Kubernetes' runAsNonRoot can only verify a numeric USER.
    assert uid.isdigit(), user
    assert gid.isdigit(), user
    assert int(uid) > 0, user
    assert int(gid) > 0, user
    # Nothing after USER runs as another user or switches back to root.
    after = [kw for kw, _ in stages()["runtime"]]
    assert "RUN" not in after[after.index("USER") :]


def test_the_entrypoint_is_the_console_script_and_the_command_serves() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert exec_form("ENTRYPOINT") == ["encord-gateway"]
    assert "encord-gateway" in scripts
    assert exec_form("CMD")[0] == "serve"


def test_the_wheels_are_built_as_make_dist_builds_them_and_installed_as_the_packaging_test_does() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndist:", 1)[1].split("\n\n", 1)[0]
    make_builds = [ln.strip().replace("$(PY)", "python") for ln in recipe.splitlines() if "-m build" in ln]
    assert len(make_builds) == 2
    build_runs = [rest for kw, rest in stages()["build"] if kw == "RUN"]
    docker_builds = [part.strip() for run in build_runs for part in run.split("&&") if "-m build" in part]
    assert docker_builds == make_builds
    # The runtime installs offline from what the build stage resolved from dist/, as tests/packaging does.
    (resolve,) = [r for r in build_runs if "pip wheel" in r]
    assert "--find-links dist encord-gateway" in resolve
    (install,) = [r for r in runtime("RUN") if "pip install" in r]
    assert "from=build" in install
    assert "--no-index --find-links /wheels encord-gateway" in install
    assert not runtime("COPY"), "the runtime stage copies nothing: the wheels are bind-mounted"


def context_files() -> list[Path]:
    """The files `docker build .` would send, under .dockerignore's allow-list (last match wins)."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append((line.startswith("!"), line.lstrip("!").rstrip("/")))

    def matches(pattern: str, path: str) -> bool:
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        parts = path.split("/")
        # A pattern that matches a folder matches everything in it.
        return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1))

    def included(relative: str) -> bool:
        verdict = True
        for negated, pattern in patterns:
            if matches(pattern, relative):
                verdict = negated
        return verdict

    sent = []
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT).as_posix().removeprefix(".")
        prefix = f"{here}/" if here else ""
        # Docker walks it all; skipping a folder that is out and that no `!` pattern reaches into is the same.
        dirs[:] = [
            d
            for d in dirs
            if included(prefix + d) or any(neg and p.startswith(prefix + d + "/") for neg, p in patterns)
        ]
        sent += [Path(folder) / f for f in files if included(prefix + f)]
    return sent


def test_the_build_context_is_what_the_dockerfile_copies_and_holds_nothing_secret() -> None:
    sent = context_files()
    names = {p.relative_to(ROOT).as_posix() for p in sent}
    assert "server/encord_gateway/cli/serve.py" in names
    assert "client_stubs/python/pyproject.toml" in names
    assert not [n for n in names if n.startswith(("tests/", ".tools/", "dist/", "deploy/", "bench/"))]
    copied = [rest for kw, rest in stages()["build"] if kw == "COPY"]
    for sources in (c.split()[:-1] for c in copied):
        for source in sources:
            assert any(n == source or n.startswith(source + "/") for n in names), f"COPY {source}: not sent"
    for path in sent:
        assert not any(fnmatch.fnmatch(path.name.lower(), p) for p in SECRET_NAMES), path
        assert not PRIVATE_KEY_BLOCK.search(path.read_text(errors="replace")), f"{path} holds a private key"


def test_nothing_secret_is_set_in_the_image_and_every_written_path_is_a_volume() -> None:
    for keyword in ("ENV", "ARG"):
        for rest in [r for kw, r in stages()["runtime"] + stages()["build"] if kw == keyword]:
            for name, _, value in (pair.partition("=") for pair in shlex.split(rest)):
                # A path to a mounted secret is fine; the secret itself never is.
                assert not re.search(r"TOKEN|PASSWORD|PASSPHRASE", name), name
                if "KEY" in name:
                    assert name.endswith("_FILE"), name
                    assert value.startswith("/run/secrets/"), (name, value)
    (volume,) = runtime("VOLUME")
    volumes = json.loads(volume)
    cmd = exec_form("CMD")
    written = [
        cmd[cmd.index("--audit-log") + 1],
        cmd[cmd.index("--state-url") + 1].removeprefix("sqlite:///"),
    ]
    for path in written:
        assert any(path.startswith(v + "/") for v in volumes), f"{path} is on the read-only root filesystem"


def test_the_image_command_passes_serve_check(tmp_path: Path) -> None:
    """The CMD and ENV of the image, with a config, a key and the volumes laid out as a deployment would."""
    box = Container(tmp_path)
    for path in ("/var/lib/encord-gateway", "/var/log/encord-gateway", "/etc/encord-gateway", "/run/secrets"):
        box.mount(path)
    ops = {"name": "ops", "tokens": [{"sha256": "ab" * 32}], "methods": ["*"]}
    (box.mounts["/etc/encord-gateway"] / "gateway.toml").write_text(tomli_w.dumps({"callers": [ops]}))
    env: dict[str, str] = {}
    for rest in runtime("ENV"):
        env.update(dict(pair.split("=", 1) for pair in shlex.split(rest)))
    write_ssh_key(Path(box.rewrite(env["ENCORD_SSH_KEY_FILE"])))
    result = check(
        [box.rewrite(a) for a in exec_form("CMD")], {k: box.rewrite(v) for k, v in env.items()}, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "listen: 0.0.0.0:50051 (no TLS)" in result.stdout
    assert "exposure: network, callers must authenticate" in result.stdout
    assert (
        f"state store: sqlite {box.mounts['/var/lib/encord-gateway']}/state.db (to be created)"
        in result.stdout
    )
    assert "health: 0.0.0.0:8081" in result.stdout


class ComposeStack:
    """compose.yaml's services as processes: named volumes are folders, container paths are rewritten."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def container(self, service: str) -> Container:
        box = Container(self.root / service)
        for spec in COMPOSE["services"][service].get("volumes", []):
            volume, path = spec.split(":")[:2]
            assert volume in COMPOSE["volumes"], f"{service}: {volume} is not a named volume"
            box.mount(path, self.root / "volumes" / volume)
        return box


def test_compose_uses_the_image_read_only_and_publishes_only_on_loopback() -> None:
    for name in ("keys", "emulator", "gateway"):
        service = COMPOSE["services"][name]
        assert service["image"] == "encord-gateway:dev"
        assert service["build"] == "."
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        # The gateway runs --insecure: only the host's own loopback may reach it.
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert "--insecure" in COMPOSE["services"]["gateway"]["command"]
    assert COMPOSE["services"]["redis"]["image"].startswith("redis:")


def test_compose_stack_runs_as_processes_and_mints_a_key(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        run_compose_stack(tmp_path, redis)
    finally:
        redis.stop()


def run_compose_stack(tmp_path: Path, redis: RedisServer) -> None:
    stack = ComposeStack(tmp_path)
    keys = COMPOSE["services"]["keys"]
    assert keys["entrypoint"][:2] == ["python", "-c"]
    box = stack.container("keys")
    script = keys["entrypoint"][2].replace(
        "/var/lib/encord-gateway", str(box.mounts["/var/lib/encord-gateway"])
    )
    exec(compile(script, "compose.yaml:keys", "exec"), {})  # noqa: S102 - the file's own one-shot script

    emulator_box = stack.container("emulator")
    emulator_args = [emulator_box.rewrite(a) for a in COMPOSE["services"]["emulator"]["command"]]
    emulator_args[emulator_args.index("--listen") + 1] = "127.0.0.1:0"
    emulator_box.mount("/var/lib/encord-gateway")  # its own volume, emulator-state
    emulator = start_service("emulator", cli_argv(*emulator_args))
    try:
        gateway_box = stack.container("gateway")
        command = list(COMPOSE["services"]["gateway"]["command"])
        url = command[command.index("--state-url") + 1]
        assert state_kind(url) == "redis"
        # compose's redis service is a redis-server on a loopback port here.
        command[command.index("--state-url") + 1] = redis.url
        argv = [gateway_box.rewrite(a) for a in command]
        env = {
            k: gateway_box.rewrite(str(v)) for k, v in COMPOSE["services"]["gateway"]["environment"].items()
        }
        result = check(argv, env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "encord: http://emulator:8080 not contacted" in result.stdout
        assert f"state store: redis 127.0.0.1:{redis.port}" in result.stdout
        for flag in ("--listen", "--health-listen", "--metrics-listen"):
            argv[argv.index(flag) + 1] = "127.0.0.1:0"
        argv[argv.index("--encord-domain") + 1] = f"http://{emulator.address}"
        gateway = start_service("gateway", cli_argv(*argv), env=env)
        try:
            with grpc.insecure_channel(gateway.address) as channel:
                made = pb_grpc.ApiKeyServiceStub(channel).CreateProjectApiKey(
                    pb.CreateProjectApiKeyRequest(
                        project_hash=DEMO_PROJECT, title="from compose", scopes=[pb.API_KEY_SCOPE_LABEL_READ]
                    ),
                    timeout=10,
                )
            assert len(made.fingerprint) == 16
        finally:
            assert gateway.stop() == 0
        audit = gateway_box.mounts["/var/log/encord-gateway"] / "audit.jsonl"
        assert made.fingerprint in audit.read_text()
    finally:
        emulator.stop()
