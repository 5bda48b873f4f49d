"""Start-up: a bad SSH key or bad settings stop `serve` with one clear line and exit code 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from encord_gateway.config import OPTIONS
from encord_gateway.dev.devstack import cli_argv, start_service, write_ssh_key

# Never reaches a network: every case fails before the server binds.
UNREACHABLE = "http://127.0.0.1:9"


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORD_SSH", "ENCORD_GATEWAY"))}
    return subprocess.run(
        cli_argv("serve", "--listen", "127.0.0.1:0", "--encord-domain", UNREACHABLE, *args),
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def openssh_private(
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    passphrase: bytes | None = None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)


def public_key_hex(private_text: str) -> str:
    key = load_ssh_private_key(private_text.encode(), None)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str, secret: bytes = b"") -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("encord-gateway: error: ")
    for text in expected:
        assert text in lines[0]
    assert "listening on" not in result.stdout
    if secret:
        body = b"".join(secret.splitlines()[1:-1]).decode()
        assert body[:40] not in result.stderr + result.stdout


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_no_key_at_all() -> None:
    assert_refused(run_serve(), "no SSH key", "ENCORD_SSH_KEY_FILE")


def test_missing_key_file(key_dir: Path) -> None:
    assert_refused(run_serve("--ssh-key-file", str(key_dir / "nope")), "does not exist")


def test_unreadable_key_file(key_dir: Path) -> None:
    # A directory cannot be read as a file, even by root.
    assert_refused(run_serve("--ssh-key-file", str(key_dir)), "cannot be read")


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA"),
        (ec.generate_private_key(ec.SECP256R1()), "ECDSA"),
    ],
    ids=["rsa", "ecdsa"],
)
def test_non_ed25519_key(
    key_dir: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kind: str
) -> None:
    path = key_dir / "id_other"
    secret = openssh_private(key)
    path.write_bytes(secret)
    assert_refused(run_serve("--ssh-key-file", str(path)), kind, "only Ed25519", secret=secret)


def test_not_a_key(key_dir: Path) -> None:
    path = key_dir / "id_garbage"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n")
    assert_refused(run_serve("--ssh-key-file", str(path)), "not an OpenSSH private key")


def test_protected_key_without_passphrase(key_dir: Path) -> None:
    path = key_dir / "id_locked"
    secret = openssh_private(ed25519.Ed25519PrivateKey.generate(), b"sesame")
    path.write_bytes(secret)
    assert_refused(run_serve("--ssh-key-file", str(path)), "passphrase-protected", secret=secret)


def test_protected_key_with_wrong_passphrase(key_dir: Path) -> None:
    path = key_dir / "id_locked"
    path.write_bytes(openssh_private(ed25519.Ed25519PrivateKey.generate(), b"sesame"))
    result = run_serve("--ssh-key-file", str(path), env={"ENCORD_SSH_KEY_PASSPHRASE": "hunter2-nope"})
    assert_refused(result, "wrong passphrase")
    assert "hunter2" not in result.stderr


def test_bad_setting_names_the_setting(ssh_key_file: Path) -> None:
    assert_refused(run_serve("--ssh-key-file", str(ssh_key_file), "--workers", "many"), "workers", "int")
    assert_refused(
        run_serve("--ssh-key-file", str(ssh_key_file), "--encord-domain", "ftp://x"), "encord_domain"
    )


def test_bad_config_file(key_dir: Path, ssh_key_file: Path) -> None:
    config = key_dir / "gateway.toml"
    config.write_text("listen = \n")
    assert_refused(run_serve("--ssh-key-file", str(ssh_key_file), "--config", str(config)), "not valid TOML")
    config.write_text('lisen = "127.0.0.1:0"\n')
    assert_refused(
        run_serve("--ssh-key-file", str(ssh_key_file), "--config", str(config)), "unknown settings: lisen"
    )


def test_a_bad_policy_is_refused_with_the_settings_before_any_worker_starts(
    key_dir: Path, ssh_key_file: Path
) -> None:
    # [[callers]] is parsed when the settings are built, in main(): the supervisor of --processes 2
    # never forks a worker to find it out, and the one line is the only output.
    config = key_dir / "gateway.toml"
    config.write_text('[[callers]]\nname = "ci"\n')
    state = f"sqlite:///{key_dir / 'state.db'}"
    args = ("--ssh-key-file", str(ssh_key_file), "--config", str(config), "--state-url", state)
    result = run_serve(*args, "--processes", "2")
    assert_refused(result, "caller 'ci': needs certificates or tokens")
    assert "worker started" not in result.stdout + result.stderr
    assert_refused(run_serve(*args, "--check"), "caller 'ci': needs certificates or tokens")


def _serves(args: list[str], env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORD_SSH", "ENCORD_GATEWAY"))}
    service = start_service(
        "gateway",
        cli_argv("serve", "--listen", "127.0.0.1:0", "--encord-domain", UNREACHABLE, *args),
        env={**base, **env},
    )
    try:
        return "".join(service.output)
    finally:
        assert service.stop() == 0


def test_key_text_from_environment(key_dir: Path) -> None:
    path = key_dir / "id_ed25519"
    write_ssh_key(path)
    text = path.read_text()
    output = _serves([], {"ENCORD_SSH_KEY": text})
    # It serves, signing with this very key (the "serving" line names its public half) ...
    assert "listening on 127.0.0.1:" in output
    assert public_key_hex(text) in output
    # ... and no part of the private key reaches the output: not the text, not one line of its body.
    assert text.strip() not in output
    for line in text.splitlines()[1:-1]:
        assert line not in output


def test_protected_key_with_passphrase_file(key_dir: Path) -> None:
    path = key_dir / "id_locked"
    write_ssh_key(path, passphrase=b"sesame")
    secret_file = key_dir / "passphrase"
    secret_file.write_text("sesame\n")
    output = _serves(["--ssh-key-file", str(path), "--ssh-key-passphrase-file", str(secret_file)], {})
    assert "listening on 127.0.0.1:" in output
    assert "sesame" not in output


def test_flag_beats_environment(key_dir: Path, ssh_key_file: Path) -> None:
    # The env var points at nothing: the flag must win or start-up would fail.
    output = _serves(["--ssh-key-file", str(ssh_key_file)], {"ENCORD_SSH_KEY_FILE": str(key_dir / "missing")})
    assert "listening on" in output


def test_help_documents_every_flag() -> None:
    result = subprocess.run(
        cli_argv("serve", "--help"), capture_output=True, text=True, timeout=30, check=True
    )
    # Every setting, with its environment variable; the design's four flags are among them.
    words = set(result.stdout.replace("[", " ").replace("]", " ").replace(",", " ").replace(";", " ").split())
    assert {"--listen", "--encord-domain", "--ssh-key-file", "--config"} <= words
    missing = [o.flag for o in OPTIONS if o.flag not in words] + [
        o.env for o in OPTIONS if o.env not in words
    ]
    assert missing == []


def test_missing_encord_ca_file_is_refused(ssh_key_file: Path, key_dir: Path) -> None:
    result = run_serve("--ssh-key-file", str(ssh_key_file), "--encord-ca-file", str(key_dir / "no-ca.pem"))
    assert_refused(result, "encord_ca_file", "does not exist")


def test_unloadable_encord_ca_file_is_refused(ssh_key_file: Path, key_dir: Path) -> None:
    bundle = key_dir / "not-a-bundle.pem"
    bundle.write_text("this is not a certificate\n")
    result = run_serve("--ssh-key-file", str(ssh_key_file), "--encord-ca-file", str(bundle))
    assert_refused(result, "cannot load the CA bundle", str(bundle))


def test_unusable_proxy_is_refused_without_showing_its_password(ssh_key_file: Path) -> None:
    # An https:// proxy URL (TLS to the proxy itself) is not supported: refused at start, not per call.
    env = {"HTTPS_PROXY": "https://user:s3cret-pass@proxy.invalid:3128"}
    result = run_serve(
        "--ssh-key-file", str(ssh_key_file), "--encord-domain", "https://api.encord.invalid", env=env
    )
    assert_refused(result, "proxy", "only http:// proxies")
    assert "s3cret-pass" not in result.stderr + result.stdout


def test_bad_cpu_list_is_refused(ssh_key_file: Path) -> None:
    assert_refused(run_serve("--ssh-key-file", str(ssh_key_file), "--cpus", "first"), "cpus must be like")


def test_pinned_to_one_cpu(ssh_key_file: Path) -> None:
    output = _serves(["--ssh-key-file", str(ssh_key_file), "--cpus", "0"], {})
    assert "listening on" in output


def test_a_caller_that_could_hold_every_worker_is_warned_of(key_dir: Path, ssh_key_file: Path) -> None:
    config = key_dir / "gateway.toml"
    caller = {"name": "wide", "tokens": [{"sha256": "a" * 64}], "max_in_flight": 8}
    config.write_text(tomli_w.dumps({"callers": [caller]}))
    args = ["--ssh-key-file", str(ssh_key_file), "--config", str(config)]
    warning = "caller may hold every worker: its max_in_flight is not below --workers"
    assert warning in _serves([*args, "--workers", "8"], {})
    assert warning not in _serves([*args, "--workers", "9"], {})
