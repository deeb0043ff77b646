"""Is a GitOps environment frozen? The policy engine's freeze windows decide, as they do for
every remediation: a GitOps sync is a change of risk `medium` (GITOPS_RISK) to one
environment, scoped by the same `Window.applies` and opened by the same `Window.is_open`.

Frozen means: an applicable deny window is open, or applicable allow windows exist and none
of them is open (the engine's and Argo CD's shared meaning of allow windows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from selfheal.policy.model import Policy
from selfheal.policy.windows import Window

GITOPS_RISK = "medium"


def applicable(policy: Policy, environment: str, risk: str = GITOPS_RISK) -> list[Window]:
    """The policy's windows that scope a GitOps change of `risk` to `environment`."""
    return [w for w in policy.windows if w.applies(None, risk, None, environment)]


@dataclass(frozen=True)
class FreezeState:
    environment: str
    frozen: bool
    at: datetime
    deny_open: tuple[str, ...] = ()
    allow_windows: tuple[str, ...] = ()
    allow_open: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "environment": self.environment,
            "frozen": self.frozen,
            "at": self.at.isoformat(),
            "deny_open": list(self.deny_open),
            "allow_windows": list(self.allow_windows),
            "allow_open": list(self.allow_open),
            "reasons": list(self.reasons),
        }


def freeze_state(
    policy: Policy, environment: str, when: datetime, risk: str = GITOPS_RISK
) -> FreezeState:
    """Whether GitOps changes to `environment` are frozen at `when`, and why."""
    windows = applicable(policy, environment, risk)
    deny_open = tuple(w.name for w in windows if w.kind == "deny" and w.is_open(when))
    allows = tuple(w.name for w in windows if w.kind == "allow")
    allow_open = tuple(w.name for w in windows if w.kind == "allow" and w.is_open(when))
    reasons = [f"deny window {name!r} is open" for name in deny_open]
    if allows and not allow_open:
        reasons.append(f"outside every allow window ({', '.join(allows)})")
    return FreezeState(
        environment=environment,
        frozen=bool(reasons),
        at=when,
        deny_open=deny_open,
        allow_windows=allows,
        allow_open=allow_open,
        reasons=tuple(reasons),
    )
