"""Reloading the policy without a restart: `POST /admin/reload` (admin scope) and SIGHUP on a
real `selfheal serve` process. A valid file is swapped in and audited with both digests; a
broken one is refused, named, audited, and the old policy keeps deciding."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest
import yaml
from unit.dispatcher.helpers import (
    INVENTORY,
    TOKEN,
    Client,
    Server,
    am_alert,
    am_body,
    free_port,
    policy_data,
    request,
    wait_for,
    write_playbook,
)

from selfheal.audit import iter_records
from selfheal.dispatcher import Dispatcher, build_app, config_from_data

ADMIN = "admin-token-0123456789abcdef"


def _setup(tmp: Path) -> dict:
    playbook = write_playbook(tmp / "heal.yml", tmp / "runs.log")
    (tmp / "policy.yml").write_text(yaml.safe_dump(policy_data(str(playbook))))
    (tmp / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    return {
        "store": str(tmp / "state/selfheal.db"),
        "policy": str(tmp / "policy.yml"),
        "inventory": str(tmp / "inventory.yml"),
        "audit": str(tmp / "audit"),
        "audit_key_file": str(tmp / "audit-keys.json"),
        "workers": 0,  # decisions only: nothing needs to run
        "instance": "test",
        "tokens": [
            {"name": "am", "token": TOKEN, "scopes": ["intake", "read"]},
            {"name": "root", "token": ADMIN, "scopes": ["admin"]},
        ],
    }


def _route_to_risky(tmp: Path) -> None:
    """The new policy: ServiceDown on app needs an approval (risky runbook)."""
    data = yaml.safe_load((tmp / "policy.yml").read_text())
    data["routes"][0]["runbook"] = "risky"
    (tmp / "policy.yml").write_text(yaml.safe_dump(data))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reloads(tmp: Path) -> list[dict]:
    return [r for r in iter_records(tmp / "audit") if r.get("action") == "policy.reload"]


@pytest.fixture
def api(tmp_path: Path):
    d = Dispatcher(config_from_data(_setup(tmp_path), tmp_path))
    d.start()
    client = Client(build_app(d, manage_lifecycle=False))
    yield d, client
    d.stop()
    client.close()


def _decide(d: Dispatcher, client: Client, host: str) -> str:
    labels = {"alertname": "ServiceDown", "service": "app", "host": host}
    r = client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    assert r.status == 202, r.body
    incident_id = r.json()["results"][0]["incident_id"]
    return wait_for(lambda: [x.mode for x in d.store.list_decisions(incident_id)], timeout=20)[0]


def test_admin_reload_swaps_a_valid_policy(api, tmp_path) -> None:
    d, client = api
    old = _digest(tmp_path / "policy.yml")
    assert _decide(d, client, "web-01") == "auto"
    assert client.post("/admin/reload").status == 401
    r = client.post("/admin/reload", token=TOKEN)
    assert r.status == 403 and "admin" in r.json()["error"]
    _route_to_risky(tmp_path)
    r = client.post("/admin/reload", token=ADMIN)
    assert r.status == 200, r.body
    new = _digest(tmp_path / "policy.yml")
    assert r.json() == {
        "status": "reloaded",
        "old_digest": old,
        "new_digest": new,
        "changed": True,
    }
    assert d.policy.routes[0].runbook == "risky"
    assert _decide(d, client, "web-02") == "approval"  # the new policy decides now
    [record] = _reloads(tmp_path)
    assert record["outcome"] == "reloaded"
    assert record["data"]["old_digest"] == old and record["data"]["new_digest"] == new
    assert record["actor"]["user"] == "root"
    assert "post" in client.get("/openapi.json").json()["paths"]["/admin/reload"]


def test_admin_reload_refuses_a_broken_policy(api, tmp_path) -> None:
    d, client = api
    before = d.policy
    data = yaml.safe_load((tmp_path / "policy.yml").read_text())
    data["routes"][0]["runbook"] = "no-such-runbook"
    (tmp_path / "policy.yml").write_text(yaml.safe_dump(data))
    r = client.post("/admin/reload", token=ADMIN)
    assert r.status == 400
    assert "no-such-runbook" in r.json()["error"] and r.json()["field"]
    (tmp_path / "policy.yml").write_text("routes: [unclosed\n")
    r = client.post("/admin/reload", token=ADMIN)
    assert r.status == 400 and "YAML" in r.json()["error"]
    assert d.policy is before  # the old one stays and keeps deciding
    assert _decide(d, client, "web-01") == "auto"
    outcomes = [rec["outcome"] for rec in _reloads(tmp_path)]
    assert outcomes == ["refused", "refused"]


def test_sighup_reloads_a_running_server(tmp_path) -> None:
    port = free_port()
    config = {**_setup(tmp_path), "listen": f"127.0.0.1:{port}"}
    (tmp_path / "dispatcher.yml").write_text(yaml.safe_dump(config))
    server = Server(tmp_path / "dispatcher.yml", port, tmp_path / "serve.log")
    server.start()
    try:
        assert server.proc is not None
        _route_to_risky(tmp_path)
        server.proc.send_signal(signal.SIGHUP)
        new = _digest(tmp_path / "policy.yml")
        record = wait_for(lambda: _reloads(tmp_path), timeout=20)[0]
        assert record["outcome"] == "reloaded" and record["data"]["new_digest"] == new
        assert record["actor"]["user"] == "SIGHUP"
        (tmp_path / "policy.yml").write_text("version: [\n")
        server.proc.send_signal(signal.SIGHUP)
        refused = wait_for(lambda: _reloads(tmp_path)[1:], timeout=20)[0]
        assert refused["outcome"] == "refused"
        assert request(port, "GET", "/readyz")[0] == 200  # still serving, on the old policy
        labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
        status, body = request(
            port, "POST", "/alerts/alertmanager", am_body(am_alert(labels)), TOKEN
        )
        assert status == 202
        incident_id = body["results"][0]["incident_id"]

        def decided():
            status, incident = request(port, "GET", f"/incidents/{incident_id}", token=TOKEN)
            return status == 200 and incident["decisions"] and incident["decisions"][0]["mode"]

        assert wait_for(decided, timeout=20) == "approval"  # the reloaded (valid) policy
    finally:
        server.stop()
    assert "policy reload failed" in (tmp_path / "serve.log").read_text()
