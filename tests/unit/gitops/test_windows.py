"""One freeze calendar, every engine: the Argo CD sync windows rendered from a policy deny
exactly when the policy engine says GitOps changes are frozen.

The rendered windows are evaluated with `selfheal.gitops.syncwindows` (an evaluator of Argo
CD's cron + duration + timeZone semantics that shares no code with the policy engine) at
every hour and half hour of the horizon year, and minute by minute around every change of
the engine's decision, and compared with `freeze_state` (the policy engine's windows).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from support import REPO

from selfheal.gitops.freeze import freeze_state
from selfheal.gitops.render import (
    HORIZON_ANNOTATION,
    Sources,
    calendar_runs,
    go_duration,
    horizon_of,
    render,
    sync_windows,
)
from selfheal.gitops.syncwindows import SyncWindow, denied, parse_go_duration
from selfheal.policy import compile_policy

APP = "selfheal-production"


def _policy(windows: list[dict]):
    return compile_policy(
        {
            "version": 1,
            "risk_tiers": {"low": {"mode": "auto"}},
            "runbooks": {"noop": {"playbook": "noop.yml", "risk": "low"}},
            "routes": [],
            "windows": windows,
        }
    )


def _compare(policy, year: int, tz: ZoneInfo, app: str = APP, env: str = "production") -> set:
    """Assert Argo CD and the engine agree over local year `year`; return the frozen days."""
    windows = [SyncWindow.from_spec(w) for w in sync_windows(policy, year)]
    start = datetime.combine(date(year, 1, 1), time(), tzinfo=tz).astimezone(UTC)
    stop = datetime.combine(date(year + 1, 1, 1), time(), tzinfo=tz).astimezone(UTC)
    frozen_days: set[date] = set()
    previous = None
    t = start
    step = timedelta(minutes=30)
    while t < stop:
        engine = freeze_state(policy, env, t).frozen
        assert denied(windows, app, t) == engine, f"disagree at {t.isoformat()}"
        if engine:
            frozen_days.add(t.astimezone(tz).date())
        if previous is not None and previous != engine:
            # The decision changed within the last step: check every minute around it.
            m = t - step - timedelta(minutes=30)
            while m < t + timedelta(minutes=30):
                expect = freeze_state(policy, env, m).frozen
                assert denied(windows, app, m) == expect, f"disagree at {m.isoformat()}"
                m += timedelta(minutes=1)
        previous = engine
        t += step
    return frozen_days


def _days(first: str, last: str) -> set[date]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return {a + timedelta(days=i) for i in range((b - a).days + 1)}


def test_christmas_and_thanksgiving_week_deny_exactly_those_days() -> None:
    tz = ZoneInfo("America/New_York")
    policy = _policy(
        [
            {
                "name": "holidays",
                "kind": "deny",
                "dates": ["12-25", "2026-11-23..2026-11-29"],
                "timezone": tz.key,
                "environments": ["production"],
            }
        ]
    )
    rendered = sync_windows(policy, 2026)
    assert [(w["schedule"], w["duration"], w["timeZone"]) for w in rendered] == [
        ("0 0 23 11 *", "168h", "America/New_York"),
        ("0 0 25 12 *", "24h", "America/New_York"),
    ]
    frozen = _compare(policy, 2026, tz)
    assert frozen == _days("2026-11-23", "2026-11-29") | {date(2026, 12, 25)}
    # Staging is not in the window's scope: never denied.
    assert all(w["applications"] == [APP] for w in rendered)


@pytest.mark.parametrize(
    ("zone", "dates", "year", "expected"),
    [
        # A range across the spring DST change lasts 71 elapsed hours, not 72.
        ("America/New_York", ["03-07..03-09"], 2026, [("0 0 7 3 *", "71h")]),
        # Southern hemisphere: DST ends on 5 April 2026 in Sydney (25-hour day).
        ("Australia/Sydney", ["2026-04-04..2026-04-06"], 2026, [("0 0 4 4 *", "73h")]),
        # A yearly range wrapping the year end: the January part and the December part.
        ("Asia/Tokyo", ["12-31..01-01"], 2026, [("0 0 1 1 *", "24h"), ("0 0 31 12 *", "48h")]),
        # One-off dates of other years are outside the horizon.
        ("Europe/Berlin", ["2025-05-01", "2026-05-01", "2027-05-01"], 2026, [("0 0 1 5 *", "24h")]),
    ],
)
def test_calendar_dates_across_zones_and_years(zone, dates, year, expected) -> None:
    tz = ZoneInfo(zone)
    policy = _policy([{"name": "w", "kind": "deny", "dates": dates, "timezone": zone}])
    rendered = sync_windows(policy, year)
    assert [(w["schedule"], w["duration"]) for w in rendered] == expected
    frozen = _compare(policy, year, tz)
    assert frozen == {
        d for d in _days(f"{year}-01-01", f"{year}-12-31") if policy.windows[0]._calendar_hit(d)
    }


def test_one_off_range_crossing_the_year_end_is_cut_at_the_horizon() -> None:
    policy = _policy([{"name": "w", "kind": "deny", "dates": ["2026-12-30..2027-01-02"]}])
    # Rendered for 2026 the window may not spill into 2027 (it would also fire in 2025 and
    # deny 1-2 January 2026); 2027's render covers those days.
    assert [(r.first, r.last) for r in calendar_runs(policy.windows[0], 2026)] == [
        (date(2026, 12, 30), date(2026, 12, 31))
    ]
    assert [(r.first, r.last) for r in calendar_runs(policy.windows[0], 2027)] == [
        (date(2027, 1, 1), date(2027, 1, 2))
    ]
    _compare(policy, 2026, ZoneInfo("UTC"), env="production")


def test_cron_and_allow_windows_agree_across_dst() -> None:
    policy = _policy(
        [
            {
                "name": "weekend",
                "kind": "deny",
                "schedule": "0 18 * * fri",
                "duration": "63h",
                "timezone": "America/New_York",
            },
            {
                "name": "office-hours",
                "kind": "allow",
                "schedule": "0 9 * * mon-fri",
                "duration": "8h30m",
                "timezone": "Europe/Berlin",
            },
        ]
    )
    rendered = sync_windows(policy, 2026)
    assert [(w["kind"], w["schedule"], w["duration"]) for w in rendered] == [
        ("deny", "0 18 * * fri", "63h"),
        ("allow", "0 9 * * mon-fri", "8h30m"),
    ]
    _compare(policy, 2026, ZoneInfo("Europe/Berlin"))


def test_go_durations() -> None:
    for text, delta in [
        ("63h", timedelta(hours=63)),
        ("1h30m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ]:
        assert go_duration(delta) == text
        assert parse_go_duration(text) == delta


def test_checked_in_generated_files_are_current() -> None:
    """`selfheal gitops render` output is checked in; this fails when it is stale."""
    from selfheal.policy import load_policy

    out = REPO / "gitops"
    year = horizon_of(out)
    assert year is not None, f"{HORIZON_ANNOTATION} missing from argocd/appproject.yaml"
    policy_file = out / "base/policy/policy.yml"
    rules = REPO / "monitoring/prometheus/rules"
    files = render(
        load_policy(policy_file),
        Sources(policy_file, rules, out),
        year,
        {"policy": "gitops/base/policy/policy.yml", "rules": "monitoring/prometheus/rules"},
    )
    for rel, text in files.items():
        assert (out / rel).read_text() == text, f"{rel} is stale: run `selfheal gitops render`"


def test_render_cli_check_and_write(tmp_path: Path, monkeypatch) -> None:
    from selfheal.cli import main

    tree = tmp_path / "gitops"
    monkeypatch.chdir(REPO)
    policy = str(REPO / "gitops/base/policy/policy.yml")
    assert main(["gitops", "render", "--policy", policy, "--out", str(tree), "--year", "2026"]) == 0
    project = yaml.safe_load((tree / "argocd/appproject.yaml").read_text().split("\n", 2)[2])
    assert project["metadata"]["annotations"][HORIZON_ANNOTATION] == "2026"
    assert (
        main(
            [
                "gitops",
                "render",
                "--policy",
                policy,
                "--out",
                str(tree),
                "--check",
                "--year",
                "2026",
            ]
        )
        == 0
    )
    (tree / "argocd/appproject.yaml").write_text("stale\n")
    assert (
        main(
            [
                "gitops",
                "render",
                "--policy",
                policy,
                "--out",
                str(tree),
                "--check",
                "--year",
                "2026",
            ]
        )
        == 1
    )


def test_status_cli(capsys) -> None:
    from selfheal.cli import main

    policy = str(REPO / "gitops/base/policy/policy.yml")
    args = ["gitops", "status", "--policy", policy, "--format", "json", "--environment"]
    assert main([*args, "production", "--at", "2026-12-25T12:00:00Z"]) == 0
    assert '"frozen": true' in capsys.readouterr().out
    assert main([*args, "staging", "--at", "2026-12-25T12:00:00Z"]) == 0
    assert '"frozen": false' in capsys.readouterr().out


def test_freeze_state_is_the_engines_freeze_decision() -> None:
    """`freeze_state` and the engine's full `evaluate` agree on the freeze reason."""
    from selfheal.policy import MemoryState, Request, evaluate

    policy = compile_policy(
        {
            "version": 1,
            "risk_tiers": {"medium": {"mode": "auto"}},
            "services": {"app": {"environment": "production", "hosts": ["h1"]}},
            "runbooks": {"gitops_sync": {"playbook": "sync.yml", "risk": "medium"}},
            "routes": [],
            "windows": [
                {
                    "name": "holidays",
                    "kind": "deny",
                    "dates": ["12-25", "2026-11-23..2026-11-29"],
                    "timezone": "America/New_York",
                    "environments": ["production"],
                },
                {
                    "name": "weekend",
                    "kind": "deny",
                    "schedule": "0 18 * * fri",
                    "duration": "63h",
                    "timezone": "America/New_York",
                    "risks": ["medium"],
                },
            ],
        }
    )
    request = Request(labels={}, runbook="gitops_sync", service="app", target="h1")
    t = datetime(2026, 11, 15, tzinfo=UTC)
    while t < datetime(2027, 1, 5, tzinfo=UTC):
        decision = evaluate(policy, request, MemoryState(), t)
        engine = any(r.code == "freeze" and r.effect == "deny" for r in decision.reasons)
        assert freeze_state(policy, "production", t).frozen == engine, t.isoformat()
        t += timedelta(hours=1)
