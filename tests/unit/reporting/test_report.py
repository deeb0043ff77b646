"""`selfheal report`: aggregates over a store, table and JSON output, CLI contract."""

from __future__ import annotations

import json

import pytest
from unit.reporting.helpers import at, fire, resolve, rfc, run_to_end, selection

from selfheal.cli import ExitCode, build_parser, main
from selfheal.reporting import collect, summarise
from selfheal.reporting.summary import median, percentile


def _fill(store) -> None:
    """web: two auto-resolved incidents (MTTD 60 s / 120 s, MTTR 300 s / 600 s);
    db: one incident whose runbook failed twice (MTTD 30 s, still open); api: manual."""
    a = fire(store, "Down", "web", 0, 60)
    store.record_decision(a, "auto", [selection("web", "restart-web", "web1")], at=at(61))
    run_to_end(store, a, "restart-web", "web1", "succeeded", 0, 62, 100)
    resolve(store, "Down", "web", 0, 360)

    b = fire(store, "Down", "web", 1000, 1120)
    store.record_decision(b, "auto", [selection("web", "restart-web", "web1")], at=at(1121))
    run_to_end(store, b, "restart-web", "web1", "succeeded", 0, 1122, 1200)
    resolve(store, "Down", "web", 1000, 1720)

    c = fire(store, "DbDown", "db", 2000, 2030)
    store.record_decision(c, "auto", [selection("db", "failover-db", "db1")], at=at(2031))
    run_to_end(store, c, "failover-db", "db1", "failed", 2, 2032, 2100)
    run = store.list_runs(incident_id=c)[0]
    store.retry_run(run.id, now=at(2101))
    store.claim_next_run("w1", 600, now=at(2102))
    store.finish_run(run.id, "failed", rc=2, worker_id="w1", reason="failed", now=at(2200))

    d = fire(store, "Odd", "api", 3000, 3010)
    manual = {"code": "no_runbook", "message": "no runbook", "effect": "manual"}
    store.record_decision(d, "manual", [manual, selection("api", None, "api1")], at=at(3011))


def test_percentiles() -> None:
    assert median([]) is None and percentile([], 90) is None
    assert median([3, 1, 2]) == 2 and median([1, 2, 3, 4]) == 2.5
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile([5.0], 90) == 5.0


def test_aggregates(store) -> None:
    _fill(store)
    data = summarise(collect(store), runbooks=["restart-web", "failover-db", "clear-cache"])
    assert data["incidents"] == 4
    assert data["outcomes"]["auto-resolved"] == 2
    assert data["outcomes"]["auto-failed-escalated"] == 1
    assert data["outcomes"]["manual-only"] == 1
    assert data["automation"] == {"attempted": 3, "succeeded": 2, "success_rate": 0.6667}
    web = data["by_service"]["web"]
    assert web["incidents"] == 2
    assert web["mttd_s"] == {"median": 90.0, "p90": 120.0}
    assert web["mttr_s"] == {"median": 450.0, "p90": 600.0}
    db = data["by_service"]["db"]
    assert db["mttd_s"]["median"] == 30.0 and db["mttr_s"]["median"] is None
    assert set(data["by_runbook"]) == {"restart-web", "failover-db"}
    assert data["runbooks"]["never_used"] == ["clear-cache"]
    assert data["runbooks"]["failing_often"] == [
        {"runbook": "failover-db", "attempts": 2, "failed": 2}
    ]


def test_since_until_window(store) -> None:
    _fill(store)
    data = summarise(collect(store, since=at(1000), until=at(2500)))
    assert data["incidents"] == 2
    assert set(data["by_service"]) == {"web", "db"}


def test_cli_json_and_table(store, capsys) -> None:
    _fill(store)
    args = ["report", "--store", str(store.path), "--since", rfc(at(0))]
    assert main([*args, "--format", "json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert data["incidents"] == 4
    assert main(args) == ExitCode.OK
    table = capsys.readouterr().out
    assert "automation: 2/3 succeeded (66.7%)" in table
    assert "runbooks failing often: failover-db (2/2 attempts failed)" in table
    assert "1m30s" in table  # web MTTD median


def test_cli_errors(store, tmp_path, capsys) -> None:
    assert main(["report", "--store", str(tmp_path / "none.db")]) == ExitCode.USAGE
    assert main(["report", "--store", str(store.path), "--since", "yesterday"]) == ExitCode.USAGE


@pytest.mark.parametrize("verb", ["report", "postmortem"])
def test_help(verb, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([verb, "--help"])
    assert exc.value.code == 0
    assert "--store" in capsys.readouterr().out


def test_cli_policy_lists_unused_runbooks(store, repo, capsys) -> None:
    _fill(store)
    policy = repo / "src" / "selfheal" / "demo_policy.yml"
    args = ["report", "--store", str(store.path), "--policy", str(policy), "--format", "json"]
    assert main(args) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["runbooks"]["never_used"] == ["restart_service"]


def _retried(store, incident, runbook, target, attempts, start) -> None:
    """One run of `runbook` on `target` that started `attempts` times and failed each time."""
    run_to_end(store, incident, runbook, target, "failed", 2, start, start + 10)
    run = store.list_runs(incident_id=incident)[-1]
    for i in range(1, attempts):
        t = start + 100 * i
        store.retry_run(run.id, now=at(t))
        store.claim_next_run("w1", 600, now=at(t + 1))
        store.finish_run(run.id, "failed", rc=2, worker_id="w1", reason="failed", now=at(t + 5))


def test_cost_against_the_daily_budget_and_runaway_loops(store) -> None:
    _fill(store)  # restart-web started twice, failover-db twice, all on 2026-01-05
    costs = {"restart-web": 2.0, "failover-db": 10.0}
    data = summarise(collect(store), costs=costs, daily_budget=15.0)
    assert data["cost"]["total"] == 24.0
    assert data["cost"]["by_day"] == [{"day": "2026-01-05", "cost": 24.0}]
    [over] = data["cost"]["anomalies"]
    assert over["day"] == "2026-01-05" and "over the daily budget of 15" in over["why"]
    assert data["runaway"] == []  # two attempts is a retry, not a loop

    e = fire(store, "Full", "cache", 4000, 4010)
    _retried(store, e, "clear-cache", "cache1", 5, 4020)
    data = summarise(collect(store), costs=costs, daily_budget=None)
    assert data["runaway"] == [
        {"runbook": "clear-cache", "target": "cache1", "day": "2026-01-05", "attempts": 5}
    ]
    assert data["cost"]["total"] == 24.0 and data["cost"]["anomalies"] == []  # no cost known


def test_a_day_far_above_the_usual_is_a_cost_anomaly(store) -> None:
    day = 86400
    for i, attempts in enumerate((1, 1, 1, 4)):
        incident = fire(store, f"Full{i}", "cache", i * day, i * day + 10)
        _retried(store, incident, "clear-cache", "cache1", attempts, i * day + 20)
    data = summarise(collect(store), costs={"clear-cache": 1.0})
    assert [row["cost"] for row in data["cost"]["by_day"]] == [1.0, 1.0, 1.0, 4.0]
    [odd] = data["cost"]["anomalies"]
    assert odd["day"] == "2026-01-08" and "4.0x the median day" in odd["why"]


def test_cli_reports_cost_and_loops_with_a_policy(store, repo, capsys) -> None:
    _fill(store)
    policy = repo / "src" / "selfheal" / "demo_policy.yml"
    assert main(["report", "--store", str(store.path), "--policy", str(policy)]) == 0
    table = capsys.readouterr().out
    assert "cost of automated actions: 0" in table  # the demo's runbook never ran here
    assert "runaway loops: -" in table


def test_slo_burn_counts_late_and_overdue_incidents(store) -> None:
    from selfheal.reporting.summary import slo_burn

    _fill(store)  # web: resolved in 300 s and 600 s; db and api still open
    facts = collect(store)
    early = slo_burn(facts, objective_s=400, target=0.9, now=at(2100))
    # db opened 70 s before "now" and api not yet: neither counts; one of two web ones late
    assert (early["counted"], early["met"], early["ratio"], early["budget_burn"]) == (
        2,
        1,
        0.5,
        5.0,
    )
    late = slo_burn(facts, objective_s=400, target=0.9, now=at(5000))
    assert (late["counted"], late["met"], late["budget_burn"]) == (4, 1, 7.5)
    fine = slo_burn(facts[:1], objective_s=400, target=0.9, now=at(5000))
    assert fine["budget_burn"] == 0.0


def test_cli_slo(store, capsys) -> None:
    _fill(store)
    args = ["report", "--store", str(store.path), "--slo-mttr", "10m"]
    assert main([*args, "--until", rfc(at(2100))]) == ExitCode.OK
    table = capsys.readouterr().out
    assert "SLO 95% resolved within 10m00s: 2/2 (100.0%), error budget burned 0%" in table
    assert main([*args, "--format", "json"]) == ExitCode.OK  # now: db and api are overdue
    slo = json.loads(capsys.readouterr().out)["slo"]
    assert (slo["counted"], slo["met"], slo["budget_burn"]) == (4, 2, 10.0)
    assert main([*args, "--slo-target", "1.5"]) == ExitCode.USAGE
    assert main(["report", "--store", str(store.path), "--slo-mttr", "soon"]) == ExitCode.USAGE
