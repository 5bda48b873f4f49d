"""The README and the manual stay true: every setting, make target, error code and example, and the links."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from encord_gateway.config import OPTIONS, Option

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
CONFIGURATION = (DOCS / "configuration.md").read_text()
API = (DOCS / "api.md").read_text()
MANUAL = {path.name: path.read_text() for path in sorted(DOCS.glob("*.md"))}

README_MAX_LINES = 200
# [text](target): the target up to the first space or closing parenthesis.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading; GitHub gives these headings the same."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(markdown: str) -> set[str]:
    """The anchors of a page's headings, outside fenced code."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+?)\s*$", prose, re.MULTILINE)}


def settings_row(option: Option) -> str:
    """The row of the settings table that documents one option, with its default as the code has it."""
    if option.default is None:
        default = "—"
    elif option.default is False:
        default = "off"
    else:
        default = f"`{option.default}`"
    return f"| `{option.flag}` | `{option.env}` | {default} |"


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_every_setting_is_documented(option: Option) -> None:
    flag, env = option.flag, option.env
    assert f"`{flag}`" in CONFIGURATION
    assert f"`{env}`" in CONFIGURATION
    row = settings_row(option)
    assert row in CONFIGURATION, f"no settings row {row!r} in docs/configuration.md"


def test_the_settings_table_has_no_setting_the_code_lacks() -> None:
    documented = set(re.findall(r"^\| `(--[a-z-]+)` \|", CONFIGURATION, re.MULTILINE))
    assert documented == {o.flag for o in OPTIONS}


def test_every_make_command_in_the_readme_and_the_manual_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    in_readme = set(re.findall(r"`make ([a-z-]+)", README))
    assert {"run", "test"} <= in_readme
    for name, text in {"README.md": README, **MANUAL}.items():
        in_prose = set(re.findall(r"`make ([a-z-]+)", text))
        in_code = set(re.findall(r"^\s*make ([a-z-]+)", text, re.MULTILINE))
        mentioned = in_prose | in_code
        assert mentioned <= targets, (name, mentioned - targets)


def python_block(text: str) -> list[str]:
    block = text.split("**Python**", 1)[1] if "**Python**" in text else text.split("### Python", 1)[1]
    return block.split("```python", 1)[1].split("```", 1)[0].strip().splitlines()


@pytest.mark.parametrize("name", ["README.md", "api.md"])
def test_python_example_is_taken_from_the_example_the_tests_run(name: str) -> None:
    example = (ROOT / "client_stubs/python/example.py").read_text()
    lines = python_block(README if name == "README.md" else API)
    assert lines
    for line in lines:
        assert line in example


def test_every_grpc_code_of_the_error_table_is_documented() -> None:
    for code in (
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "FAILED_PRECONDITION",
        "ALREADY_EXISTS",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "UNKNOWN",
    ):
        assert f"| {code}" in API


def test_the_readme_is_a_landing_page() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the manual belongs in docs/"


def test_the_readme_links_into_the_manual() -> None:
    into_docs = [t for t in LINK.findall(README) if t.startswith("docs/")]
    linked = {t.split("#", 1)[0] for t in into_docs}
    assert {"docs/index.md", "docs/api.md", "docs/security.md"} <= linked
    assert {f"docs/{name}" for name in MANUAL} <= linked, "every page of the manual is linked from the README"


@pytest.mark.parametrize("target", sorted(set(LINK.findall(README))))
def test_every_link_of_the_readme_resolves(target: str) -> None:
    if re.match(r"[a-z]+:", target):
        assert target.startswith("https://"), target
        return
    path, _, anchor = target.partition("#")
    assert path, "a bare #anchor: the README's sections are not what it links to"
    assert (ROOT / path).is_file(), f"README.md links to {path}, which does not exist"
    if anchor:
        assert anchor in anchors((ROOT / path).read_text()), f"{path} has no heading for #{anchor}"
