"""Which console role a token acts as. Explicit `console_role` wins; a token configured with
plain `scopes` gets the strongest role its scopes allow (the mapping is in the config)."""

from __future__ import annotations

from selfheal.dispatcher.config import Token


def console_role_of(token: Token | None) -> str | None:
    """The role (viewer, operator, approver, admin), or None for a token that cannot read."""
    if token is None:
        return "viewer"  # an open API (no tokens configured): reading only, no identity
    if token.console_role:
        return token.console_role
    if "read" not in token.scopes:
        return None
    # the strongest scope decides (older configs list `[read, approve]` for approvers)
    for role, scope in (("admin", "admin"), ("approver", "approve"), ("operator", "operate")):
        if scope in token.scopes:
            return role
    return "viewer"
