"""The SLO recording rules and the Grafana dashboard over them: promtool checks and unit
tests, every dashboard query draws a recorded series or a metric the dispatcher exports, and
the GitOps bundle ships the same dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import REPO

from selfheal.dispatcher.metrics import Metrics
from selfheal.gitops.kustomize import build

PROMETHEUS = REPO / "monitoring" / "prometheus"
RULES = PROMETHEUS / "rules" / "selfheal-slo.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "selfheal-slo.json"
promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

# PromQL words that look like series names (functions, aggregations, keywords).
_PROMQL_WORDS = {
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "histogram_quantile",
    "or",
    "and",
    "unless",
    "vector",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "max",
    "min",
    "avg",
    "count",
}


def _recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def _exported() -> set[str]:
    """Series names the dispatcher's /metrics has (histograms: _bucket, _sum, _count)."""
    names = set()
    for line in Metrics(lambda: 0, lambda: 0).render().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= (
                {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                if kind == "histogram"
                else {name}
            )
    return names


def series_in(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers outside label matchers and strings,
    not PromQL words, not followed by '(' or a label list of a grouping clause."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    names = {
        m.group()
        for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
        if not expr[m.end() :].lstrip().startswith("(")  # a function or aggregation
    }
    return {n for n in names if n not in _PROMQL_WORDS and not re.fullmatch(r"\d.*", n)}


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_series_in_reads_names_not_functions() -> None:
    assert series_in('sum by (le) (rate(x_bucket{a="b"}[5m])) or vector(0)') == {"x_bucket"}
    assert series_in("selfheal:a:b * 3600") == {"selfheal:a:b"}


def test_recording_rules_use_only_dispatcher_metrics() -> None:
    exported = _exported()
    assert "selfheal_mttr_seconds_bucket" in exported and "selfheal_runs_total" in exported
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert series_in(rule["expr"]) <= exported, rule["record"]
    assert {
        "selfheal:mttr_seconds:p50_1h",
        "selfheal:mttd_seconds:p90_1h",
        "selfheal:automation_success_ratio:1h",
    } <= _recorded()


def test_every_dashboard_query_draws_a_known_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "selfheal-slo" and dashboard["panels"]
    known = _recorded() | _exported()
    used = set()
    for expr in _queries():
        names = series_in(expr)
        assert names, expr
        assert names <= known, f"{expr}: {names - known}"
        used |= names
    assert _recorded() <= used, "every recorded series is on the dashboard"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_gitops_ships_the_same_dashboard() -> None:
    resources = build(REPO / "gitops" / "base" / "monitoring")
    [config_map] = [
        r
        for r in resources
        if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "selfheal-slo-dashboard"
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"]["selfheal-slo.json"] == DASHBOARD.read_text()
    [rule] = [r for r in resources if r["kind"] == "PrometheusRule"]
    assert "selfheal-slo" in [g["name"] for g in rule["spec"]["groups"]]


@promtool
def test_promtool_checks_and_unit_tests(tmp_path: Path) -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(
        ["promtool", "test", "rules", "tests/selfheal-slo.test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
