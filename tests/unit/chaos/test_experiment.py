"""Experiment files: parsing, defaults, and errors that name the bad field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from selfheal.chaos.experiment import list_experiments, load_experiment, parse_experiment
from selfheal.errors import ConfigError

GOOD = {
    "version": 1,
    "title": "kill web",
    "steady_state": {"probes": [{"name": "web", "type": "http", "host": "lab1", "path": "/livez"}]},
    "method": [{"fault": "kill_service", "target": "lab1", "params": {"service": "web"}}],
    "heal": {"playbook": "heal_service.yml"},
    "expect": {"healing": [{"runbook": "heal_service", "host": "lab1", "within": 30}]},
}


def _with(path: str, value):
    data = copy.deepcopy(GOOD)
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()


def test_defaults() -> None:
    exp = parse_experiment(GOOD, "k")
    assert exp.detection.source == "auto" and exp.detection.timeout == 60
    assert exp.heal and exp.heal.after == "detection"
    assert exp.heal.vars == {"target": "lab1", "service": "web"}
    assert exp.steady_state_within == 60
    assert [s.label for s in exp.rollbacks] == ["kill_service on lab1"]
    assert exp.probes[0].tolerance == [200]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("title", _DELETE, "title"),
        ("surprise", 1, "surprise"),
        ("version", 2, "version"),
        ("steady_state.probes", [], "steady_state.probes"),
        ("steady_state.probes.0.type", "ping", "steady_state.probes[0].type"),
        ("steady_state.probes.0.path", "http://elsewhere/", "steady_state.probes[0].path"),
        ("steady_state.probes.0.tolerance", "ok", "steady_state.probes[0].tolerance"),
        ("steady_state.probes.0.url", "http://x/", "steady_state.probes[0].url"),
        ("method.0.fault", "rm_rf", "method[0].fault"),
        ("method.0.target", "", "method[0].target"),
        ("method.0.params", {"size_mb": 5}, "method[0].params"),
        ("method.0.params", {"service": "we b"}, "method[0].params.service"),
        ("heal.playbook", "../../etc/evil.yml", "heal.playbook"),
        ("heal.after", "later", "heal.after"),
        (
            "expect.healing",
            [{"runbook": "x", "host": "lab1", "within": -1}],
            "expect.healing[0].within",
        ),
        ("expect.steady_state_within", "soon", "expect.steady_state_within"),
        ("detection", {"source": "alertmanager"}, "detection.alert"),
    ],
)
def test_errors_name_the_field(path: str, value, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment(_with(path, value))
    assert err.value.path == field, str(err.value)


def test_caps_are_enforced() -> None:
    data = _with("method.0", {"fault": "hog_cpu", "target": "lab1", "params": {"duration": 600}})
    with pytest.raises(ConfigError, match=r"method\[0\]\.params\.duration: must be at most 120"):
        parse_experiment(data)
    data = _with("method.0", {"fault": "fill_disk", "target": "lab1", "params": {"size_mb": 4096}})
    with pytest.raises(ConfigError, match="at most 1024"):
        parse_experiment(data)


def test_check_against_the_inventory(inventory) -> None:
    parse_experiment(GOOD).check_against(inventory)
    with pytest.raises(ConfigError) as err:
        parse_experiment(_with("method.0.target", "db9")).check_against(inventory)
    assert err.value.path == "method[0].target"
    assert "not a host of the inventory" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_experiment(_with("method.0.params", {"service": "nginx"})).check_against(inventory)
    assert err.value.path == "method[0].params.service"
    stop_pg = _with("method.0", {"fault": "stop_postgres", "target": "lab1"})
    with pytest.raises(ConfigError, match="declares no service 'postgres'"):
        parse_experiment(stop_pg).check_against(inventory)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(_with("method.0.fault", "nope")))
    with pytest.raises(ConfigError, match=r"^bad\.yml: method\[0\]\.fault: unknown fault"):
        load_experiment(path)


def test_shipped_experiments_are_valid(inventory) -> None:
    paths = list_experiments()
    assert {p.stem for p in paths} >= {"kill_web_healed", "kill_web_unhealed"}
    for path in paths:
        exp = load_experiment(path)
        if path.stem != "stop_postgres":  # the test inventory runs no PostgreSQL
            exp.check_against(inventory)


def test_heal_playbook_must_exist(inventory) -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment(_with("heal.playbook", "no_such_runbook.yml")).check_against(inventory)
    assert err.value.path == "heal.playbook"
