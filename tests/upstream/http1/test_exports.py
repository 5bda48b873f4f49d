"""http1's __all__ is honest: it names every public name of the package, and upstream uses no other."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from encord_gateway.upstream import client, http1

UPSTREAM = Path(client.__file__).parent


def test_all_is_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(http1).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name != "annotations"  # `from __future__ import annotations`
    }
    assert sorted(http1.__all__) == sorted(public)
    assert len(set(http1.__all__)) == len(http1.__all__)


def test_every_exported_error_is_an_http_error() -> None:
    exported = [getattr(http1, name) for name in http1.__all__]
    errors = [value for value in exported if inspect.isclass(value) and issubclass(value, Exception)]
    assert errors
    assert all(issubclass(error, http1.HttpError) for error in errors)


def test_the_rest_of_upstream_reaches_the_transport_only_through_all() -> None:
    for module in UPSTREAM.glob("*.py"):
        source = module.read_text()
        assert not re.search(r"upstream\.http1\.\w+ import|from \.http1\.", source), module.name
        assert set(re.findall(r"\bhttp1\.(\w+)", source)) <= set(http1.__all__), module.name
