"""What the console shows, read from the store, the policy state and the policy: an
incident's timeline, recent runs and their logs, freeze windows, the report page."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from selfheal.reporting.facts import runbook_output
from selfheal.store import Incident, Run, Store

LOG_LIMIT = 64 * 1024  # characters of a run's output returned (the end of it)
REQUEST_PREFIX = "incident-"  # the dispatcher's approval request id is incident-<id>
ESCALATING = ("manual", "deny", "denied", "escalated")


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


Event = tuple[datetime, dict[str, Any]] | None  # (when, JSON), or None when it never happened


def _event(at: datetime | None, kind: str, text: str, **extra: Any) -> Event:
    if at is None:
        return None
    return at, {"at": _ts(at), "kind": kind, "text": text, **extra}


def _reason_texts(reasons: list[Any]) -> list[str]:
    out = []
    for reason in reasons:
        if not isinstance(reason, dict) or reason.get("code") == "selection":
            continue
        out.append(f"{reason.get('code')}: {reason.get('message')}")
    return out


def _selection(reasons: list[Any]) -> dict[str, Any]:
    for reason in reasons:
        if isinstance(reason, dict) and reason.get("code") == "selection":
            return {k: reason.get(k) for k in ("runbook", "target", "service", "run_id")}
    return {}


def _run_events(run: Run) -> list[Event]:
    label = f"run {run.id}: {run.runbook} on {run.target}"
    events = [
        _event(run.created_at, "run", f"{label} queued", run_id=run.id),
        _event(run.started_at, "run", f"{label} started (attempt {run.attempts})", run_id=run.id),
    ]
    if run.finished_at is not None:
        reason = run.reason or ""
        if reason == "verified":
            events.append(_event(run.finished_at, "verification", f"{label}: verified"))
        elif reason.startswith("verification failed"):
            events.append(_event(run.finished_at, "verification", f"{label}: {reason}"))
        rc = f", rc {run.rc}" if run.rc is not None else ""
        text = f"{label} {run.status}{rc}" + (f" ({reason})" if reason else "")
        events.append(_event(run.finished_at, "run", text, run_id=run.id, status=run.status))
    return events


def timeline(store: Store, state, incident: Incident) -> list[dict[str, Any]]:
    """Everything known about `incident`, oldest first: the alert, deduplication, every
    decision with its reasons, approval votes (with their reasons), runs, verification,
    escalation and resolution."""
    events: list[Event] = [
        _event(incident.starts_at, "alert", f"alert {incident.name} fired"),
        _event(incident.opened_at, "opened", f"incident {incident.id} opened ({incident.source})"),
    ]
    if incident.count > 1:
        events.append(
            _event(
                incident.last_seen,
                "dedup",
                f"{incident.count} notifications, {incident.count - 1} deduplicated",
                count=incident.count,
            )
        )
    if incident.parent_id is not None:
        text = f"folded into incident {incident.parent_id}: {incident.fold_reason or ''}"
        events.append(_event(incident.last_seen, "folded", text.strip()))
    for decision in store.list_decisions(incident.id):
        kind = "escalation" if decision.mode in ESCALATING else "decision"
        events.append(
            _event(
                decision.at,
                kind,
                f"decision: {decision.mode}",
                mode=decision.mode,
                reasons=_reason_texts(decision.reasons),
                selection=_selection(decision.reasons),
            )
        )
    request_id = f"{REQUEST_PREFIX}{incident.id}"
    record = state.load_approval(request_id) or {}
    comments = {
        (c.get("by"), c.get("verdict")): c.get("reason") for c in record.get("comments", [])
    }
    for vote in store.list_approvals(request_id):
        reason = comments.get((vote.approver, vote.verdict))
        events.append(
            _event(
                vote.at,
                "approval",
                f"{vote.verdict} by {vote.approver}",
                reasons=[reason] if reason else [],
            )
        )
    for run in store.list_runs(incident_id=incident.id):
        events.extend(_run_events(run))
    events.append(_event(incident.resolved_at, "resolved", "incident resolved"))
    present = [e for e in events if e is not None]
    present.sort(key=lambda e: e[0])  # stable: equal times keep their order
    return [body for _, body in present]


def recent_runs(store: Store, limit: int) -> list[Run]:
    """The newest `limit` runs, newest first."""
    return store.list_runs(newest=limit)


def run_log(run: Run) -> str | None:
    """The run's output (ansible-runner's stdout), secrets redacted, its last part."""
    return runbook_output(run, limit=LOG_LIMIT)


def freeze_status(policy, now: datetime) -> dict[str, Any]:
    from selfheal.cli.freeze import window_status

    windows = window_status(policy, now)
    return {
        "at": _ts(now),
        # an active deny window freezes what it scopes (allow windows only narrow the rest)
        "frozen": any(w["active"] and w["kind"] == "deny" for w in windows),
        "windows": windows,
    }


def report_html(store: Store, runbooks: list[str]) -> tuple[bool, str]:
    """(available, page). The renderer is optional: without it, a page saying so."""
    try:
        from selfheal.reporting.html import render_report_html
    except ImportError:
        return False, _message_page(
            "Report not available",
            "This dispatcher has no HTML report renderer installed"
            " (selfheal.reporting.html); use `selfheal report` from a shell.",
        )
    from selfheal.reporting import collect, summarise

    data = summarise(collect(store), runbooks)
    return True, render_report_html(data)


def _message_page(title: str, text: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><main>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></main></body></html>"
    )
