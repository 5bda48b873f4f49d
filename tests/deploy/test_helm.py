"""The Helm chart without a cluster: helm lint, kubernetes-validate --strict, yamllint, and serve --check.

Each values case is rendered with `helm template`; the rendered Deployment's arguments, environment and
mounts are laid out under a temp dir with stand-in Secrets, so that a chart that would start the gateway
with a wrong flag, a missing file or an open door fails here, not in a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.standins import ROOT, STANDIN_PASSPHRASE, Container, check, tool
from encord_gateway.config import OPTIONS, state_kind
from encord_gateway.dev.devstack import write_ssh_key
from support.pki import Authority
from support.redis_server import RedisServer

CHART = ROOT / "deploy" / "helm" / "encord-gateway"
YAMLLINT_CONFIG = ROOT / "deploy" / "yamllint.yaml"
# The oldest Kubernetes the chart supports well (Chart.yaml says >=1.30), with schemas in kubernetes-validate.
KUBE_VERSION = "1.33.0"
CASES = {
    "defaults": [],
    "minimal": ["-f", str(CHART / "ci" / "minimal-values.yaml")],
    "mtls-redis-3-replicas": ["-f", str(CHART / "ci" / "mtls-redis-3-replicas-values.yaml")],
}
# Kinds whose schemas are not Kubernetes' own (CRDs): kubernetes-validate has none; checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}
STANDIN_REDIS_PASSWORD = "stand-in redis password"


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    return run(tool("helm"), "template", "gw", str(CHART), "--kube-version", KUBE_VERSION, *args)


def render(*args: str) -> list[dict[str, Any]]:
    result = helm_template(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    return request.param, CASES[request.param]


def test_helm_lint_strict(case: tuple[str, list[str]]) -> None:
    result = run(tool("helm"), "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *case[1])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_the_render_passes_kubernetes_validate_strict(case: tuple[str, list[str]]) -> None:
    rendered = helm_template(*case[1])
    assert rendered.returncode == 0, rendered.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d]
    validate = tool("kubernetes-validate")
    result = run(validate, "--strict", "-k", KUBE_VERSION, "-", stdin=rendered.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = result.stdout.count(" passed for resource ")
    assert passed == len([k for k in kinds if k not in CUSTOM_KINDS]), result.stdout
    assert {"Deployment", "Service", "ConfigMap"} <= set(kinds)


def test_yamllint_passes_on_the_render(case: tuple[str, list[str]]) -> None:
    rendered = helm_template(*case[1])
    assert rendered.returncode == 0, rendered.stderr
    result = run(tool("yamllint"), "-c", str(YAMLLINT_CONFIG), "-s", "-", stdin=rendered.stdout)
    assert result.returncode == 0, result.stdout


def test_yamllint_passes_on_the_values_files_and_compose() -> None:
    files = [CHART / "Chart.yaml", CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]
    result = run(
        tool("yamllint"), "-c", str(YAMLLINT_CONFIG), "-s", *map(str, files), str(ROOT / "compose.yaml")
    )
    assert result.returncode == 0, result.stdout


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_deployment_rolls_safely_probes_the_health_port_and_is_restricted(
    case: tuple[str, list[str]],
) -> None:
    docs = render(*case[1])
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert flag(args, "--health-listen") == f"0.0.0.0:{ports['health']}"
    assert flag(args, "--listen") == f"0.0.0.0:{ports['grpc']}"
    readiness = container["readinessProbe"]["grpc"]
    assert readiness == {"port": ports["health"], "service": "encord_gateway.v1.ApiKeyService"}
    for probe in ("startupProbe", "livenessProbe"):
        # gRPC unless readiness follows Encord (then a port check: an Encord outage must restart no pod).
        if float(flag(args, "--readiness-probe-interval")) > 0:
            assert container[probe]["tcpSocket"] == {"port": "health"}
        else:
            assert container[probe]["grpc"] == {"port": ports["health"]}
    stop_sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > stop_sleep + float(flag(args, "--grace-period"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["fsGroup"] > 0
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ssh-key"]["secret"]["defaultMode"] == 0o400
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]]
        if "secret" in source or "configMap" in source:
            assert mount["readOnly"] is True, mount
        # Every writable mount is a volume: the root filesystem is read-only.
        assert {"secret", "configMap", "emptyDir", "persistentVolumeClaim"} & set(source), source
    resources = container["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS: the static CPU manager's condition"


def test_the_optional_parts_point_at_what_exists() -> None:
    docs = render(*CASES["mtls-redis-3-replicas"])
    service = one(docs, "Service")
    selector = service["spec"]["selector"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    opened = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert opened == {"grpc", "metrics"}
    assert opened <= container_ports
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ENCORD_GATEWAY_STATE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "encord-gateway-state",
        "key": "redis-url",
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["--set", "replicaCount=3"], "replicaCount is 3, but no state store is shared"),
        (["--set", "replicaCount=2", "--set", "state.url=sqlite:///var/lib/encord-gateway/s.db"], "not redis://"),
        (["--set", "replicaCount=2", "--set", "state.url=memory://"], "not redis://"),
        (["--set", "tls.clientCASecret=ca"], "tls.clientCASecret (mutual TLS) needs tls.existingSecret"),
        (["--set", "terminationGracePeriodSeconds=12"], "must exceed preStopSleepSeconds + gracePeriod (15)"),
        (["--set", "replicas=3"], "additional properties 'replicas' not allowed"),
        (["--set-json", 'callers=[{"name":"x","tokens":[{"sha256":"abc"}]}]'], "sha256"),
        (["--set", "runAsUser=0"], "runAsUser"),
    ],
    ids=["replicas-without-state", "replicas-on-sqlite", "replicas-on-memory", "client-ca-without-tls",
         "grace-too-short", "unknown-value", "bad-token-digest", "root-user"],
)  # fmt: skip
def test_a_render_that_cannot_work_fails_with_a_message(values: list[str], expected: str) -> None:
    result = helm_template(*values)
    assert result.returncode != 0, result.stdout
    assert expected in result.stderr
    assert "kind: Deployment" not in result.stdout


def test_three_replicas_with_a_redis_url_in_values_keep_it_in_a_secret() -> None:
    url = "redis://:hunter2@redis.example:6379/0"
    docs = render("--set", "replicaCount=3", "--set", f"state.url={url}")
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["url"]).decode() == url
    deployment = one(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "hunter2" not in yaml.safe_dump(deployment)
    (env,) = [e for e in container["env"] if e["name"] == "ENCORD_GATEWAY_STATE_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "url"}


def checksum(*args: str) -> str:
    deployment = one(render(*args), "Deployment")
    return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/callers"])


def test_a_change_of_callers_rolls_the_pods_and_nothing_else_does() -> None:
    base = checksum(*CASES["minimal"])
    assert checksum(*CASES["minimal"], "--set", "replicaCount=1", "--set", "logLevel=debug") == base
    other = checksum(*CASES["minimal"], "--set", "callers[0].name=ops-renamed")
    assert other != base
    configmap = one(render(*CASES["minimal"]), "ConfigMap")
    assert 'name = "ops"' in configmap["data"]["gateway.toml"]
    # rollOnChange: false drops the annotation (a SIGHUP reloads instead).
    pod = one(render(*CASES["minimal"], "--set", "config.rollOnChange=false"), "Deployment")["spec"][
        "template"
    ]
    assert "checksum/callers" not in (pod["metadata"].get("annotations") or {})
    assert re.fullmatch("[0-9a-f]{64}", base)


def lay_out(
    docs: list[dict[str, Any]], root: Path, redis: RedisServer | None = None
) -> tuple[list[str], dict[str, str], Container]:
    """The rendered container's arguments and environment, with its mounts laid out under `root`."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # No command: the image's ENTRYPOINT (encord-gateway, tests/deploy/test_container.py) runs the args.
    assert "command" not in container
    args: list[str] = container["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    authority = Authority()
    box = Container(root)
    key_file = flag(args, "--ssh-key-file")
    encrypted = "--ssh-key-passphrase-file" in args
    for mount in container["volumeMounts"]:
        folder = box.mount(mount["mountPath"])
        source = volumes[mount["name"]]
        if "configMap" in source:
            for name, text in configmaps[source["configMap"]["name"]]["data"].items():
                (folder / name).write_text(text)
        elif "secret" in source:
            for item in source["secret"]["items"]:
                path, inside = folder / item["path"], f"{mount['mountPath']}/{item['path']}"
                if mount["name"] == "ssh-key" and inside == key_file:
                    write_ssh_key(path, STANDIN_PASSPHRASE.encode() if encrypted else None)
                elif mount["name"] == "ssh-key":
                    path.write_text(STANDIN_PASSPHRASE)
                elif mount["name"] == "tls":
                    continue  # below: a certificate and its own key, issued once
                elif mount["name"] in ("client-ca", "encord-ca"):
                    path.write_bytes(authority.cert_pem)
                elif mount["name"] == "state-password":
                    path.write_text(STANDIN_REDIS_PASSWORD)
                else:
                    pytest.fail(f"the chart mounts a Secret {mount['name']} this test has no stand-in for")
    if "tls" in volumes:
        issued = authority.issue("gw", ips=("127.0.0.1",), server=True)
        (box.mounts["/etc/encord-gateway/tls"] / "tls.crt").write_bytes(issued.cert_pem)
        (box.mounts["/etc/encord-gateway/tls"] / "tls.key").write_bytes(issued.key_pem)
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = box.rewrite(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        rendered = secrets.get(ref["name"])
        # A Secret the chart made holds its value; one the operator makes gets a stand-in.
        value = (
            base64.b64decode(rendered["data"][ref["key"]]).decode() if rendered else "redis://redis:6379/0"
        )
        if item["name"] == "ENCORD_GATEWAY_STATE_URL" and state_kind(value) == "redis":
            # The shared Redis the URL names is a redis-server on a loopback port here, with the stand-in
            # password when the chart mounts a password file.
            assert redis is not None, "the chart names a Redis: give lay_out one"
            value = redis.url
        env[item["name"]] = value
    known = {o.env for o in OPTIONS}
    assert set(env) <= known, f"the chart sets variables the gateway does not read: {set(env) - known}"
    return [box.rewrite(a) for a in args], env, box


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("defaults", ["refusing to start"]),
        ("minimal", ["listen: 0.0.0.0:50051 (no TLS)", "callers: ops", "audit log: stdout", "metrics: off"]),
        (
            "mtls-redis-3-replicas",
            [
                "listen: 0.0.0.0:50051 (mutual TLS)",
                "exposure: network, callers must authenticate",
                "callers: labelling-vendor, onboarding",
                "metrics: 0.0.0.0:9464",
                "health: 0.0.0.0:8081",
                "/var/log/encord-gateway/audit.jsonl (to be created)",
                "state store: redis 127.0.0.1:",
            ],
        ),
    ],
)
def test_the_rendered_deployment_starts_a_gateway(name: str, expected: list[str], tmp_path: Path) -> None:
    docs = render(*CASES[name])
    with contextlib.ExitStack() as stack:
        redis = None
        if name == "mtls-redis-3-replicas":
            redis = RedisServer(tmp_path / "redis", password=STANDIN_REDIS_PASSWORD).start()
            stack.callback(redis.stop)
        argv, env, _ = lay_out(docs, tmp_path, redis)
        result = check(argv, env, tmp_path)
    if name == "defaults":
        # No callers and no mutual TLS on a pod address: the gateway refuses rather than serve anyone.
        assert result.returncode == 2, result.stdout
        for text in expected:
            assert text in result.stderr
        return
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout, result.stdout
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_a_chart_that_passes_a_wrong_flag_fails_the_check(tmp_path: Path) -> None:
    argv, env, _ = lay_out(render(*CASES["minimal"], "--set", "extraArgs={--grace-periods}"), tmp_path)
    result = check(argv, env, tmp_path)
    assert result.returncode == 2
    assert "--grace-periods" in result.stderr
