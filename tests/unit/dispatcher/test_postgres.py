"""The dispatcher on the PostgreSQL store (skipped, with the reason, without a server)."""

from __future__ import annotations

from unit.dispatcher.helpers import READ_TOKEN, TOKEN, am_alert, am_body, wait_for
from unit.store.conftest import postgres_dsn, postgres_server  # noqa: F401  (fixtures)


def test_dispatcher_on_postgres(make_dispatcher, env, postgres_dsn) -> None:  # noqa: F811
    d, client = make_dispatcher(
        store=postgres_dsn, policy_state=str(env["tmp"] / "policy-state.db")
    )
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    for _ in range(3):
        r = client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
        assert r.status == 202
    [incident] = d.store.list_incidents()
    assert incident.count == 3
    [run] = wait_for(lambda: d.store.list_runs(incident_id=incident.id))
    assert run.target == "web-01"
    assert client.get("/readyz").status == 200
    view = client.get(f"/incidents/{incident.id}", token=READ_TOKEN).json()
    assert view["decisions"][0]["mode"] == "auto"
