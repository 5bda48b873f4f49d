"""The gatekeeper every RPC passes after validation: the caller's rule, rate limit and audit commit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from encord_gateway_client.v1 import api_keys_pb2 as pb

from encord_gateway import errors
from encord_gateway.access.audit import AuditTrail
from encord_gateway.access.policy import ANONYMOUS, PRINCIPAL, CallerRule, PolicyHolder, Principal
from encord_gateway.access.ratelimit import RateLimits
from encord_gateway.context import AuditFacts, CallRecord
from encord_gateway.redaction import fingerprint

log = logging.getLogger(__name__)

METHODS = tuple(pb.DESCRIPTOR.services_by_name["ApiKeyService"].methods_by_name)
WILDCARD = "*"


# The request --------------------------------------------------------------------------------------


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

    api_key: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ()
    created: bool = True
    replayed: bool = False
    done: bool = field(default=False)

    def key(
        self, api_key: str, scopes: tuple[str, ...], *, created: bool = True, replayed: bool = False
    ) -> None:
        self.api_key, self.scopes, self.created, self.done = api_key, scopes, created, True
        self.replayed = replayed


# The gatekeeper -------------------------------------------------------------------------------------


def _reveals(principal: Principal) -> bool:
    """Whether the caller may be handed keys it did not just mint (the open policy: yes)."""
    return principal.rule is None or principal.rule.reveal_keys


class Gatekeeper:
    """Admits or refuses each call by the caller's rule, and audits what was minted before it is returned.

    Without a holder it is the open gatekeeper: every request allowed and every key revealed.
    """

    def __init__(
        self,
        holder: PolicyHolder | None = None,
        audit: AuditTrail | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        self._holder = holder
        self._audit = audit
        self._limits = limits or RateLimits()

    def read(self, record: CallRecord, intent: KeyIntent) -> Access:
        principal, _ = self._admit(record, intent, minting=False)
        return Access(reveal_keys=_reveals(principal))

    def revealed(self, record: CallRecord, fingerprints: Sequence[str]) -> None:
        """A list is about to hand out the keys of these fingerprints: recorded and committed, as a mint is.

        Fingerprints, not the keys: the servicer has them already (resources.ApiKey.fingerprint).
        Fail closed: AuditUnavailable if the record cannot be written, and the list is not answered.
        """
        facts = record.audit
        if not fingerprints or facts is None:
            return
        facts.key_returned, facts.fingerprints = True, tuple(fingerprints)
        if self._audit is not None:
            self._audit.commit(record, facts)

    @contextlib.contextmanager
    def mint(self, record: CallRecord, intent: KeyIntent, *, validate_only: bool) -> Iterator[Minting]:
        """Admits the mint; the body fills in the Minting (unless `validate_only`), then it is audited."""
        principal, facts = self._admit(record, intent, minting=True)
        minting = Minting()
        yield minting
        if minting.done == validate_only:
            # A bug in the servicer, and a loud one: a key minted on a dry run, or a mint without a key.
            raise RuntimeError(f"{record.method}: validate_only={validate_only}, minted={minting.done}")
        if validate_only:
            # Marked once the dry run went through: a refused or failed one is recorded by its outcome.
            facts.validate_only = True
            return
        if not minting.created and not minting.replayed and not _reveals(principal):
            # Get-or-create found a key someone else made: handing it out is a reveal.
            raise errors.ExistingKeyNotRevealed(
                f"{intent.kind} {intent.resource_hash} already has a master key, and caller "
                f"{principal.name!r} may not see existing keys (reveal_keys is off)",
                caller=principal.name,
            )
        facts.key_returned, facts.created, facts.replayed = True, minting.created, minting.replayed
        facts.scopes_granted, facts.fingerprint = minting.scopes, fingerprint(minting.api_key)
        if self._audit is not None:
            # Fail closed: no audit line, no key. Raised here, the key never reaches the response.
            self._audit.commit(record, facts)

    def _admit(self, record: CallRecord, intent: KeyIntent, *, minting: bool) -> tuple[Principal, AuditFacts]:
        principal = PRINCIPAL.get()
        if principal is None:
            if self._holder is not None and not self._holder.current.open:
                # Callers are configured but no interceptor vouched for this one: refuse, never open up.
                raise errors.NoCredentials("no caller identity")
            principal = ANONYMOUS
        record.caller = principal.name
        facts = AuditFacts(
            caller=principal.name,
            auth=principal.auth,
            identity=principal.identity,
            kind=intent.kind,
            title=intent.title,
            scopes_asked=intent.scopes if minting else (),
        )
        record.audit = facts
        if principal.rule is not None:
            self._check(principal.rule, record.method, intent, minting=minting)
        return principal, facts

    def _check(self, rule: CallerRule, method: str, intent: KeyIntent, *, minting: bool) -> None:
        # The bucket comes first: refused calls cost a token too, so hammering denials is throttled.
        wait = self._limits.take(rule.name, rule.rate)
        if wait > 0:
            raise errors.RateLimited(
                f"caller {rule.name!r} is over its rate limit; retry in {wait:.2f}s", retry_after_s=wait
            )
        if method not in rule.methods:
            raise errors.MethodNotAllowed(
                f"caller {rule.name!r} may not call {method}", caller=rule.name, method=method
            )
        if not rule.resources(intent.kind).permits(intent.resource_hash):
            raise errors.ResourceNotAllowed(
                f"caller {rule.name!r} may not touch {intent.kind} {intent.resource_hash}",
                caller=rule.name, resource_hash=intent.resource_hash,
            )  # fmt: skip
        if minting:
            over = [s for s in intent.scopes if s not in rule.ceiling(intent.kind)]
            if over:
                # GetOrCreate always asks for the master key, which carries every scope.
                why = "a master key has every scope, and " if method.startswith("GetOrCreate") else ""
                raise errors.ScopeAboveCeiling(
                    f"{why}caller {rule.name!r} may not put {', '.join(over)} on a {intent.kind} key "
                    f"(its ceiling: {', '.join(sorted(rule.ceiling(intent.kind))) or 'none'})",
                    caller=rule.name, scopes_over_ceiling=",".join(over),
                )  # fmt: skip
