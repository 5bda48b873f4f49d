"""The command line: HTTPS, start-up refusals with a one-line reason, and a clean exit on SIGINT/SIGTERM."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.x509.oid import NameOID
from encord.exceptions import AuthenticationError
from encord_gateway.dev.devstack import cli_argv
from support.emulator_users import PROJECT, Spawn, sdk_body, sdk_exception


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = generate_private_key(SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https(spawn: Spawn, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    emulator = spawn("--tls-cert", str(cert), "--tls-key", str(key))
    url = f"https://{emulator.address}/public/user"
    body = sdk_body("projectapikey", "POST", PROJECT, {"title": "tls", "scopes": ["label.read"]})
    # A plain-HTTP client and a client that distrusts the certificate both fail, and the server lives on.
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://{emulator.address}/public/user", data=body, timeout=10)
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(url, data=body, headers=emulator.signed_headers(body), timeout=10)
    response = requests.post(
        url, data=body, headers=emulator.signed_headers(body), timeout=10, verify=str(cert)
    )
    assert response.json()["status"] == 200
    assert response.json()["response"].startswith("0-")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv("emulator", *args), capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("args", "fixture", "reason"),
    [
        (["--listen", "nowhere"], None, "HOST:PORT"),
        (["--listen", "127.0.0.1:70000"], None, "out of range"),
        (["--tls-cert", "cert.pem"], None, "--tls-cert and --tls-key go together"),
        (["--error-rate", "2"], None, "error_rate"),
        ([], "[[users]]\nemail = 'a@b'\npublic_key = 'ssh-rsa AAAA a@b'\n", "ssh-ed25519"),
        ([], "[[projects]]\nproject_hash = 'p'\ntitle = 't'\nadmins = ['ghost@x']\n", "ghost@x"),
        ([], "[[users]]\nemail = \n", "not valid TOML"),
        ([], "[faults]\ndrop_rate = 'often'\n", "drop_rate"),
        ([], "[[datasets]]\ndataset_hash = 'd'\ntitel = 't'\n", "titel"),
        ([], "[faults]\nforce_error_payload = 1979-05-27\n", "force_error_payload"),
    ],
    ids=[
        "listen-no-port",
        "listen-port-range",
        "tls-half",
        "error-rate-range",
        "rsa-key",
        "unknown-admin",
        "bad-toml",
        "fault-type",
        "unknown-key",
        "toml-date-payload",
    ],
)
def test_bad_start_up_is_refused_with_a_reason(
    tmp_path: Path, args: list[str], fixture: str | None, reason: str
) -> None:
    if fixture is not None:
        (tmp_path / "bad.toml").write_text(fixture)
        args = [*args, "--fixture", str(tmp_path / "bad.toml")]
    result = _run("--listen", "127.0.0.1:0", *args) if "--listen" not in args else _run(*args)
    assert result.returncode == 2
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stdout


def test_sigint_stops_cleanly(spawn: Spawn) -> None:
    emulator = spawn()
    bad = emulator.post_user("{}", {"Authorization": "00:00"})
    assert isinstance(sdk_exception(bad), AuthenticationError)
    emulator.service.process.send_signal(signal.SIGINT)
    assert emulator.service.process.wait(10) == 0
    assert emulator.log.count("listening on") == 1
    assert "Traceback" not in emulator.log
    assert "outcome=AUTHENTICATION_ERROR" in emulator.log
