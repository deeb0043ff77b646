"""`selfheal chaos` without a lab: list, validate, history, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from selfheal.chaos import history
from selfheal.cli import main


def test_list_json(capsys) -> None:
    assert main(["chaos", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {f["name"] for f in data["faults"]}
    assert names == {
        "kill_service",
        "stop_service",
        "crashloop_service",
        "fill_disk",
        "hog_cpu",
        "netem",
        "partition",
        "stop_postgres",
        "expire_cert",
    }
    assert {"kill_web_healed", "kill_web_unhealed"} <= {e["name"] for e in data["experiments"]}
    assert not [e for e in data["experiments"] if "error" in e]


def test_list_table(capsys) -> None:
    assert main(["chaos", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FAULTS") and "EXPERIMENTS" in out and "kill_web_healed" in out


def test_validate_names_the_bad_field(inventory, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "title": "x",
                "steady_state": {"probes": [{"name": "p", "type": "http", "host": "lab1"}]},
                "method": [{"fault": "kill_service", "target": "web.example.com"}],
            }
        )
    )
    code = main(
        ["chaos", "validate", "--inventory", str(inventory.path), str(bad), "kill_web_healed"]
    )
    out = capsys.readouterr().out
    assert code == 2
    assert "bad.yml: method[0].target: 'web.example.com' is not a host of the inventory" in out
    assert "kill_web_healed: ok" in out


def test_run_refuses_a_target_outside_the_inventory(inventory, tmp_path: Path, capsys) -> None:
    exp = tmp_path / "e.yml"
    exp.write_text(
        yaml.safe_dump(
            {
                "title": "x",
                "steady_state": {"probes": [{"name": "p", "type": "http", "host": "lab1"}]},
                "method": [{"fault": "fill_disk", "target": "localhost"}],
            }
        )
    )
    assert main(["chaos", "run", str(exp), "--inventory", str(inventory.path)]) == 2
    assert "method[0].target: 'localhost' is not a host" in capsys.readouterr().err


def test_inject_refuses_unknown_targets_and_params(inventory, capsys) -> None:
    inv = str(inventory.path)
    assert main(["chaos", "inject", "hog_cpu", "--target", "db1", "--inventory", inv]) == 2
    assert "--target: 'db1' is not a host" in capsys.readouterr().err
    code = main(
        [
            "chaos",
            "inject",
            "hog_cpu",
            "--target",
            "lab1",
            "--set",
            "duration=999",
            "--inventory",
            inv,
        ]
    )
    assert code == 2 and "at most 120" in capsys.readouterr().err


def test_not_a_lab_inventory(tmp_path: Path, capsys) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"prod1": {}}}}))
    assert main(["chaos", "history", "--inventory", str(inv)]) == 2
    assert "not a selfheal lab inventory" in capsys.readouterr().err


def test_history_table(inventory, capsys) -> None:
    path = history.history_path(inventory.chaos_dir)
    assert main(["chaos", "history", "--inventory", str(inventory.path)]) == 0
    assert "no chaos runs recorded" in capsys.readouterr().out
    history.append(
        path,
        {
            "experiment": "kill",
            "status": "failed",
            "mttd": 0.5,
            "missed": ["steady state again within 15s"],
            "started_at": 0,
        },
    )
    assert main(["chaos", "history", "--inventory", str(inventory.path)]) == 0
    out = capsys.readouterr().out
    assert "kill" in out and "0.50s" in out and "steady state again" in out
    assert main(["chaos", "history", "--json", "--inventory", str(inventory.path)]) == 0
    assert json.loads(capsys.readouterr().out)["trends"][0]["runs"] == 1
