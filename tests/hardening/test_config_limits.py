"""Every numeric setting has a finite range, from flags, environment and TOML alike; one default each."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
from pathlib import Path

import pytest
import tomli_w
from encord_gateway import config
from encord_gateway.dev.devstack import cli_argv

# Never reached: every case here fails before the server binds.
UNREACHABLE = "http://127.0.0.1:9"
NUMERIC = [o for o in config.OPTIONS if o.kind in (int, float)]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_numeric_option_has_a_finite_range() -> None:
    for option in NUMERIC:
        assert option.low is not None, option.name
        assert option.high is not None, option.name
        assert option.low <= option.default <= option.high, option.name


def test_each_setting_has_one_default() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(config.Settings)}
    for option in config.OPTIONS:
        assert defaults[option.name] == option.default, option.name
    assert config.Settings().upstream_pool_size == config.DEFAULT_UPSTREAM_POOL_SIZE


# (setting, value as text, value in the TOML file)
BAD = [
    ("default_deadline", "nan", math.nan),
    ("default_deadline", "inf", math.inf),
    ("max_deadline", "inf", math.inf),
    ("grace_period", "inf", math.inf),
    ("grace_period", "-inf", -math.inf),
    ("upstream_connect_timeout", "nan", math.nan),
    ("readiness_probe_interval", "inf", math.inf),
    ("readiness_probe_interval", "-1", -1.0),
    ("max_message_bytes", str(2**40), 2**40),
    ("workers", "100000", 100000),
    ("upstream_pool_size", "0", 0),
    ("upstream_retries", "1000000", 1000000),
]


@pytest.mark.parametrize(("name", "text", "value"), BAD, ids=[f"{n}={t}" for n, t, _ in BAD])
@pytest.mark.parametrize("origin", ["flag", "env", "toml"])
def test_out_of_range_is_refused_from_every_origin(
    tmp_path: Path, name: str, text: str, value: float, origin: str
) -> None:
    option = next(o for o in config.OPTIONS if o.name == name)
    args, env = parse(), {}
    if origin == "flag":
        args = parse(f"{option.flag}={text}")
    elif origin == "env":
        env = {option.env: text}
    else:
        path = tmp_path / "gateway.toml"
        path.write_text(tomli_w.dumps({name: value}))
        args = parse("--config", str(path))
    with pytest.raises(config.ConfigError) as refused:
        config.load(args, env)
    message = str(refused.value)
    assert name in message
    assert "must be from" in message
    assert "\n" not in message


def test_settings_built_directly_are_checked_too() -> None:
    with pytest.raises(config.ConfigError, match="default_deadline"):
        config.Settings(default_deadline=float("nan"))
    with pytest.raises(config.ConfigError, match="max_message_bytes"):
        config.Settings(max_message_bytes=2**40)


def test_a_fraction_for_a_whole_number_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("workers = 1.5\n")
    with pytest.raises(config.ConfigError, match=r"workers from .* must be int"):
        config.load(parse("--config", str(path)), {})


def test_the_edges_of_a_range_are_accepted() -> None:
    settings = config.load(
        parse("--max-message-bytes", str(64 * 1024 * 1024), "--readiness-probe-interval", "0"), {}
    )
    assert settings.max_message_bytes == 64 * 1024 * 1024


def test_proxy_variables_are_read_into_settings() -> None:
    env = {"HTTPS_PROXY": "http://u:pw@proxy:3128", "no_proxy": "localhost", "HOME": "/root"}
    settings = config.load(parse(), env)
    assert settings.proxy_env == {"HTTPS_PROXY": "http://u:pw@proxy:3128", "no_proxy": "localhost"}
    assert "pw@" not in repr(settings)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--default-deadline", "nan", "default_deadline from --default-deadline must be from"),
        ("--grace-period", "inf", "grace_period from --grace-period must be from"),
        ("--max-message-bytes", str(2**40), "max_message_bytes from --max-message-bytes must be from"),
    ],
)
def test_serve_refuses_with_one_line_and_exit_2(
    ssh_key_file: Path, flag: str, value: str, message: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORD_SSH", "ENCORD_GATEWAY"))}
    argv = cli_argv("serve", "--listen", "127.0.0.1:0", "--encord-domain", UNREACHABLE,
                    "--ssh-key-file", str(ssh_key_file), flag, value)  # fmt: skip
    try:
        result = subprocess.run(argv, env=base, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"serve started with {flag} {value} instead of refusing") from exc
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("encord-gateway: error: ")
    assert message in lines[0]
    assert "listening on" not in result.stdout
