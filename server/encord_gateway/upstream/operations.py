"""The key operations in Encord's terms, for either resource kind, with the SDK's get-or-create semantics."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from encord_gateway import errors
from encord_gateway.context import CallContext
from encord_gateway.resources import ApiKey, KeyRequest, ResourceKind
from encord_gateway.state import MemoryStore
from encord_gateway.upstream import bounded_json
from encord_gateway.upstream.client import EncordClient, UpstreamCall

log = logging.getLogger(__name__)

# What a key from Encord may be. A list answer of more keys than this is not taken for one (its size
# is bounded too: http1.MAX_BODY_BYTES holds about 2,000 keys of the longest titles the gateway makes).
MAX_KEYS = 2_000
MAX_SCOPES_PER_KEY = 64
MAX_API_KEY_LENGTH = 256
# Titles made elsewhere (Encord's own app) may be longer than the gateway's 255.
MAX_TITLE_LENGTH = 1_024
MAX_HASH_LENGTH = 128
# A key goes into an Authorization header: printable ASCII, no spaces, no line breaks.
_API_KEY = re.compile(r"[!-~]+")
# The one warning per answer about unknown scopes names at most this many, each cut to this length.
MAX_UNKNOWN_SCOPES_LOGGED = 10
MAX_LOGGED_NAME_LENGTH = 64


# Takes a named lock for at most `wait_s`, held for a lease of `lease_s` (renewed while held).
Locks = Callable[[str, float, float], contextlib.AbstractContextManager[None]]
# A get-or-create holds the lock while it lists and mints: longer than any call may run.
LOCK_LEASE_S = 30.0


class KeyOperations:
    """Turns each operation into Encord calls (encord/user_client.py) and parses what comes back."""

    def __init__(self, client: EncordClient, locks: Locks | None = None) -> None:
        self._client = client
        # Two simultaneous get-or-creates for one resource would both miss the master key and both
        # mint one. The state store's lock makes it one: in this process (memory://), on this host
        # (sqlite://) or across the fleet.
        self._locks: Locks = locks or MemoryStore().lock

    def _call(
        self, context: CallContext, query_type: str, method: str, uid: Any, payload: Any, *, retryable: bool
    ) -> Any:
        call = UpstreamCall(query_type, method, uid, payload, context.deadline, context.trace_id, retryable)
        context.upstream.append(call.outcome)
        return self._client.call(call)

    def create_key(self, kind: ResourceKind[Any, Any], request: KeyRequest, context: CallContext) -> ApiKey:
        uid, payload = kind.create_query(request)
        answer = self._call(context, kind.query_type, "POST", uid, payload, retryable=False)
        if not kind.keys_carry_hashes:
            # Encord answers with the key's string alone; the rest is what was asked for.
            api_key = _api_key(answer, f"a created {kind.name} key")
            return ApiKey(api_key, request.title, request.scopes, request.resource_hash)
        unknown = UnknownScopes()
        key = _key(kind, answer, request.resource_hash, unknown, f"a {kind.name} key")
        unknown.log()
        return key

    def list_keys(
        self, kind: ResourceKind[Any, Any], resource_hash: str, context: CallContext
    ) -> list[ApiKey]:
        uid, payload = kind.list_query(resource_hash)
        answer = self._call(context, kind.query_type, "GET", uid, payload, retryable=True)
        unknown = UnknownScopes()
        what = f"a {kind.name} key"  # once per answer, not once per key
        keys = [
            _key(kind, item, resource_hash, unknown, what)
            for item in _list_answer(answer, f"{kind.name} keys")
        ]
        unknown.log()
        return keys

    def get_or_create_key(
        self, kind: ResourceKind[Any, Any], resource_hash: str, context: CallContext
    ) -> tuple[ApiKey, bool]:
        """The SDK's get-or-create: the key with every scope (created False), else a new one (True)."""
        with self._locks(
            f"master:{kind.name}:{resource_hash}", LOCK_LEASE_S, max(0.0, context.deadline.remaining())
        ):
            for key in self.list_keys(kind, resource_hash, context):
                if set(key.scopes) == set(kind.all_scopes):
                    return key, False
            return self.create_key(kind, kind.master(resource_hash), context), True


# Parsing Encord's answers ---------------------------------------------------


def _bad_answer(what: str) -> errors.UpstreamBadResponse:
    # What was expected, never what came: an answer can hold anything, a key included.
    return errors.UpstreamBadResponse(f"Encord's answer is not {what}")


def _list_answer(answer: Any, what: str) -> list[Any]:
    # The SDK turns a null list into ResourceNotFoundError, and so do we.
    if answer is None:
        raise errors.EncordNotFound("RESOURCE_NOT_FOUND_ERROR", f"Encord found no {what}")
    if not isinstance(answer, list):
        raise _bad_answer(f"a list of {what}")
    if len(answer) > MAX_KEYS:
        raise _bad_answer(f"a list of {what}: it has more than {MAX_KEYS}")
    return answer


def _shown(name: str) -> str:
    """A name from Encord as a log may show it: cut short, and escaped unless it is printable ASCII."""
    cut = name[:MAX_LOGGED_NAME_LENGTH]
    return cut if cut.isascii() and cut.isprintable() else ascii(cut)


class UnknownScopes:
    """The scopes of one answer that this gateway does not know: one warning for the answer, bounded."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def log(self) -> None:
        if not self.names:
            return
        shown = sorted(self.names)[:MAX_UNKNOWN_SCOPES_LOGGED]
        more = len(self.names) - len(shown)
        log.warning(
            "ignoring scopes unknown to this gateway: %s%s",
            ", ".join(_shown(name) for name in shown),
            f" and {more} more" if more else "",
        )


def _scopes(value: Any, known: Mapping[str, object], unknown: UnknownScopes) -> tuple[str, ...]:
    """Scopes as a list or, as Encord sometimes sends them, a JSON-encoded list."""
    if isinstance(value, str):
        try:
            value = bounded_json.loads(value, max_depth=1, max_values=MAX_SCOPES_PER_KEY + 1)
        except bounded_json.Unreadable:
            raise _bad_answer("a key with a scope list") from None
    if not isinstance(value, list) or len(value) > MAX_SCOPES_PER_KEY:
        raise _bad_answer(f"a key with a scope list (of at most {MAX_SCOPES_PER_KEY})")
    # One pass per key (a list answer has one per key): keep the known, note the rest.
    kept: dict[str, None] = {}
    for name in value:
        if not isinstance(name, str):
            raise _bad_answer("a key with a scope list")
        if name in known:
            kept[name] = None
        else:
            # A scope newer than this gateway: the key is still listed, without it.
            unknown.names.add(name)
    return tuple(kept)


def _api_key(value: Any, what: str) -> str:
    """A key string as it may be handed to a caller: printable ASCII without spaces, bounded."""
    if not isinstance(value, str) or len(value) > MAX_API_KEY_LENGTH or not _API_KEY.fullmatch(value):
        raise _bad_answer(f"{what} (a key is 1 to {MAX_API_KEY_LENGTH} printable ASCII characters)")
    return value


def _text(value: Any, limit: int, what: str) -> str:
    """A string field of a key, at most `limit` characters (bounded_json made sure it is valid Unicode)."""
    if not isinstance(value, str) or len(value) > limit:
        raise _bad_answer(what)
    return value


def _key(
    kind: ResourceKind[Any, Any], item: Any, resource_hash: str, unknown: UnknownScopes, what: str
) -> ApiKey:
    """A key's JSON object, which must hold `api_key` and `title` strings (`what` names it in errors).

    Run once per listed key: the checks are _api_key's and _text's, inlined where they pass.
    """
    if type(item) is not dict:  # JSON's objects are dicts, never a subclass
        raise _bad_answer(what)
    api_key: Any = item.get("api_key")
    title: Any = item.get("title")
    if type(api_key) is not str or len(api_key) > MAX_API_KEY_LENGTH or not _API_KEY.fullmatch(api_key):
        _api_key(api_key, what)  # raises, with its message
    if type(title) is not str or len(title) > MAX_TITLE_LENGTH:
        raise _bad_answer(what)
    scopes = _scopes(item.get("scopes"), kind.numbers, unknown)
    if not kind.keys_carry_hashes:
        return ApiKey(api_key, title, scopes, resource_hash)
    named = _text(
        item.get("resource_hash") or resource_hash, MAX_HASH_LENGTH, f"{what} with a resource_hash string"
    )
    key_hash = item.get("key_hash")
    own = _text(key_hash, MAX_HASH_LENGTH, f"{what} with a key_hash string") if key_hash is not None else ""
    return ApiKey(api_key, title, scopes, named, own)
