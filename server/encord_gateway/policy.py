"""Who may ask for what: the gatekeeper every RPC passes through after validation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from encord_gateway.calls import CallRecord


@dataclass(frozen=True)
class KeyIntent:
    """What a call wants to touch or mint, in Encord's terms."""

    kind: str  # "project" or "dataset"
    resource_hash: str
    title: str = ""
    scopes: tuple[str, ...] = ()

    @classmethod
    def project(cls, resource_hash: str, title: str = "", scopes: tuple[str, ...] = ()) -> KeyIntent:
        return cls("project", resource_hash, title, scopes)

    @classmethod
    def dataset(cls, resource_hash: str, title: str = "", scopes: tuple[str, ...] = ()) -> KeyIntent:
        return cls("dataset", resource_hash, title, scopes)


@dataclass(frozen=True)
class Access:
    """What an allowed read may see."""

    reveal_keys: bool = True


@dataclass
class Minting:
    """Filled in by the servicer once Encord has minted (or found) a key."""

    api_key: str = ""
    scopes: tuple[str, ...] = ()
    created: bool = True
    done: bool = field(default=False)

    def key(self, api_key: str, scopes: tuple[str, ...], *, created: bool = True) -> None:
        self.api_key, self.scopes, self.created, self.done = api_key, scopes, created, True


class Gatekeeper:
    """The open gatekeeper: every request is allowed and every key revealed (loopback, no callers)."""

    def read(self, record: CallRecord, intent: KeyIntent) -> Access:
        return Access()

    @contextlib.contextmanager
    def mint(self, record: CallRecord, intent: KeyIntent) -> Iterator[Minting]:
        yield Minting()
