"""The heal loop's guarantees under hostile input and mass outages, each from a way it broke:

- a pipeline step that fails on one incident quarantines that incident and never stops the
  decisions of the others; a row the store cannot read does not stop a start;
- blast radius counts hosts with open incidents, so a mass outage in one notification
  starts no remediation, is escalated once, and automation resumes by itself once the
  service is back under its limit;
- only an incident that passed what a remediation needs (a known host, safe labels) may fold
  others, and folded incidents are decided again when their root resolves;
- a resolved notification from an earlier episode does not close the current one;
- the identity that raised a request cannot approve it.
"""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from unit.dispatcher.helpers import (
    ALICE,
    READ_TOKEN,
    TOKEN,
    am_alert,
    am_body,
    policy_data,
    wait_for,
)

from selfheal.audit import Keyring, iter_records, verify
from selfheal.dispatcher import core


def _post(client, *alerts, token=TOKEN):
    r = client.post("/alerts/alertmanager", am_body(*alerts), token=token)
    assert r.status == 202, r.body
    return r.json()["results"]


def _modes(d, incident_id) -> list[str]:
    return [x.mode for x in d.store.list_decisions(incident_id)]


def _trail(env, action):
    return [r for r in iter_records(env["tmp"] / "audit") if r["action"] == action]


def _verified(env) -> bool:
    keyring = Keyring.load(env["tmp"] / "audit-keys.json", create=False)
    return verify(env["tmp"] / "audit", keyring).ok


# -- one incident's failure is that incident's alone ----------------------------------------


def test_a_step_failing_on_one_incident_quarantines_it_and_the_rest_heal(
    make_dispatcher, env, monkeypatch
) -> None:
    """Both alerts arrive in one notification; deciding the first one raises. Before, the
    exception ended the whole batch's step: the second incident was never decided."""
    real = core.evaluate

    def evaluate(policy, request, state, now):
        if request.labels.get("poison"):
            raise ValueError("a value this code cannot handle")
        return real(policy, request, state, now)

    monkeypatch.setattr(core, "evaluate", evaluate)
    d, client = make_dispatcher()
    bad, good = _post(
        client,
        am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01", "poison": "1"}),
        am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-02"}),
    )
    wait_for(lambda: d.store.list_runs(incident_id=good["incident_id"]))
    assert _modes(d, good["incident_id"]) == ["auto"]
    view = wait_for(
        lambda: (
            (v := client.get(f"/incidents/{bad['incident_id']}", token=READ_TOKEN).json())[
                "quarantined_at"
            ]
            and v
        )
    )
    assert "ValueError" in view["quarantine_reason"]
    assert [x["mode"] for x in view["decisions"]] == ["quarantined"]
    assert d.store.list_runs(incident_id=bad["incident_id"]) == []
    assert client.get("/readyz").status == 200  # one quarantined incident is not an outage
    [record] = _trail(env, "incident.quarantined")
    assert record["incident_id"] == str(bad["incident_id"])
    # later alerts are still decided
    [later] = _post(
        client, am_alert({"alertname": "ServiceDown", "service": "db", "host": "db-01"})
    )
    wait_for(lambda: _modes(d, later["incident_id"]) == ["auto"])
    # released by an operator once fixed: decided like any other
    monkeypatch.setattr(core, "evaluate", real)
    assert client.post(f"/incidents/{bad['incident_id']}/release", token=READ_TOKEN).status == 403
    d.stop()
    assert _verified(env)


def test_releasing_a_quarantined_incident_decides_it_again(make_dispatcher, env) -> None:
    d, client = make_dispatcher(
        tokens=[
            {"name": "alertmanager", "token": TOKEN, "scopes": ["intake"]},
            {"name": "oncall", "token": ALICE, "scopes": ["read", "operate"]},
        ]
    )
    [r] = _post(client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01"}))
    wait_for(lambda: _modes(d, r["incident_id"]))
    assert client.post(f"/incidents/{r['incident_id']}/release", token=ALICE).status == 409
    d.store.quarantine(r["incident_id"], "set aside by hand")
    released = client.post(f"/incidents/{r['incident_id']}/release", token=ALICE)
    assert released.status == 200, released.body
    assert released.json()["incident"]["quarantined_at"] is None
    assert [x["actor"]["user"] for x in _trail(env, "incident.released")] == ["oncall"]


def test_readiness_reports_a_failing_pipeline(make_dispatcher, monkeypatch) -> None:
    """Before, /readyz stayed 200 while every pipeline step failed."""
    d, client = make_dispatcher()
    assert client.get("/readyz").status == 200

    def broken() -> None:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(d, "_reevaluate_due", broken)
    wait_for(lambda: client.get("/readyz").status == 503, timeout=10)
    assert "the pipeline is failing" in client.get("/readyz").body.decode()
    monkeypatch.undo()
    wait_for(lambda: client.get("/readyz").status == 200, timeout=10)


def test_a_row_the_store_cannot_read_is_quarantined_and_the_start_goes_on(
    make_dispatcher, env
) -> None:
    """An unreadable row (written by an older version, or by hand) used to make every
    listing fail and `selfheal serve` exit at startup."""
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01"}))
    wait_for(lambda: _modes(d, r["incident_id"]))
    d.stop()
    db = sqlite3.connect(env["config"]["store"])
    with db:
        db.execute(
            "INSERT INTO incidents (fingerprint, source, name, labels, status, count, opened_at,"
            " last_seen) VALUES ('x', 'alertmanager', 'Broken', '{}', 'open', 1, 'not a time',"
            " 'not a time')"
        )
        # what an older selfheal wrote for the year 2: readable again
        db.execute(
            "UPDATE incidents SET starts_at = '2-01-01T00:00:00.000000Z' WHERE id = ?",
            (r["incident_id"],),
        )
    db.close()
    d2, client2 = make_dispatcher()
    listing = client2.get("/incidents", token=READ_TOKEN)
    assert listing.status == 200
    assert [i["id"] for i in listing.json()["incidents"]] == [r["incident_id"]]
    assert listing.json()["incidents"][0]["starts_at"] == "0002-01-01T00:00:00Z"
    broken = r["incident_id"] + 1
    wait_for(lambda: _modes(d2, broken) == ["quarantined"])
    [later] = _post(
        client2, am_alert({"alertname": "ServiceDown", "service": "db", "host": "db-01"})
    )
    wait_for(lambda: _modes(d2, later["incident_id"]) == ["auto"])


# -- blast radius ---------------------------------------------------------------------------


FLEET = [f"f{i:02d}" for i in range(20)]


@pytest.fixture
def fleet(env):
    data = policy_data(
        env["config"]["policy"],
        max_unhealthy="30%",
        storm_cooldown="0s",
        max_concurrent=50,
        runs_per_runbook={"count": 100, "per": "1h"},
    )
    data["runbooks"]["heal"]["playbook"] = str(env["tmp"] / "heal.yml")
    data["services"]["fleet"] = {"hosts": FLEET}
    data["routes"].insert(
        0,
        {
            "name": "fleet-down",
            "match": {"alertname": "ServiceDown", "service": "fleet"},
            "runbook": "heal",
            "target_label": "host",
        },
    )
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(data))
    inventory = {"all": {"hosts": {h: {"ansible_connection": "local"} for h in FLEET}}}
    (env["tmp"] / "inventory.yml").write_text(yaml.safe_dump(inventory))
    return [{"alertname": "ServiceDown", "service": "fleet", "host": h} for h in FLEET]


def test_a_mass_outage_in_one_notification_starts_nothing_and_escalates_once(
    make_dispatcher, env, fleet
) -> None:
    """20 of 20 hosts down with max_unhealthy 30%: before, 6 remediations started (only hosts
    already in remediation counted). Once 15 recover, the other 5 heal by themselves."""
    d, client = make_dispatcher()
    results = _post(client, *[am_alert(labels) for labels in fleet])
    ids = [r["incident_id"] for r in results]
    wait_for(lambda: all(_modes(d, i) for i in ids))
    assert d.store.list_runs() == []
    storms = [r for r in _trail(env, "dispatcher.escalate") if r["data"]["why"] == "storm"]
    assert len(storms) == 1
    assert "20/20 hosts" in storms[0]["reasons"][0]
    assert len(_trail(env, "storm.start")) == 1
    assert all(
        "blast_radius" in {x["code"] for x in d.store.list_decisions(i)[-1].reasons} for i in ids
    )
    # 15 recover; 5 of 20 (25%) is under the limit: automation resumes without anyone
    _post(client, *[am_alert(labels, status="resolved") for labels in fleet[:15]])
    queued = wait_for(lambda: len(runs := d.store.list_runs()) == 5 and runs)
    assert sorted(run.target for run in queued) == FLEET[15:]
    wait_for(lambda: _trail(env, "storm.end"))
    assert len([r for r in _trail(env, "dispatcher.escalate") if r["data"]["why"] == "storm"]) == 1


def test_blast_radius_counts_open_incidents_across_notifications(
    make_dispatcher, env, fleet
) -> None:
    """Alerts trickling in one at a time, one remediation at a time (max_concurrent 1): the
    hosts waiting for a slot are down too. Before, only the one in remediation counted, and
    the 7th host down (35%) still waited for a slot to be remediated."""
    data = yaml.safe_load((env["tmp"] / "policy.yml").read_text())
    data["limits"]["max_concurrent"] = 1
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(data))
    d, client = make_dispatcher()
    for labels in fleet[:6]:
        [r] = _post(client, am_alert(labels))
        wait_for(lambda r=r: _modes(d, r["incident_id"]))
    assert len(d.store.list_runs()) == 1
    [seventh] = _post(client, am_alert(fleet[6]))
    wait_for(lambda: _modes(d, seventh["incident_id"]))
    [decision] = d.store.list_decisions(seventh["incident_id"])
    radius = [x for x in decision.reasons if x["code"] == "blast_radius"]
    assert radius and radius[0]["effect"] == "deny", decision.reasons
    assert "7/20 hosts" in radius[0]["message"]
    assert len(d.store.list_runs()) == 1


# -- correlation trusts only what a remediation would ----------------------------------------


def test_a_made_up_alert_cannot_fold_a_real_one(make_dispatcher) -> None:
    """`app` depends on `db`. Before, an alert naming service db on a host that does not
    exist folded the real app incident under it, and nothing was remediated."""
    d, client = make_dispatcher()
    real, fake = _post(
        client,
        am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-01"}),
        am_alert({"alertname": "ServiceDown", "service": "db", "host": "nowhere"}),
    )
    wait_for(lambda: _modes(d, real["incident_id"]) and _modes(d, fake["incident_id"]))
    assert _modes(d, real["incident_id"]) == ["auto"]
    assert d.store.get_incident(real["incident_id"]).parent_id is None
    assert [r.target for r in d.store.list_runs()] == ["web-01"]
    assert _modes(d, fake["incident_id"]) == ["deny"]
    # nor can a made-up one adopt a real incident that arrived first
    [app2] = _post(
        client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-02"})
    )
    wait_for(lambda: _modes(d, app2["incident_id"]))
    [fake2] = _post(
        client, am_alert({"alertname": "ServiceDown", "service": "db", "host": "ghost"})
    )
    wait_for(lambda: _modes(d, fake2["incident_id"]))
    assert d.store.get_incident(app2["incident_id"]).parent_id is None
    assert _modes(d, app2["incident_id"]) == ["auto"]


def test_folded_incidents_are_decided_again_when_their_root_resolves(make_dispatcher) -> None:
    d, client = make_dispatcher()
    db_labels = {"alertname": "ServiceDown", "service": "db", "host": "db-01"}
    [db] = _post(client, am_alert(db_labels))
    wait_for(lambda: _modes(d, db["incident_id"]))
    [app] = _post(
        client, am_alert({"alertname": "ServiceDown", "service": "app", "host": "web-02"})
    )
    wait_for(lambda: _modes(d, app["incident_id"]) == ["folded"])
    _post(client, am_alert(db_labels, status="resolved"))
    wait_for(lambda: _modes(d, app["incident_id"]) == ["folded", "unfolded", "auto"])
    incident = d.store.get_incident(app["incident_id"])
    assert incident.parent_id is None and "resolved" in incident.fold_reason
    assert [r.target for r in d.store.list_runs(incident_id=app["incident_id"])] == ["web-02"]


# -- resolves belong to their episode --------------------------------------------------------


def test_an_old_resolve_does_not_close_a_new_outage(make_dispatcher, env) -> None:
    """firing 10:00 -> resolved 10:05 -> firing again 21:00 -> the 10:05 resolve re-sent.
    Before, the new incident was resolved (before it began) and its queued run canceled."""
    d, client = make_dispatcher()
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    first = am_alert(labels, starts="2026-11-26T10:00:00Z")
    resolve = {**first, "status": "resolved", "endsAt": "2026-11-26T10:05:00Z"}
    [a] = _post(client, first)
    wait_for(lambda: d.store.list_runs(incident_id=a["incident_id"]))
    [r] = _post(client, resolve)
    assert r["decision"] == "resolved"
    [b] = _post(client, am_alert(labels, starts="2026-11-26T21:00:00Z"))
    assert b["decision"] == "reopened"
    wait_for(lambda: d.store.list_runs(incident_id=b["incident_id"]))
    [replayed] = _post(client, resolve)
    assert replayed["decision"] == "stale"
    wait_for(lambda: _trail(env, "alert.stale_resolve"))
    incident = d.store.get_incident(b["incident_id"])
    assert (incident.status, incident.resolved_at) == ("open", None)
    [run] = d.store.list_runs(incident_id=b["incident_id"])
    assert run.status == "queued"
    # its own resolve still closes it
    [own] = _post(
        client, {**resolve, "startsAt": "2026-11-26T21:00:00Z", "endsAt": "2026-11-26T21:30:00Z"}
    )
    assert own["decision"] == "resolved"


# -- approvals have requesters -----------------------------------------------------------------


def test_the_identity_that_raised_a_request_cannot_approve_it(make_dispatcher) -> None:
    """A token with intake and approve posts an approval-tier alert, then approves it: before,
    200 and the vote counted (the request recorded no requester)."""
    both = "alice-both-scopes-0123456789"
    d, client = make_dispatcher(
        tokens=[
            {"name": "alice", "token": both, "scopes": ["intake", "read", "approve"]},
            {"name": "bob", "token": ALICE, "scopes": ["read", "approve"], "roles": ["sre-leads"]},
        ]
    )
    [r] = _post(client, am_alert({"alertname": "OpsRisky", "host": "web-01"}), token=both)
    wait_for(lambda: _modes(d, r["incident_id"]) == ["approval"])
    rid = f"incident-{r['incident_id']}"
    assert d.state.load_approval(rid)["requester"] == "alice"
    refused = client.post(f"/approvals/{rid}/approve", token=both)
    assert refused.status == 403
    assert "self_approval" in {x["code"] for x in refused.json()["reasons"]}
    assert d.store.list_runs() == []
    assert client.post(f"/approvals/{rid}/approve", token=ALICE).status == 200  # someone else
    wait_for(lambda: d.store.list_runs(incident_id=r["incident_id"]))


def test_requests_from_signed_or_open_sources_name_the_source(make_dispatcher) -> None:
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "OpsRisky", "host": "web-01"}))
    wait_for(lambda: _modes(d, r["incident_id"]) == ["approval"])
    record = d.state.load_approval(f"incident-{r['incident_id']}")
    assert record["requester"] in ("alertmanager", "source:alertmanager")


def test_an_incident_folded_while_its_approval_is_pending_is_not_run_by_a_late_vote(
    make_dispatcher,
) -> None:
    """Found by the pipeline model: the fold left the approval open, and a later approval
    remediated the folded symptom."""
    d, client = make_dispatcher()
    data = yaml.safe_load(d.policy_path.read_text())
    data["routes"].insert(
        0,
        {
            "name": "app-risky",
            "match": {"alertname": "AppRisky", "service": "app"},
            "runbook": "risky",
            "target_label": "host",
        },
    )
    d.policy_path.write_text(yaml.safe_dump(data))
    d.reload_policy()
    [symptom] = _post(
        client, am_alert({"alertname": "AppRisky", "service": "app", "host": "web-02"})
    )
    wait_for(lambda: _modes(d, symptom["incident_id"]) == ["approval"])
    [root] = _post(client, am_alert({"alertname": "ServiceDown", "service": "db", "host": "db-01"}))
    wait_for(lambda: _modes(d, symptom["incident_id"]) == ["approval", "folded"])
    assert d.store.get_incident(symptom["incident_id"]).parent_id == root["incident_id"]
    rid = f"incident-{symptom['incident_id']}"
    assert d.state.load_approval(rid)["status"] == "withdrawn"
    assert client.post(f"/approvals/{rid}/approve", token=ALICE).status == 409
    assert d.store.list_runs(incident_id=symptom["incident_id"]) == []


def test_a_vote_already_copied_to_the_store_still_counts(make_dispatcher) -> None:
    """Found by the pipeline model's soak: a request id asked again (its incident decided
    afresh after an unfold) met the store's copy of an earlier round's vote by the same
    approver, and the vote answered 500."""
    d, client = make_dispatcher()
    [r] = _post(client, am_alert({"alertname": "OpsRisky", "host": "web-01"}))
    wait_for(lambda: _modes(d, r["incident_id"]) == ["approval"])
    rid = f"incident-{r['incident_id']}"
    d.store.record_approval(rid, "alice", "-", "approve")  # an earlier round's vote
    vote = client.post(f"/approvals/{rid}/approve", token=ALICE)
    assert vote.status == 200, vote.body
    wait_for(lambda: d.store.list_runs(incident_id=r["incident_id"]))
