"""Who may call and what they may do: authentication, policy, the gatekeeper, rate limits, audit, TLS."""
