"""What the store knows about one incident, gathered once for the postmortem and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from selfheal.audit import redact_text
from selfheal.reporting.outcomes import classify
from selfheal.store import ApprovalRecord, DecisionRecord, Incident, Run, Store

REQUEST_PREFIX = "incident-"  # the dispatcher's approval request id is incident-<id>
STDOUT_LIMIT = 4000  # characters of runbook output kept in a postmortem


def parse_ts(value: Any) -> datetime | None:
    """A stored timestamp (RFC 3339 text or datetime) as a datetime, else None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@dataclass
class IncidentFacts:
    incident: Incident
    alerts: list[dict[str, Any]]
    decisions: list[DecisionRecord]
    runs: list[Run]
    approvals: list[ApprovalRecord]
    children: list[Incident] = field(default_factory=list)
    parent: Incident | None = None

    @property
    def outcome(self) -> str:
        return classify(self.incident, self.decisions, self.runs, self.approvals)

    @property
    def first_alert_start(self) -> datetime | None:
        starts = [parse_ts(a.get("starts_at")) for a in self.alerts]
        starts = [s for s in starts if s is not None]
        if starts:
            return min(starts)
        return self.incident.starts_at

    @property
    def mttd_s(self) -> float | None:
        """Time to detect: first alert startsAt -> incident opened."""
        return seconds(self.first_alert_start, self.incident.opened_at)

    @property
    def mttr_s(self) -> float | None:
        """Time to resolve: incident opened -> resolved."""
        return seconds(self.incident.opened_at, self.incident.resolved_at)

    @property
    def service(self) -> str:
        for decision in reversed(self.decisions):
            for reason in decision.reasons:
                is_selection = isinstance(reason, dict) and reason.get("code") == "selection"
                if is_selection and reason.get("service"):
                    return str(reason["service"])
        return self.incident.labels.get("service") or "-"

    @property
    def runbook(self) -> str | None:
        return self.runs[0].runbook if self.runs else None


def gather(store: Store, incident: Incident, all_incidents: list[Incident] | None = None):
    """The `IncidentFacts` of `incident`; `all_incidents` (to find folded children) is read
    from the store when not given."""
    if all_incidents is None:
        all_incidents = store.list_incidents(limit=1_000_000)
    children = [i for i in all_incidents if i.parent_id == incident.id]
    parent = store.get_incident(incident.parent_id) if incident.parent_id is not None else None
    return IncidentFacts(
        incident=incident,
        alerts=store.alerts_of(incident.id),
        decisions=store.list_decisions(incident.id),
        runs=store.list_runs(incident_id=incident.id),
        approvals=store.list_approvals(f"{REQUEST_PREFIX}{incident.id}"),
        children=sorted(children, key=lambda i: i.id),
        parent=parent,
    )


def runbook_output(run: Run, limit: int = STDOUT_LIMIT) -> str | None:
    """The run's stdout from its private data dir (ansible-runner's artifacts/*/stdout, or a
    top-level stdout file), secrets redacted, cut to its last `limit` characters."""
    if not run.private_data_dir:
        return None
    base = Path(run.private_data_dir)
    candidates = [*sorted(base.glob("artifacts/*/stdout")), base / "stdout"]
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        text = redact_text(text)
        if len(text) > limit:
            text = "[... truncated ...]\n" + text[-limit:]
        return text
    return None


def fmt_duration(value: float | None) -> str:
    if value is None:
        return "-"
    value = round(value)
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def fmt_time(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else "-"
