"""JSON from outside, parsed within bounds: nesting, the number of values, and text that is valid Unicode.

Python's json builds an object for every value: `[[],[],...]` costs some 25 bytes of memory per byte of
text, so the values are counted, from above and without a copy, before anything is parsed. It recurses
once per level of nesting and past about a thousand raises RecursionError (not ValueError); nesting is
bounded after the parse, which the count keeps small.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Every value but the first follows one of these (an object member's after its name and colon), so
# their number, strings included, bounds the values from above.
_BEFORE_A_VALUE = (b"[", b"{", b",", b":")
# A \uD800-\uDFFF escape: json.loads turns an unpaired one into a lone surrogate, which no UTF-8
# encoder (protobuf, the log, the audit trail, hashlib via str.encode) accepts.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class Unreadable(ValueError):
    """The text is not JSON within the bounds; the message says which, as a phrase after "is"."""


def loads(data: bytes | str, *, max_depth: int, max_values: int) -> Any:
    """The value of `data`, refused (Unreadable) past `max_depth` levels or `max_values` values.

    `max_values` counts `[`, `{`, `,` and `:` wherever they are, inside strings too: leave room for
    them. Bytes are UTF-8, -16 or -32, detected as json.loads detects them, and must decode strictly:
    bytes that encode a surrogate (ED A0 80), which json.loads would let through, are refused, and so
    is any string that holds a lone surrogate once its escapes are undone.
    """
    try:
        raw = data.encode() if isinstance(data, str) else data
    except UnicodeError:
        raise Unreadable("text that is not valid Unicode") from None
    if sum(raw.count(mark) for mark in _BEFORE_A_VALUE) + 1 > max_values:
        raise Unreadable(f"JSON of more than {max_values} values")
    try:
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data))
        value = json.loads(text)
    except UnicodeError:
        raise Unreadable("text that is not valid Unicode") from None
    except RecursionError:
        raise Unreadable(f"JSON nested more than {max_depth} deep") from None
    except ValueError:
        raise Unreadable("not JSON") from None
    _check(value, max_depth, strings=_SURROGATE_ESCAPE.search(text) is not None)
    return value


def _check(value: Any, max_depth: int, *, strings: bool) -> None:
    """Nesting within `max_depth`; with `strings`, also every string (member names too) valid Unicode.

    Level by level, with `type() is` tests: a list of 2,000 keys takes about half as long as its parse.
    """
    if strings and type(value) is str:
        _valid(value)
    level = [value] if type(value) in (list, dict) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise Unreadable(f"JSON nested more than {max_depth} deep")
        below = []
        for container in level:
            is_object = type(container) is dict
            for item in container.values() if is_object else container:
                kind = type(item)
                if kind is dict or kind is list:
                    below.append(item)
                elif strings and kind is str:
                    _valid(item)
            if strings and is_object:
                for name in container:
                    _valid(name)
        level = below


def _valid(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise Unreadable("JSON holding a string that is not valid Unicode (a lone surrogate)") from None
