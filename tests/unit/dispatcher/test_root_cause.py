"""Root-cause candidates attached to an incident: `POST /incidents/{id}/root-cause`, the
`selfheal traces isolate --incident` client, and what the candidates do (and must not do) to
the incident's pipeline and its postmortem draft."""

from __future__ import annotations

import pytest
from unit.dispatcher.helpers import (
    ALICE,
    READ_TOKEN,
    TOKEN,
    am_alert,
    am_body,
    serving,
    wait_for,
)
from unit.traces.otlp_builder import checkout_db_failure, write

from selfheal.cli import main
from selfheal.reporting.facts import gather
from selfheal.reporting.postmortem import build, to_markdown

CANDIDATE = {
    "service": "postgresql",
    "operation": "INSERT orders",
    "trace_id": "0" * 31 + "1",
    "count": 3,
    "share": 0.75,
}


def _open_incident(client, alertname="ServiceDown", **labels) -> int:
    labels = {"alertname": alertname, "service": "app", "host": "web-01", **labels}
    assert client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN).status == 202
    return 1


def test_candidates_join_the_incident_timeline_and_postmortem(make_dispatcher) -> None:
    d, client = make_dispatcher()
    incident_id = _open_incident(client)
    wait_for(lambda: d.store.list_decisions(incident_id))
    body = {"source": "failing traces", "candidates": [CANDIDATE]}
    r = client.post(f"/incidents/{incident_id}/root-cause", body, token=TOKEN)
    assert r.status == 201, r.body
    shown = client.get(f"/incidents/{incident_id}", token=READ_TOKEN).json()
    [note] = [x for x in shown["decisions"] if x["mode"] == "root_cause"]
    assert note["reasons"][0]["service"] == "postgresql"
    assert note["reasons"][0]["code"] == "root_cause_candidate"
    facts = gather(d.store, d.store.get_incident(incident_id))
    text = to_markdown(build(facts))
    causes = text.split("Root-cause candidates", 1)[1]
    assert "failing traces point at postgresql (INSERT orders): 3 of its traces" in causes


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"candidates": []}, "candidates"),
        ({"candidates": [{"operation": "x"}]}, "candidates[0].service"),
        ({"candidates": [{"service": "db", "count": 0}]}, "candidates[0].count"),
        ({"candidates": [{"service": "db", "share": 2}]}, "candidates[0].share"),
        ({"candidates": [{"service": "db", "host": "evil"}]}, "candidates[0].host"),
        ({"candidates": [{"service": "x" * 201}]}, "candidates[0].service"),
        ({"candidates": [CANDIDATE], "playbook": "rm.yml"}, "playbook"),
    ],
)
def test_bad_candidates_are_refused_naming_the_field(make_dispatcher, body, field) -> None:
    d, client = make_dispatcher()
    incident_id = _open_incident(client)
    r = client.post(f"/incidents/{incident_id}/root-cause", body, token=TOKEN)
    assert r.status == 422 and r.json()["field"] == field
    assert all(x.mode != "root_cause" for x in d.store.list_decisions(incident_id))


def test_auth_and_unknown_incident(make_dispatcher) -> None:
    _, client = make_dispatcher()
    body = {"candidates": [CANDIDATE]}
    assert client.post("/incidents/1/root-cause", body).status == 401
    assert client.post("/incidents/1/root-cause", body, token=READ_TOKEN).status == 403
    assert client.post("/incidents/99/root-cause", body, token=TOKEN).status == 404
    assert client.get("/incidents/1/root-cause", token=TOKEN).status == 405


def test_a_candidate_does_not_disturb_a_pending_approval_after_restart(make_dispatcher) -> None:
    """Recovery reads an incident's last pipeline decision; a note attached after the
    approval request must not hide that request from a restarted dispatcher."""
    d, client = make_dispatcher()
    _open_incident(client, alertname="OpsRisky")
    wait_for(lambda: d.pending_approvals())
    r = client.post("/incidents/1/root-cause", {"candidates": [CANDIDATE]}, token=TOKEN)
    assert r.status == 201
    d.stop()
    d2, client2 = make_dispatcher()
    assert [p["request_id"] for p in d2.pending_approvals()] == ["incident-1"]
    assert client2.post("/approvals/incident-1/approve", token=ALICE).status == 200
    wait_for(lambda: d2.store.list_runs(incident_id=1))


def test_traces_cli_attaches_the_top_candidates(make_dispatcher, tmp_path, capsys) -> None:
    d, client = make_dispatcher()
    _open_incident(client)
    with serving(d) as url:
        trace = write(tmp_path / "t.json", checkout_db_failure())
        args = ["traces", "isolate", str(trace), "--incident", "1", "--url", url]
        assert main([*args, "--token", TOKEN]) == 1  # 1: candidates found
        assert "attached 1 candidate(s) to incident 1" in capsys.readouterr().err
        [note] = [x for x in d.store.list_decisions(1) if x.mode == "root_cause"]
        assert note.reasons[0]["service"] == "postgresql"
        assert main([*args, "--token", READ_TOKEN]) == 2  # the dispatcher refused (403)
        assert "403" in capsys.readouterr().err
