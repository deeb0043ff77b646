"""Approvals: who may approve a decision in `approval` mode, how many must, and until when.

`open_approval` stores the pending request (approvers, quorum, deadline) in the state;
`approve` records one vote -- refusing self-approval (`self_approval`), people who are
neither a listed user nor in a listed group (`not_approver`) and second votes by the same
person (`duplicate_vote`); `approval_status` reports pending/approved, or the declared
timeout outcome once the deadline passes. Records live in the state, so several processes
sharing a `SQLiteState` see the same votes; each vote is one atomic update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from selfheal.policy.engine import Decision, Reason
from selfheal.policy.state import State


@dataclass(frozen=True)
class ApprovalResult:
    request_id: str
    status: str  # pending | approved | denied | manual | withdrawn | unknown
    accepted: bool  # whether this call's vote counted
    votes: tuple[str, ...] = ()
    quorum: int = 1
    reasons: tuple[Reason, ...] = field(default_factory=tuple)
    break_glass: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "status": self.status,
            "accepted": self.accepted,
            "votes": list(self.votes),
            "quorum": self.quorum,
            "break_glass": self.break_glass,
            "reasons": [r.to_dict() for r in self.reasons],
        }


_TIMEOUT_STATUS = {"deny": "denied", "approve": "approved", "manual": "manual"}


def open_approval(state: State, decision: Decision, now: datetime | None = None) -> dict[str, Any]:
    """Store a pending approval for a decision in `approval` mode; returns the record."""
    if decision.mode != "approval" or decision.approvers is None:
        raise ValueError(f"decision {decision.request_id} does not need approval")
    now = (now or decision.at).astimezone(UTC)
    approvers = decision.approvers
    record = {
        "request_id": decision.request_id,
        "requester": decision.requester,
        "runbook": decision.runbook,
        "target": decision.target,
        "users": sorted(approvers.users),
        "groups": sorted(approvers.groups),
        "quorum": approvers.quorum,
        "opened_at": now.isoformat(),
        "expires_at": (now + approvers.timeout).isoformat(),
        "on_timeout": approvers.on_timeout,
        "break_glass": decision.break_glass,
        "break_glass_reason": decision.break_glass_reason,
        "votes": [],
        "status": "pending",
    }
    state.save_approval(decision.request_id, record)
    return record


def _result(record: dict[str, Any], accepted: bool, reasons: list[Reason]) -> ApprovalResult:
    return ApprovalResult(
        request_id=record["request_id"],
        status=record["status"],
        accepted=accepted,
        votes=tuple(v["approver"] for v in record["votes"]),
        quorum=record["quorum"],
        reasons=tuple(reasons),
        break_glass=bool(record.get("break_glass")),
    )


def _expire(record: dict[str, Any], now: datetime) -> bool:
    if record["status"] == "pending" and now >= datetime.fromisoformat(record["expires_at"]):
        record["status"] = _TIMEOUT_STATUS[record["on_timeout"]]
        record["closed_by"] = "timeout"
        return True
    return False


def approve(
    state: State,
    request_id: str,
    approver: str,
    roles: Iterable[str] = (),
    now: datetime | None = None,
) -> ApprovalResult:
    """One approver's vote. `roles` are the approver's groups, from the identity provider."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    roles = set(roles)
    outcome: dict[str, Any] = {}

    def change(record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is None:
            outcome["reasons"] = [Reason("unknown_request", f"no approval {request_id!r}", "deny")]
            return None
        reasons: list[Reason] = []
        accepted = False
        if _expire(record, now):
            reasons.append(
                Reason(
                    "approval_timeout",
                    f"approval timed out at {record['expires_at']}: outcome {record['on_timeout']}",
                    "deny" if record["status"] == "denied" else "info",
                )
            )
        elif record["status"] != "pending":
            reasons.append(Reason("closed", f"approval already {record['status']}", "deny"))
        elif record.get("requester") and approver == record["requester"]:
            reasons.append(
                Reason(
                    "self_approval",
                    f"{approver!r} requested this action and may not approve it",
                    "deny",
                )
            )
        elif approver not in record["users"] and not roles & set(record["groups"]):
            reasons.append(
                Reason(
                    "not_approver",
                    f"{approver!r} is not a listed approver and in none of the approver groups",
                    "deny",
                )
            )
        elif any(v["approver"] == approver for v in record["votes"]):
            reasons.append(Reason("duplicate_vote", f"{approver!r} already approved", "info"))
        else:
            accepted = True
            record["votes"].append(
                {"approver": approver, "roles": sorted(roles), "at": now.isoformat()}
            )
            if len(record["votes"]) >= record["quorum"]:
                record["status"] = "approved"
                record["closed_by"] = "quorum"
                reasons.append(Reason("approved", f"quorum {record['quorum']} reached"))
            else:
                left = record["quorum"] - len(record["votes"])
                reasons.append(Reason("pending", f"{left} more approval(s) needed"))
        outcome["accepted"] = accepted
        outcome["reasons"] = reasons
        return record

    record = state.update_approval(request_id, change)
    if record is None:
        return ApprovalResult(request_id, "unknown", False, reasons=tuple(outcome["reasons"]))
    return _result(record, outcome["accepted"], outcome["reasons"])


def approval_status(state: State, request_id: str, now: datetime | None = None) -> ApprovalResult:
    """Pending, approved, or -- after the deadline -- the declared timeout outcome."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    reasons: list[Reason] = []

    def change(record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is not None and _expire(record, now):
            reasons.append(
                Reason("approval_timeout", f"approval timed out: outcome {record['on_timeout']}")
            )
        return record

    record = state.update_approval(request_id, change)
    if record is None:
        return ApprovalResult(
            request_id,
            "unknown",
            False,
            reasons=(Reason("unknown_request", f"no approval {request_id!r}"),),
        )
    return _result(record, False, reasons)


def approval_deadline(record: dict[str, Any]) -> timedelta:
    return datetime.fromisoformat(record["expires_at"]) - datetime.fromisoformat(
        record["opened_at"]
    )


class Approvals:
    """The approval functions bound to one state: `Approvals(state).approve(id, who, roles)`."""

    def __init__(self, state: State) -> None:
        self.state = state

    def open(self, decision: Decision, now: datetime | None = None) -> dict[str, Any]:
        return open_approval(self.state, decision, now)

    def approve(
        self,
        request_id: str,
        approver: str,
        roles: Iterable[str] = (),
        now: datetime | None = None,
    ) -> ApprovalResult:
        return approve(self.state, request_id, approver, roles, now)

    def status(self, request_id: str, now: datetime | None = None) -> ApprovalResult:
        return approval_status(self.state, request_id, now)
