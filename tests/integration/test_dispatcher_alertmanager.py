"""Real Alertmanager -> `selfheal serve` -> heal_service.yml on the right host.

A supervisord program crashes; an alert posted to Alertmanager's /api/v2/alerts reaches the
dispatcher through its webhook (bearer token), the policy allows the heal_service runbook,
the playbook restarts the program exactly once, the resolved alert closes the incident, and
the audit trail (dispatcher decisions and the playbook's callback records) verifies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support import REPO
from unit.dispatcher.helpers import Server, free_port, request

from selfheal.audit import Keyring, iter_records, verify
from selfheal.supervisor import Program, Supervisor

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(ALERTMANAGER is None, reason="Alertmanager is not installed"),
    pytest.mark.skipif(not Supervisor.available(), reason="supervisord is not installed"),
]
TOKEN = "am-token-0123456789abcdef"


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _post_alert(am_port: int, labels: dict, *, ends: datetime | None = None) -> None:
    now = datetime.now(UTC)
    alert = {
        "labels": labels,
        "annotations": {"summary": "web is down"},
        "startsAt": (now - timedelta(seconds=5)).isoformat(),
    }
    if ends is not None:
        alert["endsAt"] = ends.isoformat()
    req = urllib.request.Request(
        f"http://127.0.0.1:{am_port}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200


def test_alertmanager_to_heal_service(tmp_path: Path) -> None:
    web_port, d_port, am_port = free_port(), free_port(), free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www/index.html").write_text("ok\n")
    sup = Supervisor(tmp_path / "sup")
    command = (
        f"{shutil.which('python3')} -m http.server {web_port} --bind 127.0.0.1"
        f" --directory {tmp_path}/www"
    )
    sup.write_config([Program("web", command)])
    inventory = {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "selfheal_managed": True,
                    "selfheal_services": {
                        "web": {
                            "manager": "supervisord",
                            "supervisor_config": str(sup.config),
                            "health_checks": [
                                {
                                    "name": "web",
                                    "kind": "http",
                                    "url": f"http://127.0.0.1:{web_port}/",
                                    "timeout": 2,
                                }
                            ],
                        }
                    },
                },
                "web-02": {"ansible_connection": "local", "selfheal_managed": True},
            }
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    policy = {
        "version": 1,
        "limits": {"max_unhealthy": "100%"},
        "compliance": {"required_tags": ["selfheal_managed"], "tag_vars": ["selfheal_managed"]},
        "services": {"web": {"hosts": ["localhost", "web-02"]}},
        "runbooks": {
            "heal_service": {
                "playbook": str(REPO / "playbooks/heal_service.yml"),
                "risk": "low",
                "timeout": "3m",
            }
        },
        "routes": [
            {
                "name": "service-down",
                "match": {"alertname": "ServiceDown"},
                "runbook": "heal_service",
                "target_label": "host",
                "service_label": "service",
            }
        ],
    }
    (tmp_path / "policy.yml").write_text(yaml.safe_dump(policy))
    (tmp_path / "dispatcher.yml").write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{d_port}",
                "store": "state/selfheal.db",
                "policy": "policy.yml",
                "inventory": "inventory.yml",
                "audit": "audit",
                "audit_key_file": "audit-keys.json",
                "workers": 1,
                "instance": "it",
                "tokens": [{"name": "alertmanager", "token": TOKEN}],
            }
        )
    )
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "selfheal",
                    "group_by": ["alertname", "host", "service"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "selfheal",
                        "webhook_configs": [
                            {
                                "url": f"http://127.0.0.1:{d_port}/alerts/alertmanager",
                                "send_resolved": True,
                                "http_config": {
                                    "authorization": {"type": "Bearer", "credentials": TOKEN}
                                },
                            }
                        ],
                    }
                ],
            }
        )
    )
    server = Server(tmp_path / "dispatcher.yml", d_port, tmp_path / "serve.log")
    am_log = (tmp_path / "alertmanager.log").open("wb")
    am = None
    sup.start()
    try:
        _wait(lambda: _serving(web_port) and sup.is_running("web"), 20, "web up")
        os.kill(sup.program_pid("web"), signal.SIGKILL)  # the crash
        _wait(lambda: not _serving(web_port) and not sup.is_running("web"), 20, "web down")
        server.start()
        am = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=am_log,
            stderr=am_log,
            start_new_session=True,
        )
        _wait(lambda: _get_ok(f"http://127.0.0.1:{am_port}/-/ready"), 30, "alertmanager ready")
        labels = {"alertname": "ServiceDown", "host": "localhost", "service": "web"}
        _post_alert(am_port, labels)

        def incidents(status=None):
            path = "/incidents" + (f"?status={status}" if status else "")
            return request(d_port, "GET", path, token=TOKEN)[1]["incidents"]

        [incident] = _wait(lambda: incidents(), 60, "the incident")
        view = _wait(
            lambda: (
                (v := request(d_port, "GET", f"/incidents/{incident['id']}", token=TOKEN)[1])
                and any(r["status"] == "succeeded" for r in v["runs"])
                and v
            ),
            180,
            "a successful run",
        )
        assert [(r["target"], r["runbook"]) for r in view["runs"]] == [
            ("localhost", "heal_service")
        ]
        assert _serving(web_port) and sup.is_running("web")

        _post_alert(am_port, labels, ends=datetime.now(UTC) - timedelta(seconds=1))
        _wait(lambda: incidents("resolved"), 60, "the resolved incident")
        view = request(d_port, "GET", f"/incidents/{incident['id']}", token=TOKEN)[1]
        assert view["status"] == "resolved"
        assert len(view["runs"]) == 1  # healed once
    finally:
        if am is not None and am.poll() is None:
            am.terminate()
            am.wait(15)
        am_log.close()
        server.stop()
        sup.stop()
    keyring = Keyring.load(tmp_path / "audit-keys.json", create=False)
    report = verify(tmp_path / "audit", keyring)
    assert report.ok, report.problem
    records = list(iter_records(tmp_path / "audit"))
    actions = {r["action"] for r in records}
    assert {"dispatcher.decision", "run.start", "run.finish", "incident.resolved"} <= actions
    # the playbook's own records (the selfheal.core.audit callback) carry the incident
    tasks = [r for r in records if r["action"] == "task"]
    assert tasks and all(r.get("incident_id") == str(incident["id"]) for r in tasks)


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
