"""`encord-gateway keys` without a gateway: masking, tables, JSON and where each setting comes from."""

from __future__ import annotations

import json

import pytest
from encord_gateway.cli import build_parser
from encord_gateway.cli import keys as keys_cli
from encord_gateway_client import DatasetApiKey, DatasetScope, ProjectApiKey, ProjectScope

PROJECT = "6ac8a6a4-6a64-4d4b-9a1c-3f1e3c2b9d10"
KEY = "0-projectKeyThatIsLongEnough"
PROJECT_KEY = ProjectApiKey(KEY, "vendor", (ProjectScope.LABEL_READ,), PROJECT, "0123456789abcdef")
DATASET_KEY = DatasetApiKey("d", "0-datasetKeyLongEnough", "trainer", "kh", (DatasetScope.READ,), "fedcba")


@pytest.mark.parametrize(
    ("api_key", "shown"),
    [("", "-"), ("short", "…"), ("12345678", "…"), ("0-abcdefgh", "0-ab…")],
)
def test_mask(api_key: str, shown: str) -> None:
    assert keys_cli.mask(api_key) == shown


def test_a_list_table_masks_keys_unless_revealed() -> None:
    masked = keys_cli.render_table([PROJECT_KEY], reveal=False)
    assert masked.splitlines() == [
        "TITLE   SCOPES      FINGERPRINT       API KEY",
        "vendor  label.read  0123456789abcdef  0-pr…",
    ]
    assert KEY in keys_cli.render_table([PROJECT_KEY], reveal=True)


def test_a_key_the_gateway_withheld_shows_as_a_dash() -> None:
    hidden = DatasetApiKey("d", "", "t", "kh", (), "")
    assert keys_cli.render_table([hidden], reveal=True).splitlines()[1].split() == ["t", "-", "kh", "-", "-"]


def test_a_single_key_table_is_one_field_a_line() -> None:
    assert keys_cli.render_table(DATASET_KEY, reveal=True).splitlines() == [
        "title        trainer",
        "scopes       dataset.read",
        "dataset      d",
        "key hash     kh",
        "fingerprint  fedcba",
        "api key      0-datasetKeyLongEnough",
    ]


def test_an_empty_list_says_so() -> None:
    assert keys_cli.render_table([], reveal=False) == "no keys\n"
    assert json.loads(keys_cli.render_json([])) == []


def test_json_uses_encords_scope_strings() -> None:
    assert json.loads(keys_cli.render_json(PROJECT_KEY)) == {
        "api_key": KEY,
        "title": "vendor",
        "scopes": ["label.read"],
        "project_hash": PROJECT,
        "fingerprint": "0123456789abcdef",
    }


@pytest.mark.parametrize(
    ("argv", "environ", "want"),
    [
        ([], {}, keys_cli.Connection()),
        (
            [],
            {
                "ENCORD_GATEWAY_ADDRESS": "env:1",
                "ENCORD_GATEWAY_TOKEN": "t",
                "ENCORD_GATEWAY_TLS_CA": "ca.pem",
            },
            keys_cli.Connection(gateway="env:1", token="t", tls_ca="ca.pem"),
        ),
        (
            ["--gateway", "flag:1", "--tls-ca", "flag.pem", "--timeout", "2.5"],
            {"ENCORD_GATEWAY_ADDRESS": "env:1", "ENCORD_GATEWAY_TLS_CA": "env.pem"},
            keys_cli.Connection(gateway="flag:1", tls_ca="flag.pem", timeout=2.5),
        ),
    ],
)
def test_a_flag_wins_over_its_variable_which_wins_over_the_default(
    argv: list[str], environ: dict[str, str], want: keys_cli.Connection
) -> None:
    full = ["keys", "list-project-keys", "--project", PROJECT, *argv]
    args = build_parser(full).parse_args(full)
    assert keys_cli.Connection.from_args(args, environ) == want


def test_flags_before_the_action_survive_the_actions_own_defaults() -> None:
    full = ["keys", "--gateway", "g:1", "--json", "--timeout", "3", "master-dataset-key", "--dataset", "d"]
    args = build_parser(full).parse_args(full)
    assert (args.gateway, args.json, args.timeout, args.keys.name) == ("g:1", True, 3.0, "master-dataset-key")


def test_the_token_stays_out_of_the_connections_repr() -> None:
    assert "sekrit" not in repr(keys_cli.Connection(token="sekrit"))


def test_titles_are_printed_with_controls_escaped() -> None:
    key = ProjectApiKey("k" * 43, "a\x1b[2Jb\u202ec\u2028d é", (ProjectScope.LABEL_READ,), "p", "f" * 16)
    table = keys_cli.render_table(key, reveal=False)
    assert "\x1b" not in table
    assert "\u202e" not in table
    assert "\u2028" not in table
    assert "a\\u001b[2Jb\\u202ec\\u2028d é" in table


def test_the_retry_command_sets_the_id_and_never_echoes_a_token() -> None:
    argv = ["keys", "--token", "s3cret", "create-project-key", "--title", "two words", "--request-id", "old"]
    command = keys_cli.retry_command([*argv, "--token=s3cret2"], "4b30e681-a3c2-4fea-97e4-41b41464d8c4")
    assert "s3cret" not in command
    assert "old" not in command
    assert command == (
        "encord-gateway keys create-project-key --title 'two words' "
        "--request-id 4b30e681-a3c2-4fea-97e4-41b41464d8c4"
    )
