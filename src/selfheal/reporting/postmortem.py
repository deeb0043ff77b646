"""A postmortem draft of one incident, in the shape of the SRE book's template.

`build(facts, audit=None)` returns a `Document` (sections of paragraphs, lists, tables and
code blocks); `to_markdown` and `to_html` render it. Everything quoted from alerts, decisions,
runs and audit records is scrubbed of secrets (`selfheal.audit.redact_text`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from selfheal.audit import redact_text
from selfheal.reporting.facts import (
    IncidentFacts,
    fmt_duration,
    fmt_time,
    parse_ts,
    runbook_output,
)

TODO = "_TODO: fill in_"


@dataclass
class Section:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def para(self, text: str) -> Section:
        self.blocks.append(("para", text))
        return self

    def items(self, rows: list[str]) -> Section:
        self.blocks.append(("list", rows))
        return self

    def table(self, header: list[str], rows: list[list[str]]) -> Section:
        self.blocks.append(("table", (header, rows)))
        return self

    def code(self, text: str) -> Section:
        self.blocks.append(("code", text))
        return self


@dataclass
class Document:
    title: str
    sections: list[Section]


@dataclass
class AuditExtract:
    """The audit records of one incident, and whether the trail verified."""

    ok: bool
    summary: str
    records: list[dict[str, Any]]


def _clean(value: Any) -> str:
    return redact_text(str(value)) if value is not None else "-"


def _reasons(reasons: list[Any]) -> str:
    parts = []
    for reason in reasons:
        if isinstance(reason, dict):
            if reason.get("code") == "selection":
                continue
            parts.append(f"{reason.get('code')}: {reason.get('message')}")
        else:
            parts.append(str(reason))
    return _clean("; ".join(parts)) if parts else "-"


def timeline(facts: IncidentFacts, audit: AuditExtract | None) -> list[tuple[datetime, str, str]]:
    """(time, event, details) rows, oldest first."""
    inc = facts.incident
    rows: list[tuple[datetime, str, str]] = []
    for alert in facts.alerts:
        start = parse_ts(alert.get("starts_at"))
        received = parse_ts(alert.get("received_at"))
        if start is not None and alert.get("status") == "firing":
            rows.append((start, "alert starts", _clean(alert.get("name"))))
        if received is not None:
            rows.append(
                (received, f"alert received ({alert.get('status')})", _clean(alert.get("name")))
            )
    rows.append((inc.opened_at, "incident opened", f"#{inc.id} {_clean(inc.name)}"))
    for decision in facts.decisions:
        rows.append((decision.at, f"decision: {decision.mode}", _reasons(decision.reasons)))
    for approval in facts.approvals:
        rows.append(
            (approval.at, f"approval: {approval.verdict}", f"{approval.approver} ({approval.role})")
        )
    for run in facts.runs:
        where = f"run {run.id}: {run.runbook} on {run.target}"
        rows.append((run.created_at, "run queued", where))
        if run.started_at is not None:
            rows.append((run.started_at, "run started", f"{where} (attempt {run.attempts})"))
        if run.finished_at is not None:
            rc = "-" if run.rc is None else str(run.rc)
            detail = f"{where}: {run.status}, rc {rc}, {_clean(run.reason)}"
            rows.append((run.finished_at, f"run {run.status}", detail))
            if run.reason and "verif" in run.reason:
                rows.append((run.finished_at, "verification", _clean(run.reason)))
    if inc.resolved_at is not None:
        rows.append((inc.resolved_at, "incident resolved", f"#{inc.id}"))
    for record in audit.records if audit else ():
        when = parse_ts(record.get("ts"))
        if when is not None:
            detail = f"seq {record.get('seq')}, outcome {_clean(record.get('outcome'))}"
            rows.append((when, f"audit: {record.get('action')}", detail))
    rows.sort(key=lambda r: r[0])
    return rows


def build(facts: IncidentFacts, audit: AuditExtract | None = None) -> Document:
    inc = facts.incident
    labels = ", ".join(f"{k}={v}" for k, v in sorted(inc.labels.items()))
    target = inc.labels.get("instance") or inc.labels.get("host") or "-"
    if facts.runs:
        target = facts.runs[-1].target
    sections = []

    summary = Section("Summary")
    summary.items(
        [
            f"Incident: #{inc.id} {_clean(inc.name)} ({inc.source}, fingerprint {inc.fingerprint})",
            f"Outcome: {facts.outcome}",
            f"Status: {inc.status}",
            f"Opened: {fmt_time(inc.opened_at)}; resolved: {fmt_time(inc.resolved_at)}",
            f"Time to resolve (MTTR): {fmt_duration(facts.mttr_s)}",
            f"Labels: {_clean(labels) or '-'}",
        ]
    )
    summary.para(TODO + " (one paragraph: what happened, and why it matters)")
    sections.append(summary)

    impact = Section("Impact")
    impact.items(
        [
            f"Service: {_clean(facts.service)}",
            f"Target: {_clean(target)}",
            f"Firing notifications: {inc.count}",
            f"Duration: {fmt_duration(facts.mttr_s) if inc.resolved_at else 'still open'}",
        ]
    )
    impact.para(TODO + " (users affected, requests failed, SLO budget spent)")
    sections.append(impact)

    detection = Section("Detection")
    detection.items(
        [
            f"First alert starts: {fmt_time(facts.first_alert_start)}",
            f"Incident opened: {fmt_time(inc.opened_at)}",
            f"Time to detect (MTTD): {fmt_duration(facts.mttd_s)}",
            f"Alerts stored: {len(facts.alerts)}",
        ]
    )
    sections.append(detection)

    tl = Section("Timeline")
    if audit is not None:
        tl.para(f"Audit trail: {audit.summary}")
    tl.table(
        ["time (UTC)", "event", "details"],
        [[fmt_time(t), e, d] for t, e, d in timeline(facts, audit)],
    )
    sections.append(tl)

    tried = Section("What the automation tried")
    if not facts.runs:
        tried.para(f"No remediation ran. Outcome: {facts.outcome}.")
    for run in facts.runs:
        rc = "-" if run.rc is None else str(run.rc)
        tried.items(
            [
                f"Run {run.id}: runbook {run.runbook} on {run.target}",
                f"Status: {run.status}, rc {rc}, attempts {run.attempts}",
                f"Reason: {_clean(run.reason)}",
            ]
        )
    sections.append(tried)
    did = Section("What the runbook did")
    outputs = [(run, runbook_output(run)) for run in facts.runs]
    outputs = [(run, text) for run, text in outputs if text]
    if not outputs:
        did.para("No runbook output was found.")
    for run, text in outputs:
        did.para(f"Run {run.id} ({run.runbook}), output with secrets redacted:")
        did.code(text)
    sections.append(did)

    causes = Section("Root-cause candidates")
    candidates = []
    if facts.parent is not None:
        candidates.append(
            f"Folded into incident #{facts.parent.id} {_clean(facts.parent.name)}: "
            f"{_clean(inc.fold_reason)}"
        )
    for child in facts.children:
        candidates.append(
            f"Symptom folded into this incident: #{child.id} {_clean(child.name)} "
            f"({_clean(child.fold_reason)})"
        )
    if inc.reopened_from is not None:
        candidates.append(f"Reopened from incident #{inc.reopened_from} (a recurrence)")
    for decision in facts.decisions:
        if decision.is_pipeline_step:
            continue
        for reason in decision.reasons:
            if isinstance(reason, dict) and reason.get("service"):
                where = _clean(reason["service"])
                if reason.get("operation"):
                    where += f" ({_clean(reason['operation'])})"
                seen = f"{reason.get('count', 1)} of its traces"
                candidates.append(
                    f"{_clean(reason.get('source', 'diagnosis'))} point at {where}: {seen}"
                    + (
                        f", e.g. trace {_clean(reason['trace_id'])}"
                        if reason.get("trace_id")
                        else ""
                    )
                )
    causes.items(candidates or ["No correlated incidents."])
    causes.para(TODO + " (the root cause, and the trigger)")
    sections.append(causes)

    actions = Section("Action items")
    actions.table(
        ["action", "type", "owner", "ticket"],
        [["TODO", "mitigate / prevent / detect", "TODO", "TODO"] for _ in range(3)],
    )
    sections.append(actions)

    lessons = Section("Lessons learned")
    lessons.items([f"What went well: {TODO}", f"What went wrong: {TODO}", f"Lucky: {TODO}"])
    sections.append(lessons)

    title = f"Postmortem draft: incident #{inc.id} {_clean(inc.name)}"
    return Document(title, sections)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        for kind, value in section.blocks:
            if kind == "para":
                out += [value, ""]
            elif kind == "list":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows = value
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "code":
                fence = "````" if "```" in value else "```"
                out += [fence, value.rstrip("\n"), fence, ""]
    return "\n".join(out)


_CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;"
    "text-align:left;vertical-align:top}pre{background:#f4f4f4;padding:.5em;overflow:auto}"
)


def to_html(doc: Document) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(doc.title)}</h1>",
    ]
    for section in doc.sections:
        out.append(f"<h2>{e(section.title)}</h2>")
        for kind, value in section.blocks:
            if kind == "para":
                out.append(f"<p>{e(value)}</p>")
            elif kind == "list":
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{e(h)}</th>" for h in header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows
                )
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            elif kind == "code":
                out.append(f"<pre>{e(value)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def load_audit(trail: str, keyring: Any, incident_id: int) -> AuditExtract:
    """Verify the trail at `trail` first, then pick the records of `incident_id`."""
    from selfheal.audit import iter_records, verify

    report = verify(trail, keyring)
    if report.ok:
        summary = f"verified intact ({report.records} records, last seq {report.last_seq})"
    else:
        problem = report.problem
        where = f" at seq {problem.seq}" if problem and problem.seq is not None else ""
        why = problem.reason if problem else "unknown problem"
        summary = f"VERIFICATION FAILED{where}: {why} (records below are not trustworthy)"
    wanted = str(incident_id)
    records = [r for r in iter_records(trail) if str(r.get("incident_id")) == wanted]
    return AuditExtract(ok=report.ok, summary=summary, records=records)
