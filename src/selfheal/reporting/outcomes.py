"""How an incident ended, as one outcome class.

`classify(incident, decisions, runs, approvals)` reads only what the store holds (see
docs/reporting.md for the classes). The first rule that matches wins:

1. ``suppressed`` -- folded into a parent incident (correlation), or a "folded" decision.
2. ``auto-resolved`` -- a remediation run succeeded.
3. ``in-progress`` -- a run is queued or running, or an approval is still pending on an
   open incident: no outcome yet.
4. ``auto-failed-escalated`` -- runs started and none succeeded (failed, interrupted, or
   canceled while running).
5. ``approval-denied`` -- an approver said no.
6. ``approval-timed-out`` -- the approval request expired.
7. ``frozen`` -- a freeze window refused the remediation.
8. ``resolved-before-action`` -- the incident resolved before any run started.
9. ``manual-only`` -- everything else: the policy routed it to people (manual, deny, not
   runnable) or nothing was decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from selfheal.store import ApprovalRecord, DecisionRecord, Incident, Run

OUTCOMES = (
    "auto-resolved",
    "auto-failed-escalated",
    "approval-denied",
    "approval-timed-out",
    "frozen",
    "suppressed",
    "manual-only",
    "resolved-before-action",
    "in-progress",
)


def reason_codes(decisions: Iterable[DecisionRecord], effect: str | None = None) -> set[str]:
    """The reason codes of `decisions` (only those of one `effect` when given)."""
    codes = set()
    for decision in decisions:
        for reason in decision.reasons:
            if not isinstance(reason, dict):
                continue
            if effect is None or reason.get("effect") == effect:
                codes.add(str(reason.get("code")))
    return codes


def _started(run: Run) -> bool:
    return run.started_at is not None or run.attempts > 0


def classify(
    incident: Incident,
    decisions: Sequence[DecisionRecord],
    runs: Sequence[Run],
    approvals: Sequence[ApprovalRecord] = (),
) -> str:
    """The outcome class of `incident` (one of `OUTCOMES`); precedence in the module doc."""
    modes = [d.mode for d in decisions if d.is_pipeline_step]
    if incident.parent_id is not None or "folded" in modes:
        return "suppressed"
    if any(r.status == "succeeded" for r in runs):
        return "auto-resolved"
    if any(r.status in ("queued", "running") for r in runs):
        return "in-progress"
    if any(_started(r) for r in runs):
        return "auto-failed-escalated"
    codes = reason_codes(decisions)
    if any(a.verdict == "deny" for a in approvals) or "approval_denied" in codes:
        return "approval-denied"
    if "approval_timeout" in codes:
        return "approval-timed-out"
    if "freeze" in reason_codes(decisions, effect="deny"):
        return "frozen"
    if incident.status == "resolved":
        return "resolved-before-action"
    if modes and modes[-1] == "approval":
        return "in-progress"
    return "manual-only"
