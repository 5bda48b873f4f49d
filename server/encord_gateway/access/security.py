"""Who may call and what they may do, as one swappable bundle: policy, TLS, audit trail, rate buckets.

A reload (SIGHUP) compares the new [[callers]] with the policy in force, caller by caller (by name):

- a caller that had a rate_limit and has none in the new file: the reload is REFUSED, the policy in
  force stays, and the refusal is logged at ERROR. A file cut short before `[callers.rate_limit]` reads
  as valid TOML with the limit gone; to lift a limit on purpose, restart the gateway.
- every other loosening is accepted and logged at WARNING, one line per caller naming it and what
  loosened (never a token digest): a caller added; a rate limit raised (per_second or burst); methods,
  projects, datasets, project_scopes or dataset_scopes widened; reveal_keys turned on; max_in_flight
  raised; tokens or certificate identities added; a token's require_mtls turned off.
- tightening (a caller removed, a right narrowed, a limit lowered or added) is accepted silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from encord_gateway.access.audit import AuditTrail
from encord_gateway.access.exposure import exposure
from encord_gateway.access.policy import CallerRule, Grant, Policy, PolicyHolder
from encord_gateway.access.ratelimit import Rate, RateLimits
from encord_gateway.access.tls import ServerTls, server_tls
from encord_gateway.config import ConfigError, Settings
from encord_gateway.logs import FIELDS

log = logging.getLogger(__name__)


@dataclass
class Security:
    """Who may call and what they may do: the swappable policy, TLS, the audit trail and the rate buckets."""

    holder: PolicyHolder
    audit: AuditTrail | None = None
    tls: ServerTls | None = None
    limits: RateLimits = field(default_factory=RateLimits)

    @classmethod
    def from_settings(cls, settings: Settings, policy: Policy) -> Security:
        """The policy parsed with the settings; ConfigError for unusable TLS files or audit log."""
        holder = PolicyHolder(policy)
        tls = server_tls(settings)
        try:
            audit = AuditTrail(settings.audit_log)
        except OSError as exc:
            raise ConfigError(f"audit_log {settings.audit_log} cannot be opened: {exc.strerror}") from None
        return cls(holder, audit, tls)

    def reload(self, policy: Policy, running: Settings) -> None:
        """Swaps in the new policy (and re-read TLS files); ConfigError leaves everything as it was."""
        if policy.open and not self.holder.current.open:
            # An emptied or truncated file must not turn deny-by-default into open.
            raise ConfigError(
                "the new config has no [[callers]], which would open the gateway; restart to run open"
            )
        limited = _rates(self.holder.current)
        lifted = sorted(c.name for c in policy.callers if c.rate is None and limited.get(c.name))
        if lifted:
            raise ConfigError(
                f"the new config drops the rate_limit of {', '.join(repr(n) for n in lifted)} "
                "(a file cut short reads so too); restart to lift a rate limit"
            )
        problem = exposure(running, policy)
        if problem and not running.insecure:
            raise ConfigError(f"{problem}; the reload would open the gateway")
        if self.tls is not None:
            self.tls.reload(running)
        loosened = loosenings(self.holder.current, policy)
        self.holder.current = policy
        for name, what in loosened:
            log.warning(
                f"config reload loosens caller {name!r}: {'; '.join(what)}",
                extra={FIELDS: {"caller": name, "loosened": what}},
            )
        self.limits.forget_except({c.name for c in policy.callers})
        if self.audit is not None:
            try:
                self.audit.reopen()
            except OSError as exc:
                log.error(
                    "audit log not reopened; writing on to the old one",
                    extra={FIELDS: {"error": exc.strerror}},
                )


def _rates(policy: Policy) -> dict[str, Rate | None]:
    return {c.name: c.rate for c in policy.callers}


def _grant_widened(old: Grant, new: Grant, what: str) -> list[str]:
    if new.everything and not old.everything:
        return [f"{what} now every one"]
    added = len(new.hashes - old.hashes)
    return [f"{what} +{added}"] if added and not old.everything else []


def _caller_loosenings(old: CallerRule, new: CallerRule) -> list[str]:
    what: list[str] = []
    if old.rate is not None and new.rate is None:
        what.append("rate_limit removed")
    elif (
        old.rate is not None
        and new.rate is not None
        and (new.rate.per_second > old.rate.per_second or new.rate.burst > old.rate.burst)
    ):
        what.append(
            f"rate_limit raised from {old.rate.per_second:g}/s burst {old.rate.burst} "
            f"to {new.rate.per_second:g}/s burst {new.rate.burst}"
        )
    for name, before, after in (
        ("methods", old.methods, new.methods),
        ("project_scopes", old.project_scopes, new.project_scopes),
        ("dataset_scopes", old.dataset_scopes, new.dataset_scopes),
    ):
        if after - before:
            what.append(f"{name} +{','.join(sorted(after - before))}")
    what += _grant_widened(old.projects, new.projects, "projects")
    what += _grant_widened(old.datasets, new.datasets, "datasets")
    if new.reveal_keys and not old.reveal_keys:
        what.append("reveal_keys on")
    if new.max_in_flight > old.max_in_flight:
        what.append(f"max_in_flight raised from {old.max_in_flight} to {new.max_in_flight}")
    # Counts only: the digests are the caller's credentials' fingerprints.
    old_tokens = {t.digest: t for t in old.tokens}
    added_tokens = sum(t.digest not in old_tokens for t in new.tokens)
    if added_tokens:
        what.append(f"tokens +{added_tokens}")
    unpinned = sum(
        t.digest in old_tokens and old_tokens[t.digest].require_mtls and not t.require_mtls
        for t in new.tokens
    )
    if unpinned:
        what.append(f"require_mtls off for {unpinned} token(s)")
    if new.certificates - old.certificates:
        what.append(f"certificates +{len(new.certificates - old.certificates)}")
    return what


def loosenings(old: Policy, new: Policy) -> list[tuple[str, list[str]]]:
    """(caller name, what loosened) for each caller the new policy lets do more than the old one did."""
    if old.open:
        return []  # nothing is looser than an open gateway
    before = {c.name: c for c in old.callers}
    found: list[tuple[str, list[str]]] = []
    for caller in new.callers:
        previous = before.get(caller.name)
        what = ["caller added"] if previous is None else _caller_loosenings(previous, caller)
        if what:
            found.append((caller.name, what))
    return found
