"""Attaching a root-cause candidate to an incident.

Two hooks, both plain data (nothing from a trace is ever evaluated):

- ``annotate_alert(alert, candidate)`` adds ``root_cause_*`` annotations to an Alertmanager
  v2 alert before it is posted: annotations do not change the alert's fingerprint, so the
  incident it opens or joins carries the candidate.
- ``incident_payload(candidates)`` is the body of the dispatcher's
  ``POST /incidents/{id}/root-cause``: the candidates become part of that incident's
  timeline and of its postmortem draft.
- ``root_cause_alert(candidate)`` is an alert of its own (``alertname=TraceRootCause``,
  ``service=<origin>``): the dispatcher opens an incident for the origin service, and its
  dependency correlation folds the incidents of the services above it into that one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .isolate import Candidate

ALERTNAME = "TraceRootCause"


def root_cause_annotations(candidate: Candidate) -> dict[str, str]:
    return {
        "root_cause_service": candidate.service,
        "root_cause_operation": candidate.operation,
        "root_cause_trace_id": candidate.example_trace_id,
        "root_cause_path": " -> ".join(candidate.path),
        "root_cause_traces": str(candidate.count),
        "root_cause_summary": candidate.summary,
    }


def annotate_alert(alert: dict, candidate: Candidate) -> dict:
    """A copy of the Alertmanager v2 alert with the candidate in its annotations."""
    annotations = {**(alert.get("annotations") or {}), **root_cause_annotations(candidate)}
    return {**alert, "annotations": annotations}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def root_cause_alert(
    candidate: Candidate,
    ttl: timedelta = timedelta(minutes=30),
    severity: str = "warning",
    now: datetime | None = None,
) -> dict:
    now = now or datetime.now(UTC)
    return {
        "labels": {"alertname": ALERTNAME, "service": candidate.service, "severity": severity},
        "annotations": {
            "summary": f"traces point at {candidate.service} as the origin",
            **root_cause_annotations(candidate),
        },
        "startsAt": _iso(now),
        "endsAt": _iso(now + ttl),
    }


def incident_payload(candidates: list[Candidate], mode: str = "errors") -> dict:
    """The body of ``POST /incidents/{id}/root-cause`` for the top candidates."""
    return {
        "source": "latency traces" if mode == "latency" else "failing traces",
        "candidates": [
            {
                "service": c.service,
                "operation": c.operation,
                "trace_id": c.example_trace_id,
                "reason": c.reason[:500],
                "count": c.count,
                "share": round(c.share, 4),
            }
            for c in candidates[:10]
        ],
    }
