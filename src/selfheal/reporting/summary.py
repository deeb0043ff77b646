"""Aggregates over many incidents: MTTD/MTTR per service and per runbook, the automation
success rate, the outcome mix, and runbooks that are never used or fail often."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from selfheal.reporting.facts import IncidentFacts, gather
from selfheal.reporting.outcomes import OUTCOMES
from selfheal.store import Store

FAILING_RATE = 0.5  # a runbook whose attempts fail at least this often "fails often"
FAILING_MIN_ATTEMPTS = 2


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def _stats(values: list[float]) -> dict[str, float | None]:
    return {"median": median(values), "p90": percentile(values, 90)}


def collect(
    store: Store, since: datetime | None = None, until: datetime | None = None
) -> list[IncidentFacts]:
    """The facts of every incident opened in [since, until)."""
    incidents = store.list_incidents(limit=1_000_000)
    chosen = [
        i
        for i in incidents
        if (since is None or i.opened_at >= since) and (until is None or i.opened_at < until)
    ]
    return [gather(store, i, incidents) for i in sorted(chosen, key=lambda i: i.id)]


def _group(facts: Iterable[IncidentFacts], key) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[IncidentFacts]] = defaultdict(list)
    for f in facts:
        name = key(f)
        if name is not None:
            groups[name].append(f)
    out = {}
    for name in sorted(groups):
        members = groups[name]
        mttd = [f.mttd_s for f in members if f.mttd_s is not None]
        mttr = [f.mttr_s for f in members if f.mttr_s is not None]
        out[name] = {"incidents": len(members), "mttd_s": _stats(mttd), "mttr_s": _stats(mttr)}
    return out


def _by_day(facts: Iterable[IncidentFacts]) -> list[dict[str, Any]]:
    """Per UTC day an incident opened: incidents, automation attempted and succeeded."""
    days: dict[str, Counter] = defaultdict(Counter)
    for f in facts:
        day = days[f.incident.opened_at.date().isoformat()]
        day["incidents"] += 1
        if f.outcome in ("auto-resolved", "auto-failed-escalated"):
            day["attempted"] += 1
            day["succeeded"] += f.outcome == "auto-resolved"
    keys = ("incidents", "attempted", "succeeded")
    return [{"day": name, **{k: days[name][k] for k in keys}} for name in sorted(days)]


def summarise(facts: list[IncidentFacts], runbooks: Iterable[str] = ()) -> dict[str, Any]:
    """The report as a JSON-ready dict. `runbooks`: the policy's runbook names (for "never
    used"); without them, only runbooks seen in runs are known."""
    outcomes = Counter(f.outcome for f in facts)
    attempted = [f for f in facts if f.outcome in ("auto-resolved", "auto-failed-escalated")]
    succeeded = sum(1 for f in attempted if f.outcome == "auto-resolved")
    # attempts per runbook: a retried run is one row whose `attempts` grew
    tries: dict[str, Counter] = defaultdict(Counter)
    for f in facts:
        for run in f.runs:
            if run.status == "succeeded":
                tries[run.runbook]["ok"] += 1
                tries[run.runbook]["failed"] += max(0, run.attempts - 1)
            elif run.status in ("failed", "interrupted"):
                tries[run.runbook]["failed"] += max(1, run.attempts)
            else:
                tries[run.runbook]["other"] += 1
    failing = []
    for name, counts in sorted(tries.items()):
        done = counts["ok"] + counts["failed"]
        if done >= FAILING_MIN_ATTEMPTS and counts["failed"] / done >= FAILING_RATE:
            failing.append({"runbook": name, "attempts": done, "failed": counts["failed"]})
    return {
        "incidents": len(facts),
        "outcomes": {name: outcomes.get(name, 0) for name in OUTCOMES},
        "automation": {
            "attempted": len(attempted),
            "succeeded": succeeded,
            "success_rate": round(succeeded / len(attempted), 4) if attempted else None,
        },
        "by_day": _by_day(facts),
        "by_service": _group(facts, lambda f: f.service),
        "by_runbook": _group(facts, lambda f: f.runbook),
        "runbooks": {
            "never_used": sorted(set(runbooks) - set(tries)),
            "failing_often": failing,
        },
    }
