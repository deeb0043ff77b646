"""The pipeline: label safety, policy gate, correlation, approvals, cancellation, storms."""

from __future__ import annotations

import pytest
from unit.dispatcher.helpers import ALICE, BOB, READ_TOKEN, TOKEN, am_alert, am_body, wait_for

from selfheal.audit import Keyring, iter_records, verify


def _post(client, *alerts):
    r = client.post("/alerts/alertmanager", am_body(*alerts), token=TOKEN)
    assert r.status == 202, r.body
    return r.json()["results"]


def _decided(d, incident_id):
    return wait_for(lambda: d.store.list_decisions(incident_id))


def _codes(decision) -> set[str]:
    return {r["code"] for r in decision.reasons}


@pytest.mark.parametrize(
    ("labels", "code", "text"),
    [
        ({"host": "{{ lookup('pipe', 'id') }}"}, "unsafe_label", "template syntax"),
        ({"host": "localhost", "note": "{% raw %}x"}, "unsafe_label", "template syntax"),
        ({"host": "localhost; rm -rf /"}, "unsafe_label", "shell metacharacters"),
        ({"host": "$(reboot)"}, "unsafe_label", "shell metacharacters"),
        ({"host": "localhost", "file": "../../etc/passwd"}, "unsafe_label", "path traversal"),
        ({"host": "evil.example.com"}, "inventory", "not in the inventory"),
        ({"host": "db-01"}, "inventory", "not a host of service"),
    ],
)
def test_hostile_labels_run_nothing_and_say_why(make_dispatcher, env, labels, code, text) -> None:
    d, client = make_dispatcher(workers=1)
    [result] = _post(client, am_alert({"alertname": "ServiceDown", "service": "app", **labels}))
    [decision] = _decided(d, result["incident_id"])
    assert decision.mode == "deny"
    assert code in _codes(decision)
    assert any(text in r["message"] for r in decision.reasons)
    assert d.store.list_runs() == []
    d.stop()
    assert not env["marker"].exists()
    trail = [r for r in iter_records(env["tmp"] / "audit") if r["action"] == "dispatcher.decision"]
    assert trail and trail[-1]["decision"] == "deny"
    assert any(text in reason for reason in trail[-1]["reasons"])
    keyring = Keyring.load(env["tmp"] / "audit-keys.json", create=False)
    assert verify(env["tmp"] / "audit", keyring).ok


def test_auto_decision_enqueues_one_run_with_safe_values(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01"}))
    [decision] = _decided(d, r["incident_id"])
    assert decision.mode == "auto"
    [run] = d.store.list_runs(incident_id=r["incident_id"])
    assert (run.runbook, run.target, run.status) == ("heal", "web-01", "queued")
    # the duplicate adds nothing
    _post(client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01"}))
    assert len(d.store.list_runs()) == 1


def test_resolved_before_start_cancels_the_queued_run(make_dispatcher) -> None:
    d, client = make_dispatcher()
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    [r] = _post(client, am_alert(labels))
    wait_for(lambda: d.store.list_runs(incident_id=r["incident_id"]))
    _post(client, am_alert(labels, status="resolved"))
    [run] = wait_for(lambda: d.store.list_runs(status="canceled"))
    assert run.reason == "incident resolved before the run"
    assert d.store.get_incident(r["incident_id"]).status == "resolved"
    assert d.state.locks(run.created_at) == []  # the slot is free again


def test_dependency_incident_folds_the_dependant(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [db] = _post(client, am_alert({"alertname": "ServiceDown", "service": "db", "host": "db-01"}))
    _decided(d, db["incident_id"])
    [app] = _post(
        client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-02"})
    )
    [decision] = _decided(d, app["incident_id"])
    assert decision.mode == "folded"
    assert "correlated" in _codes(decision)
    child = d.store.get_incident(app["incident_id"])
    assert child.parent_id == db["incident_id"]
    assert d.store.list_runs(incident_id=app["incident_id"]) == []


def test_approval_flow_identity_from_token(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "OpsRisky", "host": "web-01"}))
    [decision] = _decided(d, r["incident_id"])
    assert decision.mode == "approval"
    rid = f"incident-{r['incident_id']}"
    pending = client.get("/approvals", token=READ_TOKEN).json()["approvals"]
    assert [p["request_id"] for p in pending] == [rid]
    assert client.post(f"/approvals/{rid}/approve", token=READ_TOKEN).status == 403  # scope
    assert client.post(f"/approvals/{rid}/approve", token=BOB).status == 403  # not an approver
    assert client.post("/approvals/incident-999/approve", token=ALICE).status == 404
    ok = client.post(f"/approvals/{rid}/approve", token=ALICE)
    assert ok.status == 200 and ok.json()["status"] == "approved"
    [run] = wait_for(lambda: d.store.list_runs(incident_id=r["incident_id"]))
    assert run.target == "web-01"
    assert [a.approver for a in d.store.list_approvals(rid)] == ["alice"]
    wait_for(lambda: d.store.list_decisions(r["incident_id"])[-1].mode == "approved")
    assert client.post(f"/approvals/{rid}/approve", token=ALICE).status == 409


def test_approval_denied(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "OpsRisky", "host": "web-01"}))
    _decided(d, r["incident_id"])
    rid = f"incident-{r['incident_id']}"
    assert client.post(f"/approvals/{rid}/deny", token=BOB).status == 403
    denied = client.post(f"/approvals/{rid}/deny", token=ALICE)
    assert denied.status == 200 and denied.json()["status"] == "denied"
    assert d.store.list_decisions(r["incident_id"])[-1].mode == "denied"
    assert [a.verdict for a in d.store.list_approvals(rid)] == ["deny"]
    assert d.store.list_runs() == []


def test_critical_runbook_is_manual_and_escalated(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "Critical", "host": "web-01"}))
    [decision] = _decided(d, r["incident_id"])
    assert decision.mode == "manual"
    wait_for(lambda: d.metrics.escalations.value(why="manual") == 1)
    assert d.store.list_runs() == []


def test_no_route_is_left_to_a_human(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "Unknown", "host": "web-01"}))
    [decision] = _decided(d, r["incident_id"])
    assert decision.mode == "manual" and "no_route" in _codes(decision)


def test_storm_makes_one_incident_per_fingerprint_and_runs_within_budget(make_dispatcher) -> None:
    """1,000 copies of one alert and 100 distinct ones: 101 incidents; the policy's budgets
    (3 runs per target per hour, 5 per runbook, 1 at a time per target) cap the runs."""
    d, client = make_dispatcher()
    same = am_alert({"alertname": "ServiceDown", "service": "app", "host": "localhost"})
    for _ in range(10):
        _post(client, *([same] * 100))
    for i in range(100):
        _post(
            client,
            am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01", "n": str(i)}),
        )
    assert len(d.store.list_incidents(limit=1000)) == 101
    assert d.store.get_incident(1).count == 1000
    wait_for(lambda: all(d.store.list_decisions(i.id) for i in d.store.list_incidents(limit=1000)))
    runs = d.store.list_runs()
    per_target: dict[str, int] = {}
    for run in runs:
        per_target[run.target] = per_target.get(run.target, 0) + 1
    assert len(runs) <= 5 and all(n <= 3 for n in per_target.values()), per_target


def test_incident_view_shows_decisions_and_runs(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01"}))
    wait_for(lambda: d.store.list_runs(incident_id=r["incident_id"]))
    view = client.get(f"/incidents/{r['incident_id']}", token=READ_TOKEN).json()
    assert view["decisions"][0]["mode"] == "auto"
    assert view["runs"][0]["runbook"] == "heal"
    run = client.get(f"/runs/{view['runs'][0]['id']}", token=READ_TOKEN).json()
    assert run["target"] == "web-01"


def test_approval_is_checked_again_against_the_policy(make_dispatcher) -> None:
    """Approved, but the target's run budget was used up meanwhile: nothing runs."""
    from datetime import UTC, datetime

    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "OpsRisky", "host": "web-01"}))
    _decided(d, r["incident_id"])
    for i in range(3):  # runs_per_target: 3 per hour
        d.state.record_run(
            request_id=f"other-{i}",
            runbook="heal",
            target="web-01",
            service="ops",
            at=datetime.now(UTC),
        )
    rid = f"incident-{r['incident_id']}"
    assert client.post(f"/approvals/{rid}/approve", token=ALICE).status == 200
    last = wait_for(
        lambda: (ds := d.store.list_decisions(r["incident_id"]))[-1].mode != "approval" and ds[-1]
    )
    assert last.mode == "denied"
    assert "budget" in _codes(last)
    assert d.store.list_runs() == []


def test_root_arriving_later_adopts_its_dependants(make_dispatcher) -> None:
    d, client = make_dispatcher()  # no workers: the dependant's run stays queued
    [app] = _post(
        client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-02"})
    )
    wait_for(lambda: d.store.list_runs(incident_id=app["incident_id"]))
    [db] = _post(client, am_alert({"alertname": "ServiceDown", "service": "db", "host": "db-01"}))
    _decided(d, db["incident_id"])
    wait_for(lambda: d.store.get_incident(app["incident_id"]).parent_id == db["incident_id"])
    [run] = d.store.list_runs(incident_id=app["incident_id"])
    assert run.status == "canceled"
    assert d.store.list_decisions(app["incident_id"])[-1].mode == "folded"
    assert [r.target for r in d.store.list_runs(status="queued")] == ["db-01"]
