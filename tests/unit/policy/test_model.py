"""The policy file: validation errors name the bad field's path; the example is valid."""

from __future__ import annotations

import copy
import json
from importlib import resources

import jsonschema
import pytest
import yaml
from unit.policy.policy_fixtures import BASE

from selfheal.errors import ConfigError
from selfheal.policy import compile_policy, load_policy, parse_duration
from selfheal.policy.model import Unhealthy


def _error(data) -> str:
    with pytest.raises(ConfigError) as exc:
        compile_policy(data)
    return str(exc.value)


def _with(path: list, value):
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def test_example_policy_loads_and_matches_the_json_schema(repo) -> None:
    policy = load_policy(repo / "examples/policy.yml")
    assert "failover_db" in policy.runbooks
    shipped = json.loads(
        resources.files("selfheal.policy").joinpath("policy.schema.json").read_text()
    )
    jsonschema.Draft202012Validator.check_schema(shipped)
    data = yaml.safe_load((repo / "examples/policy.yml").read_text())
    jsonschema.validate(data, shipped)


def test_base_fixture_is_valid() -> None:
    compile_policy(copy.deepcopy(BASE))


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ["runbooks", "failover", "risk"],
            "extreme",
            "runbooks.failover.risk: must be one of low, medium, high, critical",
        ),
        (["version"], 2, "version: must be 1"),
        (["routes", 0, "runbook"], "nope", "routes[0].runbook: unknown runbook 'nope'"),
        (["routes", 1, "colour"], "red", "routes[1].colour: unknown key"),
        (["limits", "max_unhealthy"], "lots", "limits.max_unhealthy: must be a count of hosts"),
        (["limits", "runs_per_target", "per"], "an hour", "limits.runs_per_target.per: must be"),
        (["services", "web", "dependencies"], ["ghost"], "services.web.dependencies[0]: unknown"),
        (["risk_tiers", "high", "mode"], "yolo", "risk_tiers.high.mode: must be one of auto"),
        (["runbooks", "restart", "cost"], "cheap", "runbooks.restart.cost: must be a number"),
        (
            ["risk_tiers", "high", "approval", "on_timeout"],
            "shrug",
            "risk_tiers.high.approval.on_timeout: must be one of deny, approve, manual",
        ),
    ],
)
def test_validation_errors_name_the_field_path(path, value, expected) -> None:
    assert expected in _error(_with(path, value))


def test_unknown_top_level_key() -> None:
    assert _error({**BASE, "extras": 1}).startswith("extras: unknown key")


def test_missing_required_key() -> None:
    data = copy.deepcopy(BASE)
    del data["runbooks"]["restart"]["risk"]
    assert _error(data) == "runbooks.restart.risk: is required"


def test_not_a_mapping() -> None:
    assert "(top level)" in _error(["version", 1])


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (
            {"name": "w", "kind": "deny", "schedule": "61 * * * *", "duration": "1h"},
            "windows[0].schedule: bad cron schedule: minute: 61 is outside 0-59",
        ),
        (
            {"name": "w", "kind": "deny", "schedule": "0 1 * *", "duration": "1h"},
            "windows[0].schedule: bad cron schedule: expected 5 fields",
        ),
        (
            {"name": "w", "kind": "deny", "schedule": "0 1 * * *"},
            "windows[0].duration: is required",
        ),
        (
            {"name": "w", "kind": "deny", "dates": ["2026-02-30"]},
            "windows[0].dates[0]: bad date",
        ),
        (
            {"name": "w", "kind": "deny", "dates": ["12-24"], "timezone": "Mars/Olympus"},
            "windows[0].timezone: unknown time zone 'Mars/Olympus'",
        ),
        ({"name": "w", "kind": "maybe", "dates": ["12-24"]}, "windows[0].kind: must be one of"),
        ({"name": "w", "kind": "deny"}, "windows[0]: needs a schedule"),
        (
            {"name": "w", "kind": "deny", "dates": ["12-24"], "services": ["ghost"]},
            "windows[0].services[0]: unknown service 'ghost'",
        ),
        (
            {"name": "w", "kind": "deny", "dates": ["12-24"], "risks": ["tiny"]},
            "windows[0].risks[0]: must be one of low, medium, high, critical",
        ),
    ],
)
def test_window_errors(window, expected) -> None:
    assert expected in _error({**BASE, "windows": [window]})


def test_route_needs_runbook_or_escalation_and_a_matcher() -> None:
    route = {"name": "r", "match": {"a": "b"}}
    assert "routes[0]: needs exactly one of runbook or escalate" in _error(
        {**BASE, "routes": [route]}
    )
    route = {"name": "r", "runbook": "restart"}
    assert "routes[0]: needs match or match_re" in _error({**BASE, "routes": [route]})
    route = {"name": "r", "match_re": {"a": "("}, "runbook": "restart"}
    assert "routes[0].match_re.a: bad regular expression" in _error({**BASE, "routes": [route]})


def test_runbook_needs_exactly_one_executor() -> None:
    data = _with(["runbooks", "restart", "job_template"], "x")
    assert "runbooks.restart: give playbook or job_template, not both" in _error(data)


def test_load_policy_reports_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("version: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(bad)


def test_default_tier_modes() -> None:
    data = copy.deepcopy(BASE)
    del data["risk_tiers"]
    policy = compile_policy(data)
    modes = {name: tier.mode for name, tier in policy.tiers.items()}
    assert modes == {"low": "auto", "medium": "auto", "high": "approval", "critical": "manual"}
    # medium: auto, with tighter limits than low
    low, medium = policy.tiers["low"].limits, policy.tiers["medium"].limits
    assert medium.runs_per_target.count < low.runs_per_target.count


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), (30, 30)]
)
def test_durations(text, seconds) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "1x", "h", "1h 30m", True])
def test_bad_durations(bad) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_max_unhealthy_count_and_percent() -> None:
    assert Unhealthy.parse("30%").exceeded(4, 10)
    assert not Unhealthy.parse("30%").exceeded(3, 10)
    assert Unhealthy.parse(2).exceeded(3, 100)
    assert not Unhealthy.parse(2).exceeded(2, 3)


def test_routes_first_match_wins_and_index_keeps_file_order() -> None:
    data = copy.deepcopy(BASE)
    data["routes"] = [
        {"name": "generic", "match_re": {"service": "web"}, "runbook": "clear_disk"},
        {
            "name": "specific",
            "match": {"alertname": "Down", "service": "web"},
            "runbook": "restart",
        },
    ]
    policy = compile_policy(data)
    assert policy.route_for({"alertname": "Down", "service": "web"}).name == "generic"
    data["routes"].reverse()
    policy = compile_policy(data)
    assert policy.route_for({"alertname": "Down", "service": "web"}).name == "specific"
    assert policy.route_for({"alertname": "Down", "service": "other"}) is None
