"""What the automation did, from the audit trail: the pluggable source of healing evidence.

`TrailAudit` reads a selfheal audit trail (docs/audit.md) through its public read API,
`selfheal.audit.iter_records`. Without a configured trail the healing expectations are
skipped with a note saying so; anything with `records(since, until)` can stand in.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

NO_TRAIL = "no audit trail configured (--audit-trail or SELFHEAL_AUDIT_TRAIL)"


class AuditSource(Protocol):
    description: str

    def records(self, since: float, until: float) -> list[dict]: ...


def record_time(record: dict) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


class TrailAudit:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.description = f"audit trail {self.path}"

    def records(self, since: float, until: float) -> list[dict]:
        from selfheal.audit import iter_records

        out = []
        for record in iter_records(self.path):
            when = record_time(record)
            if when is not None and since <= when <= until:
                out.append(record)
        return out


def configured(path: str | Path | None = None) -> TrailAudit | None:
    chosen = path or os.environ.get("SELFHEAL_AUDIT_TRAIL")
    return TrailAudit(chosen) if chosen else None


def _runbook_matches(record: dict, runbook: str) -> bool:
    data = record.get("data") or {}
    names = {data.get("runbook"), data.get("playbook")}
    stem = runbook.removesuffix(".yml").removesuffix(".yaml")
    return bool(names & {runbook, stem, f"{stem}.yml", f"{stem}.yaml"})


def healing_run(records: Iterable[dict], runbook: str, host: str) -> dict | None:
    """The first successful run of `runbook` that covered `host`, if any."""
    for record in records:
        if record.get("action") != "playbook.end" or not _runbook_matches(record, runbook):
            continue
        stats = (record.get("data") or {}).get("stats") or {}
        hosts = set(stats) or set(str(record.get("target") or "").split(","))
        if host in hosts and record.get("outcome") == "ok":
            return record
    return None


def summarize(records: Iterable[dict], ignore_playbooks: set[str]) -> list[str]:
    """One line per playbook run and per changed or failed task, the chaos faults excluded."""
    lines = []
    for record in records:
        data = record.get("data") or {}
        if data.get("playbook") in ignore_playbooks and not data.get("runbook"):
            continue
        action = record.get("action")
        when = str(record.get("ts", ""))[11:23]
        if action == "playbook.end":
            runbook = data.get("runbook") or data.get("playbook")
            lines.append(f"{when} {runbook} on {record.get('target')}: {record.get('outcome')}")
        elif action == "task" and record.get("outcome") in ("changed", "failed"):
            task = data.get("task")
            lines.append(f"{when} {record.get('target')}: {task} ({record.get('outcome')})")
        elif action not in ("task", "play.start", "play.end"):
            lines.append(f"{when} {action} {record.get('target')}: {record.get('outcome')}")
    return lines[:50]
