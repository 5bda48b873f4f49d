"""The encoders built once give json.dumps's text exactly, for what the log, the trail and bodies hold."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from encord_gateway import jsontext

VALUES: list[Any] = [
    {"query_type": "projectapikey", "query_method": "GET", "values": {"uid": "p", "payload": None}},
    {"project_hash": "d", "title": 't\u00e9st \u2028 \U0001f511 "quoted" \\ \n', "scopes": ["a", "b"]},
    {"n": 1, "f": 1.5, "big": 10**30, "neg": -0.0, "nan": float("nan"), "inf": float("inf"), "t": True},
    {"nested": [[], {}, [1, [2, [3]]], {"a": {"b": None}}], "tuple": ("x", "y")},
    {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    "a bare string \u00e9",
    [1, "two", 3.0],
    None,
    0.1,
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
def test_the_text_is_json_dumps_text(value: Any, separators: tuple[str, str]) -> None:
    encode = jsontext.encoder(separators=separators)
    assert encode(value) == json.dumps(value, separators=separators)
    assert encode(value) == encode(value)  # reused: the second value is encoded like the first


def test_default_turns_unknown_values_into_text() -> None:
    when = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)
    value = {"at": when, "error": OSError(28, "No space left on device")}
    assert jsontext.encoder(default=str)(value) == json.dumps(value, default=str)


def test_without_default_an_unknown_value_is_the_usual_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsontext.encoder()({"set": {1}})
