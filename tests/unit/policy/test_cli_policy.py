"""`selfheal policy validate|explain` and `selfheal freeze status`: output and exit codes."""

from __future__ import annotations

import json

import pytest

from selfheal.cli import ExitCode, main

WEBHOOK = {
    "receiver": "selfheal",
    "status": "firing",
    "commonLabels": {"alertname": "ServiceDown"},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ServiceDown", "service": "web", "instance": "web-03:9100"},
        },
    ],
}
INVENTORY = """
all:
  children:
    web:
      vars: {selfheal_managed: true}
      hosts: {web-01: {}, web-02: {}, web-03: {}}
    db:
      hosts:
        db-01: {selfheal_tags: [selfheal_managed]}
        db-02: {}
"""


@pytest.fixture
def files(tmp_path, repo):
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps(WEBHOOK))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    return {
        "policy": str(repo / "examples/policy.yml"),
        "alert": str(alert),
        "inventory": str(inventory),
        "tmp": tmp_path,
    }


def _explain(files, *extra, alert=None):
    if alert is not None:
        path = files["tmp"] / "one.json"
        path.write_text(json.dumps(alert))
    return main(
        [
            "policy",
            "explain",
            "--policy",
            files["policy"],
            "--alert",
            str(path) if alert is not None else files["alert"],
            "--inventory",
            files["inventory"],
            *extra,
        ]
    )


def test_validate_ok(files, capsys) -> None:
    assert main(["policy", "validate", files["policy"]]) == ExitCode.OK
    assert "valid (version 1)" in capsys.readouterr().out


def test_validate_reports_the_field_path(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\nrunbooks:\n  failover_db: {job_template: x, risk: extreme}\n")
    assert main(["policy", "validate", str(bad)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "runbooks.failover_db.risk: must be one of low, medium, high, critical" in err


def test_validate_missing_file(tmp_path, capsys) -> None:
    assert main(["policy", "validate", str(tmp_path / "nope.yml")]) == ExitCode.USAGE


def test_explain_allowed_table(files, capsys) -> None:
    assert _explain(files, "--at", "2026-11-25T15:00:00Z") == ExitCode.OK
    out = capsys.readouterr().out
    assert "decision  AUTO" in out and "target    web-03 (service web)" in out
    for code in ("route", "inventory", "compliance", "risk_tier", "blast_radius"):
        assert f"  {code} " in out


def test_explain_json_and_freeze_denial(files, capsys) -> None:
    alert = {"labels": {"alertname": "DiskFull", "severity": "critical", "instance": "web-01"}}
    # Friday 2026-11-27 19:00 New York: inside the friday-evening deny window (medium risk)
    code = _explain(files, "--at", "2026-11-28T00:00:00Z", "--format", "json", alert=alert)
    assert code == ExitCode.NEGATIVE
    payload = json.loads(capsys.readouterr().out)
    assert payload["mode"] == "deny"
    assert any(r["code"] == "freeze" for r in payload["reasons"])


def test_explain_refuses_unknown_targets(files, capsys) -> None:
    alert = {"labels": {"alertname": "ServiceDown", "service": "web", "instance": "attacker"}}
    assert _explain(files, "--at", "2026-11-25T15:00:00Z", alert=alert) == ExitCode.NEGATIVE
    assert "inventory" in capsys.readouterr().out


def test_explain_break_glass(files, capsys) -> None:
    alert = {"labels": {"alertname": "DiskFull", "severity": "critical", "instance": "web-01"}}
    code = _explain(
        files,
        "--at",
        "2026-11-28T00:00:00Z",
        "--break-glass",
        "INC-1",
        "--requester",
        "bob",
        alert=alert,
    )
    assert code == ExitCode.NEGATIVE
    out = capsys.readouterr().out
    assert "decision  APPROVAL" in out and "break-glass  INC-1" in out


def test_explain_bad_inputs(files, capsys) -> None:
    assert _explain(files, "--at", "yesterday") == ExitCode.USAGE
    assert "--at" in capsys.readouterr().err
    assert _explain(files, alert={"alerts": []}) == ExitCode.USAGE
    assert _explain(files, alert={"labels": {"alertname": 3}}) == ExitCode.USAGE


def test_explain_with_sqlite_state(files, capsys) -> None:
    db = files["tmp"] / "state.db"
    assert _explain(files, "--at", "2026-11-25T15:00:00Z", "--state", str(db)) == ExitCode.OK


def test_freeze_status(files, capsys) -> None:
    assert (
        main(["freeze", "status", "--policy", files["policy"], "--at", "2026-11-27T23:30:00Z"])
        == ExitCode.OK
    )
    out = capsys.readouterr().out
    assert "friday-evening  deny   OPEN" in out
    assert "closes 2026-11-30T14:00:00+00:00" in out
    assert "year-end        deny   closed  next opens 2026-12-24T05:00:00+00:00" in out


def test_freeze_status_json(files, capsys) -> None:
    assert (
        main(
            [
                "freeze",
                "status",
                "--policy",
                files["policy"],
                "--at",
                "2026-12-25T12:00:00Z",
                "--format",
                "json",
            ]
        )
        == ExitCode.OK
    )
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["windows"]}
    assert rows["year-end"]["active"] and rows["year-end"]["closes"] == "2026-12-27T05:00:00+00:00"
