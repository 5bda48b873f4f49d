"""JSON text for what is written on every call, by encoders built once (json.dumps builds one per call)."""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _json
from typing import Any

Encode = Callable[[Any], str]


def encoder(
    *, separators: tuple[str, str] = (", ", ": "), default: Callable[[Any], Any] | None = None
) -> Encode:
    """`json.dumps(value, separators=separators, default=default)` (ASCII only), as one reusable function.

    json.dumps, and a JSONEncoder's encode(), make a new C encoder for every value; this makes it
    once. Without the circular-reference check: the values encoded here (call log fields, audit
    lines, request bodies) are flat or nearly, and built by the gateway itself.
    """
    make = getattr(_json, "c_make_encoder", None)
    if make is None:  # an interpreter without json's C accelerator
        options = json.JSONEncoder(
            ensure_ascii=True, check_circular=False, separators=separators, default=default
        )
        return options.encode
    item_separator, key_separator = separators
    # The same arguments JSONEncoder.iterencode passes; its default() raises the usual TypeError.
    iterencode = make(
        None,
        default or json.JSONEncoder().default,
        _json.encode_basestring_ascii,
        None,
        key_separator,
        item_separator,
        False,
        False,
        True,
    )

    def encode(value: Any) -> str:
        return "".join(iterencode(value, 0))

    return encode
