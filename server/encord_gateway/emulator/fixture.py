"""Loads and checks the emulator's TOML fixture: users with SSH public keys, projects, datasets, faults."""

from __future__ import annotations

import importlib.resources
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from encord_gateway.emulator.verify import parse_openssh_public_key

ResourceType = Literal["project", "dataset"]
DEMO_FIXTURE_NAME = "demo_fixture.toml"
# The keys each table may carry; anything else is a typo the user wants to hear about.
USER_KEYS = frozenset({"email", "public_key"})
RESOURCE_KEYS = {
    "project": frozenset({"project_hash", "title", "description", "admins", "members"}),
    "dataset": frozenset({"dataset_hash", "title", "description", "admins", "members"}),
}
TOP_LEVEL_KEYS = frozenset({"users", "projects", "datasets", "faults"})


class FixtureError(ValueError):
    """The fixture cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class User:
    email: str
    public_key: bytes  # the raw 32-byte Ed25519 key, as the v1 Authorization header carries it


@dataclass(frozen=True)
class Resource:
    resource_type: ResourceType
    resource_hash: str
    title: str
    description: str = ""
    admins: tuple[str, ...] = ()
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fixture:
    users: tuple[User, ...] = ()
    resources: tuple[Resource, ...] = ()
    # The raw [faults] table; faults.FaultSettings validates it, so it stays one parser.
    faults: Mapping[str, Any] = field(default_factory=dict)


def demo_fixture_text() -> str:
    """The bundled demo fixture, used when no --fixture is given."""
    return importlib.resources.files(__package__).joinpath(DEMO_FIXTURE_NAME).read_text(encoding="utf-8")


def load_fixture(path: Path | None) -> Fixture:
    """Reads `path` (or the bundled demo fixture) and checks it."""
    if path is None:
        return parse_fixture(demo_fixture_text(), DEMO_FIXTURE_NAME)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError(f"{path}: cannot read the fixture: {exc.strerror}") from exc
    return parse_fixture(text, str(path))


def parse_fixture(text: str, source: str = "<fixture>") -> Fixture:
    """Parses fixture TOML text; FixtureError names what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FixtureError(f"{source}: not valid TOML: {exc}") from exc
    except RecursionError:
        # tomllib recurses per nested array or inline table; a fixture has no need for depth.
        raise FixtureError(f"{source}: arrays or tables nested too deeply to parse") from None
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise FixtureError(f"{source}: unknown top-level keys {sorted(unknown)}")
    users = tuple(
        _user(entry, f"{source}: users[{n}]") for n, entry in enumerate(_tables(data, "users", source))
    )
    emails = [u.email for u in users]
    duplicates = sorted({e for e in emails if emails.count(e) > 1})
    if duplicates:
        raise FixtureError(f"{source}: users listed twice: {duplicates}")
    resources: list[Resource] = []
    kinds: tuple[tuple[ResourceType, str], ...] = (("project", "projects"), ("dataset", "datasets"))
    for kind, table in kinds:
        for n, entry in enumerate(_tables(data, table, source)):
            resources.append(_resource(kind, entry, f"{source}: {table}[{n}]", set(emails)))
    hashes = [r.resource_hash for r in resources]
    duplicates = sorted({h for h in hashes if hashes.count(h) > 1})
    if duplicates:
        raise FixtureError(f"{source}: resource hashes listed twice: {duplicates}")
    faults = data.get("faults", {})
    if not isinstance(faults, dict):
        raise FixtureError(f"{source}: [faults] must be a table")
    return Fixture(users, tuple(resources), faults)


def _tables(data: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise FixtureError(f"{source}: `{key}` must be an array of tables ([[{key}]])")
    return value


def _string(entry: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = entry.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise FixtureError(f"{where}: `{key}` must be a non-empty string")
    return value


def _user(entry: Mapping[str, Any], where: str) -> User:
    _check_keys(entry, USER_KEYS, where)
    email = _string(entry, "email", where)
    try:
        public_key = parse_openssh_public_key(_string(entry, "public_key", where))
    except ValueError as exc:
        raise FixtureError(f"{where}: `public_key`: {exc}") from exc
    return User(email, public_key)


def _resource(kind: ResourceType, entry: Mapping[str, Any], where: str, emails: set[str]) -> Resource:
    _check_keys(entry, RESOURCE_KEYS[kind], where)
    resource_hash = _string(entry, f"{kind}_hash", where)
    title = _string(entry, "title", where)
    description = _string(entry, "description", where, required=False)
    roles: dict[str, tuple[str, ...]] = {}
    for role in ("admins", "members"):
        value = entry.get(role, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FixtureError(f"{where}: `{role}` must be a list of user emails")
        unknown = sorted(set(value) - emails)
        if unknown:
            raise FixtureError(f"{where}: `{role}` names users not in [[users]]: {unknown}")
        roles[role] = tuple(dict.fromkeys(value))
    # An admin listed as a member too is an admin: the stronger role wins.
    members = tuple(m for m in roles["members"] if m not in roles["admins"])
    return Resource(kind, resource_hash, title, description, roles["admins"], members)


def _check_keys(entry: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise FixtureError(f"{where}: unknown keys {sorted(unknown)}")
