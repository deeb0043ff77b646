"""Aggregates over many incidents: MTTD/MTTR per service and per runbook, the automation
success rate, the outcome mix, runbooks that are never used or fail often, the cost of
automated actions against the policy's daily budget, and runaway loops."""

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
RUNAWAY_ATTEMPTS = 5  # attempts of one runbook on one target in one UTC day: a loop
COST_ANOMALY_FACTOR = 3.0  # a day costing this many times the median day is an anomaly
COST_ANOMALY_MIN_DAYS = 3  # days with spending needed before a median means anything


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


def _attempt_days(facts: Iterable[IncidentFacts]):
    """(run, UTC day, attempts that started) for every run that started at least once."""
    for f in facts:
        for run in f.runs:
            if run.attempts > 0:
                when = run.started_at or run.created_at
                yield run, when.date().isoformat(), run.attempts


def _spending(
    facts: list[IncidentFacts], costs: dict[str, float], budget: float | None
) -> dict[str, Any]:
    """What the automated actions cost per UTC day (each started attempt costs its runbook's
    `cost`), against the daily budget; days over it or far above the usual day."""
    days: dict[str, float] = defaultdict(float)
    for run, day, attempts in _attempt_days(facts):
        days[day] += costs.get(run.runbook, 0.0) * attempts
    by_day = [{"day": d, "cost": round(days[d], 4)} for d in sorted(days)]
    spent = [row["cost"] for row in by_day if row["cost"] > 0]
    usual = median(spent) if len(spent) >= COST_ANOMALY_MIN_DAYS else None
    anomalies = []
    for row in by_day:
        why = []
        if budget is not None and row["cost"] > budget:
            why.append(f"over the daily budget of {budget:g}")
        if usual and row["cost"] > COST_ANOMALY_FACTOR * usual:
            why.append(f"{row['cost'] / usual:.1f}x the median day ({usual:g})")
        if why:
            anomalies.append({**row, "why": "; ".join(why)})
    return {
        "known": bool(costs),
        "total": round(sum(days.values()), 4),
        "daily_budget": budget,
        "by_day": by_day,
        "anomalies": anomalies,
    }


def _runaway(facts: Iterable[IncidentFacts]) -> list[dict[str, Any]]:
    """One runbook retried on one target so often in one day that it is looping."""
    counts: Counter = Counter()
    for run, day, attempts in _attempt_days(facts):
        counts[(run.runbook, run.target, day)] += attempts
    return [
        {"runbook": book, "target": target, "day": day, "attempts": n}
        for (book, target, day), n in sorted(counts.items())
        if n >= RUNAWAY_ATTEMPTS
    ]


def slo_burn(
    facts: Iterable[IncidentFacts], objective_s: float, target: float, now: datetime
) -> dict[str, Any]:
    """The time-to-resolve SLO "`target` of incidents resolved within `objective_s`": an
    incident resolved in time is good; one resolved late, or still open past the objective,
    is bad; one still open within it is not counted yet. `budget_burn` is the share of the
    error budget spent: 1.0 means exactly spent, above 1 overspent."""
    good = bad = 0
    for f in facts:
        if f.incident.parent_id is not None:
            continue  # folded into its root cause: the root's resolution counts
        took = f.mttr_s
        if took is None:
            took = (now - f.incident.opened_at).total_seconds()
            if took <= objective_s:
                continue
        good += took <= objective_s
        bad += took > objective_s
    counted = good + bad
    ratio = good / counted if counted else None
    burn = None
    if ratio is not None:
        burn = round((1.0 - ratio) / (1.0 - target), 4) if target < 1.0 else None
    return {
        "objective_s": objective_s,
        "target": target,
        "counted": counted,
        "met": good,
        "ratio": round(ratio, 4) if ratio is not None else None,
        "budget_burn": burn,
    }


def summarise(
    facts: list[IncidentFacts],
    runbooks: Iterable[str] = (),
    *,
    costs: dict[str, float] | None = None,
    daily_budget: float | None = None,
    slo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict. `runbooks`: the policy's runbook names (for "never
    used"); without them, only runbooks seen in runs are known. `costs` (runbook -> cost of
    one attempt) and `daily_budget` come from the policy too. `slo`: what `slo_burn`
    returned for these facts, carried as is."""
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
        "cost": _spending(facts, dict(costs or {}), daily_budget),
        "runaway": _runaway(facts),
        "slo": slo,
    }
