"""The reason that goes with an approval vote: parsed from the request body, required from
console identities, kept on the approval record and in the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from selfheal.alerts import PayloadError, parse_json

MAX_REASON = 500
MAX_BODY = 64 * 1024


class ReasonError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def parse_reason(body: bytes, *, required: bool) -> str | None:
    """`{"reason": "..."}` from a vote's or a cancel's body. An empty body is no reason."""
    data: Any = {}
    if body.strip():
        try:  # the intake's strict reader: depth limit, no duplicate keys
            data = parse_json(body, max_bytes=MAX_BODY)
        except PayloadError as exc:
            raise ReasonError(f"must be a JSON object ({exc.args[0]})", "(payload)") from None
        if not isinstance(data, dict):
            raise ReasonError("must be a JSON object", "(payload)")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ReasonError("must be a string", "reason")
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise ReasonError(f"must be at most {MAX_REASON} characters", "reason")
    if required and not reason:
        raise ReasonError("a reason is required", "reason")
    return reason or None


def note_reason(dispatcher, request_id: str, who: str, verdict: str, reason: str) -> None:
    """Keep a counted vote's reason beside the votes (policy state) and in the audit trail."""
    at = datetime.now(UTC).isoformat()

    def change(record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is not None:
            comments = record.setdefault("comments", [])
            comments.append({"by": who, "verdict": verdict, "reason": reason, "at": at})
        return record

    dispatcher.state.update_approval(request_id, change)
    if dispatcher.audit is not None:
        event = {
            "action": "approval.reason",
            "actor": {"user": who, "dispatcher": dispatcher.config.instance},
            "outcome": verdict,
            "reasons": [reason],
            "data": {"request_id": request_id},
        }
        incident = request_id.removeprefix("incident-")
        if incident.isdigit():
            event["incident_id"] = incident
        dispatcher.audit.append_or_spool(event)
