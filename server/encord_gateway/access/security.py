"""Who may call and what they may do, as one swappable bundle: policy, TLS, audit trail, rate buckets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from encord_gateway.access.audit import AuditTrail
from encord_gateway.access.exposure import exposure
from encord_gateway.access.policy import Policy, PolicyHolder
from encord_gateway.access.policy_toml import load_policy
from encord_gateway.access.ratelimit import RateLimits
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
    def from_settings(cls, settings: Settings) -> Security:
        """Raises ConfigError for a bad policy, unusable TLS files or an audit log that cannot be opened."""
        holder = PolicyHolder(load_policy(settings.document))
        tls = server_tls(settings)
        try:
            audit = AuditTrail(settings.audit_log)
        except OSError as exc:
            raise ConfigError(f"audit_log {settings.audit_log} cannot be opened: {exc.strerror}") from None
        return cls(holder, audit, tls)

    def reload(self, new: Settings, running: Settings) -> Policy:
        """Swaps in the policy (and re-read TLS files) of `new`; ConfigError leaves everything as it was."""
        policy = load_policy(new.document)
        if policy.open and not self.holder.current.open:
            # An emptied or truncated file must not turn deny-by-default into open.
            raise ConfigError(
                "the new config has no [[callers]], which would open the gateway; restart to run open"
            )
        problem = exposure(running, policy)
        if problem and not running.insecure:
            raise ConfigError(f"{problem}; the reload would open the gateway")
        if self.tls is not None:
            self.tls.reload(running)
        self.holder.current = policy
        self.limits.forget_except({c.name for c in policy.callers})
        if self.audit is not None:
            try:
                self.audit.reopen()
            except OSError as exc:
                log.error(
                    "audit log not reopened; writing on to the old one",
                    extra={FIELDS: {"error": exc.strerror}},
                )
        return policy
