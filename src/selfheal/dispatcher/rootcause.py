"""Root-cause candidates attached to an incident (``POST /incidents/{id}/root-cause``).

A diagnosis tool (``selfheal traces isolate --incident``, or anything that speaks this small
JSON shape) names the services where failures originate; the dispatcher keeps them as a
``root_cause`` decision of the incident, so they show in its timeline, in the console and in
the postmortem draft. Candidates are data: validated, bounded, never evaluated, and they
change nothing about what the dispatcher runs.
"""

from __future__ import annotations

from typing import Any

from selfheal.alerts import PayloadError, parse_json
from selfheal.errors import SelfhealError
from selfheal.store import ROOT_CAUSE_MODE

MODE = ROOT_CAUSE_MODE
MAX_CANDIDATES = 10
MAX_BODY = 1024 * 1024
_TEXT_LIMITS = {"service": 200, "operation": 300, "trace_id": 64, "reason": 500, "source": 100}


class CandidateError(SelfhealError):
    """A candidate list that does not have the documented shape; names the field."""

    def __init__(self, message: str, field: str):
        super().__init__(f"{field}: {message}")
        self.message = message
        self.field = field


def _text(item: dict, key: str, where: str, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None:
        if required:
            raise CandidateError("is required", f"{where}.{key}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise CandidateError("must be a non-empty string", f"{where}.{key}")
    if len(value) > _TEXT_LIMITS[key]:
        raise CandidateError(f"must be at most {_TEXT_LIMITS[key]} characters", f"{where}.{key}")
    return value.strip()


def parse_candidates(body: bytes) -> list[dict[str, Any]]:
    """``{"source": "traces", "candidates": [{"service": ..., ...}]}`` -> reasons to record."""
    try:  # the intake's strict reader: depth limit, no duplicate keys
        data = parse_json(body or b"null", max_bytes=MAX_BODY)
    except PayloadError as exc:
        raise CandidateError(f"not JSON ({exc.args[0]})", "body") from None
    if not isinstance(data, dict):
        raise CandidateError("must be a JSON object", "body")
    unknown = set(data) - {"source", "candidates"}
    if unknown:
        raise CandidateError("unknown key", sorted(unknown)[0])
    source = _text(data, "source", "body") or "unknown"
    items = data.get("candidates")
    if not isinstance(items, list) or not items:
        raise CandidateError("must be a non-empty list", "candidates")
    if len(items) > MAX_CANDIDATES:
        raise CandidateError(f"at most {MAX_CANDIDATES} candidates", "candidates")
    reasons = []
    for i, item in enumerate(items):
        where = f"candidates[{i}]"
        if not isinstance(item, dict):
            raise CandidateError("must be an object", where)
        extra = set(item) - {"service", "operation", "trace_id", "reason", "count", "share"}
        if extra:
            raise CandidateError("unknown key", f"{where}.{sorted(extra)[0]}")
        service = _text(item, "service", where, required=True)
        count = item.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise CandidateError("must be a positive integer", f"{where}.count")
        share = item.get("share")
        if share is not None and (
            not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1
        ):
            raise CandidateError("must be a number in [0, 1]", f"{where}.share")
        reason: dict[str, Any] = {
            "code": "root_cause_candidate",
            "effect": "info",
            "message": f"{source} point at {service}",
            "service": service,
            "count": count,
            "source": source,
        }
        for key in ("operation", "trace_id", "reason"):
            text = _text(item, key, where)
            if text is not None:
                reason[key] = text
        if share is not None:
            reason["share"] = float(share)
        reasons.append(reason)
    return reasons


def candidates_of(decisions) -> list[dict[str, Any]]:
    """The candidate reasons recorded on an incident, newest attachment first."""
    found: list[dict[str, Any]] = []
    for decision in sorted(decisions, key=lambda d: d.at, reverse=True):
        if decision.mode == MODE:
            found += [r for r in decision.reasons if isinstance(r, dict)]
    return found
