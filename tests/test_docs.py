"""The manual in docs/ hangs together and stays true: its nav, its links, the messages and the error table."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import grpc
import pytest
from encord_gateway import errors

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p.name for p in DOCS.glob("*.md"))
API = (DOCS / "api.md").read_text()
PROTO = (ROOT / "protos/encord_gateway/v1/api_keys.proto").read_text()
# [text](target): the target up to the first space or closing parenthesis (as in test_readme.py).
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading (as in test_readme.py)."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(markdown: str) -> set[str]:
    """The anchors of a page's headings, outside fenced code."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+?)\s*$", prose, re.MULTILINE)}


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists, in order (read as text: a flat list of `- Title: page.md`)."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r"^  - [^:\n]+: (\S+\.md)\s*$", nav.split("\n\n", 1)[0], re.MULTILINE)


def test_the_nav_lists_every_page_once() -> None:
    listed = nav_pages()
    assert listed[0] == "index.md"
    assert sorted(listed) == PAGES
    assert len(listed) == len(set(listed))


def test_mkdocs_is_strict() -> None:
    assert re.search(r"^strict: true$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)


def _links() -> list[tuple[str, str]]:
    return [(page, target) for page in PAGES for target in LINK.findall((DOCS / page).read_text())]


@pytest.mark.parametrize(("page", "target"), _links(), ids=[f"{p}->{t}" for p, t in _links()])
def test_every_link_of_the_manual_resolves(page: str, target: str) -> None:
    if re.match(r"[a-z]+:", target):
        assert target.startswith("https://"), target
        return
    path, _, anchor = target.partition("#")
    # mkdocs builds docs/ alone: a link out of it would break the site, so paths elsewhere in
    # the repository are written as text, not as links.
    assert "/" not in path, f"{page} links out of docs/: {target}"
    text = (DOCS / path).read_text() if path else (DOCS / page).read_text()
    if path:
        assert (DOCS / path).is_file(), f"{page} links to {path}, which does not exist"
    if anchor:
        assert anchor in anchors(text), f"{path or page} has no heading for #{anchor}"


def test_the_results_file_the_performance_page_names_exists() -> None:
    assert "`bench/results/latest.md`" in (DOCS / "performance.md").read_text()
    assert (ROOT / "bench/results/latest.md").is_file()


def proto_messages() -> dict[str, list[str]]:
    """Each message of the proto and its field names, in order."""
    out: dict[str, list[str]] = {}
    for name, body in re.findall(r"^message (\w+) \{(.*?)^\}", PROTO, re.MULTILINE | re.DOTALL):
        out[name] = re.findall(r"^\s+(?:repeated )?[\w.]+ (\w+) = \d+;", body, re.MULTILINE)
    return out


@pytest.mark.parametrize("message", sorted(proto_messages()))
def test_the_messages_in_the_api_page_have_the_proto_fields(message: str) -> None:
    fields = proto_messages()[message]
    documented = re.search(rf"\b{message}\s+\{{ ([^}}]*) \}}", API)
    assert documented, f"docs/api.md does not show {message}"
    names = [part.split()[-1] for part in documented.group(1).split(", ")]
    assert names == fields, message


def _error_classes(cls: type[errors.GatewayError]) -> list[type[errors.GatewayError]]:
    return [c for sub in cls.__subclasses__() for c in [sub, *_error_classes(sub)]]


def _error_rows() -> list[list[str]]:
    """The rows of docs/api.md's error table: cause, gRPC code, reason."""
    table = API.split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| cause")
    ]
    assert rows, "docs/api.md has no error table"
    return rows


@pytest.mark.parametrize("cls", _error_classes(errors.GatewayError), ids=lambda c: c.__name__)
def test_every_error_class_has_its_code_in_the_error_table(cls: type[errors.GatewayError]) -> None:
    if cls.grpc_code is grpc.StatusCode.INTERNAL:
        assert "INTERNAL (reason `INTERNAL`) means a bug" in API
        return
    codes = {row[1].split()[0] for row in _error_rows()}
    assert cls.grpc_code.name in codes, (cls.__name__, cls.grpc_code.name)


def _leaf_reasons() -> list[str]:
    """The reasons of the classes the gateway raises: the leaves of the tree (a base's is a fallback)."""
    return sorted(reason for reason, cls in errors.known_reasons().items() if not cls.__subclasses__())


@pytest.mark.parametrize("reason", _leaf_reasons())
def test_every_reason_a_caller_can_see_is_documented(reason: str) -> None:
    manual = API + (DOCS / "security.md").read_text()
    assert f"`{reason}`" in manual, f"{reason} is in neither docs/api.md nor docs/security.md"


@pytest.mark.parametrize("code", sorted(errors.ENCORD_CODES))
def test_every_encord_code_is_in_the_error_table_with_the_status_it_becomes(code: str) -> None:
    rows = [row for row in _error_rows() if f"`{code}`" in row[0]]
    assert len(rows) == 1, f"docs/api.md's error table names {code} in {len(rows)} rows"
    assert rows[0][1].split()[0] == errors.ENCORD_CODES[code].grpc_code.name, code


def test_an_unknown_encord_code_is_documented_as_unknown() -> None:
    (row,) = [row for row in _error_rows() if row[0].startswith("any other Encord code")]
    assert row[1] == errors.encord_error("SOMETHING_NEW").grpc_code.name == "UNKNOWN"
