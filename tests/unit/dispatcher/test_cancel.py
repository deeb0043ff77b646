"""An operator cancels a run: POST /runs/{id}/cancel (operate scope, a reason required).

A queued run is canceled at once and frees its slot; a running one is stopped through
ansible-runner's cancel and ends as canceled, with no retry and no escalation.
"""

from __future__ import annotations

import yaml
from unit.dispatcher.helpers import (
    READ_TOKEN,
    TOKEN,
    am_alert,
    am_body,
    pause_playbook,
    policy_data,
    wait_for,
)

from selfheal.audit import Keyring, iter_records, verify

OPERATOR = "operator-token-0123456789"
LABELS = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}


def _tokens(env) -> list[dict]:
    return [
        *env["config"]["tokens"],
        {"name": "olga", "token": OPERATOR, "console_role": "operator"},
    ]


def test_operator_cancels_a_queued_run_and_frees_its_slot(make_dispatcher, env) -> None:
    d, client = make_dispatcher(workers=0, tokens=_tokens(env))  # nothing claims the run
    client.post("/alerts/alertmanager", am_body(am_alert(LABELS)), token=TOKEN)
    [run] = wait_for(lambda: d.store.list_runs(status="queued"))
    path = f"/runs/{run.id}/cancel"

    assert client.post(path, {"reason": "x"}, token=READ_TOKEN).status == 403  # a viewer
    missing = client.post(path, {}, token=OPERATOR)
    assert (missing.status, missing.json()["field"]) == (400, "reason")
    assert client.post("/runs/999/cancel", {"reason": "x"}, token=OPERATOR).status == 404
    assert client.get(path, token=OPERATOR).status == 405

    # a second incident for the same target waits for the first one's slot
    other = {**LABELS, "instance": "web-01:8080"}
    client.post("/alerts/alertmanager", am_body(am_alert(other)), token=TOKEN)

    def deferred() -> bool:
        newest = d.store.list_incidents(limit=1)[0]
        return newest.id != run.incident_id and any(
            "deferred" in str(r.reasons) for r in d.store.list_decisions(newest.id)
        )

    wait_for(deferred)
    assert len(d.store.list_runs()) == 1

    done = client.post(path, {"reason": "maintenance on web-01"}, token=OPERATOR)
    assert done.status == 200, done.body
    body = done.json()
    assert (body["status"], body["run"]["status"]) == ("canceled", "canceled")
    assert body["run"]["reason"] == "canceled by olga: maintenance on web-01"
    again = client.post(path, {"reason": "twice"}, token=OPERATOR)
    assert again.status == 409 and "already canceled" in again.json()["error"]
    assert d.metrics.runs.value(outcome="canceled") == 1

    # the slot is free: the waiting incident's run is queued now
    [queued] = wait_for(lambda: d.store.list_runs(status="queued"))
    assert (queued.target, queued.id) == ("web-01", run.id + 1)

    cancels = [r for r in iter_records(env["tmp"] / "audit") if r["action"] == "run.cancel"]
    assert len(cancels) == 1
    assert cancels[0]["actor"]["user"] == "olga"
    assert cancels[0]["data"]["reason"] == "maintenance on web-01"
    keyring = Keyring.load(env["tmp"] / "audit-keys.json", create=False)
    assert verify(env["tmp"] / "audit", keyring).ok


def test_operator_stops_a_running_run_without_retry(make_dispatcher, env) -> None:
    book = pause_playbook(env["tmp"] / "slow.yml", 60)
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(policy_data(str(book))))
    d, client = make_dispatcher(
        workers=1, tokens=_tokens(env), retry={"max_attempts": 3, "base_s": 0.05, "cap_s": 0.1}
    )
    client.post("/alerts/alertmanager", am_body(am_alert(LABELS)), token=TOKEN)
    [run] = wait_for(lambda: d.store.list_runs(status="running"), timeout=60)
    wait_for(lambda: run.id in d._cancel)  # the worker is inside the run

    stopping = client.post(f"/runs/{run.id}/cancel", {"reason": "wrong host"}, token=OPERATOR)
    assert stopping.status == 202, stopping.body
    assert stopping.json()["status"] == "canceling"
    [ended] = wait_for(lambda: d.store.list_runs(status="canceled"), timeout=30)
    assert (ended.id, ended.attempts) == (run.id, 1)
    assert ended.reason == "canceled by olga: wrong host"
    assert len(d.store.list_runs(incident_id=run.incident_id)) == 1  # not retried
    assert d.metrics.runs.value(outcome="failed") == 0
    assert d.metrics.escalations.value(why="failed") == 0
    assert d.store.get_incident(run.incident_id).status == "open"  # the operator's now
    finished = [r for r in iter_records(env["tmp"] / "audit") if r["action"] == "run.finish"]
    assert [r["outcome"] for r in finished] == ["canceled"]
