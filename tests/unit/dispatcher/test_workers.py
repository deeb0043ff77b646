"""Execution: safe extra vars, leases, verification, retries with backoff, escalation to a
PagerDuty Events API v2 endpoint, recovery of interrupted runs."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from unit.dispatcher.helpers import (
    TOKEN,
    am_alert,
    am_body,
    pause_playbook,
    policy_data,
    wait_for,
)

from selfheal.dispatcher.execute import execute, unsafe_yaml
from selfheal.runner import ansible_playbook, run_playbook
from selfheal.store import SQLiteStore


def test_unsafe_yaml_tags_every_string() -> None:
    text = unsafe_yaml({"target": "web-01", "incident_id": 7, "flag": True, "x": '{{ "a" }}'})
    data = yaml.safe_load(text.replace("!unsafe ", ""))
    assert data == {"target": "web-01", "incident_id": 7, "flag": True, "x": '{{ "a" }}'}
    assert text.count("!unsafe") == 2
    with pytest.raises(ValueError):
        unsafe_yaml({"bad key": "x"})


def test_extra_vars_are_never_templated(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    book = tmp_path / "echo.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {"ansible.builtin.copy": {"content": "{{ service }}", "dest": str(out)}}
                    ],
                }
            ]
        )
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost: {ansible_connection: local}\n")
    result = execute(
        book,
        inventory,
        extravars={"service": "{{ 6 * 7 }}{% if true %}!{% endif %}"},
        base_dir=tmp_path / "runs",
        timeout=120,
    )
    assert result.ok, result.failed_tasks
    assert out.read_text() == "{{ 6 * 7 }}{% if true %}!{% endif %}"


@pytest.mark.parametrize("runner", ["dispatcher", "cli"])
def test_runs_use_the_ansible_playbook_installed_with_selfheal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: str
) -> None:
    """Another ``ansible-playbook`` first on PATH (another install, a version manager's
    shim) is not the one runs start: the one installed with the imported ansible-core is."""
    foreign = tmp_path / "bin" / "ansible-playbook"
    foreign.parent.mkdir()
    foreign.write_text(f"#!/bin/sh\ntouch {tmp_path / 'foreign-ran'}\nexit 3\n")
    foreign.chmod(0o755)
    monkeypatch.setenv("PATH", f"{foreign.parent}{os.pathsep}{os.environ['PATH']}")
    book = tmp_path / "ok.yml"
    book.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks: [{ansible.builtin.ping: {}}]\n"
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    (tmp_path / "runs").mkdir()
    if runner == "dispatcher":
        result = execute(book, inventory, extravars={}, base_dir=tmp_path / "runs", timeout=120)
    else:
        result = run_playbook(book, inventory, base_dir=tmp_path / "runs", timeout=120)
    assert result.ok, result.failed_tasks
    assert not (tmp_path / "foreign-ran").exists()
    assert Path(ansible_playbook()).parent != foreign.parent


class _PagerDuty(BaseHTTPRequestHandler):
    events: ClassVar[list] = []

    def do_POST(self) -> None:  # the documented contract: JSON in, 202 + status out
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).events.append((self.path, body))
        ok = "routing_key" in body and (
            self.path == "/v2/change/enqueue" or body.get("event_action") in ("trigger", "resolve")
        )
        reply = (
            {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")}
            if ok
            else {"status": "invalid event", "message": "Event object is invalid"}
        )
        data = json.dumps(reply).encode()
        self.send_response(202 if ok else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def pagerduty():
    """A local HTTP server implementing the PagerDuty Events API v2 contract as documented
    (POST /v2/enqueue with routing_key, event_action trigger|resolve, dedup_key, payload;
    POST /v2/change/enqueue for change events; 202 with status "success"). It is not the
    real PagerDuty service."""
    _PagerDuty.events = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PagerDuty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _PagerDuty.events
    server.shutdown()
    server.server_close()


def _failing_policy(env, extra_runbook: dict | None = None) -> None:
    book = env["tmp"] / "fail.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "{{ target }}",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.fail": {"msg": "cannot heal"}}],
                }
            ]
        )
    )
    data = policy_data(str(book))
    if extra_runbook:
        data["runbooks"]["heal"].update(extra_runbook)
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(data))


def test_failed_runs_retry_then_escalate_to_pagerduty(make_dispatcher, env, pagerduty) -> None:
    url, events = pagerduty
    _failing_policy(env)
    d, client = make_dispatcher(
        workers=1,
        retry={"max_attempts": 2, "base_s": 0.05, "cap_s": 0.1},
        pagerduty={"routing_key": "R0UTINGKEY", "url": url},
    )
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    r = client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN).json()
    incident = r["results"][0]
    wait_for(lambda: any(p == "/v2/enqueue" for p, _ in events), timeout=120)
    [run] = d.store.list_runs()
    assert (run.status, run.attempts) == ("failed", 2)
    triggers = [b for p, b in events if p == "/v2/enqueue" and b["event_action"] == "trigger"]
    assert len(triggers) == 1
    assert triggers[0]["dedup_key"] == incident["fingerprint"]
    assert triggers[0]["routing_key"] == "R0UTINGKEY"
    assert triggers[0]["payload"]["severity"] == "critical"
    changes = [b for p, b in events if p == "/v2/change/enqueue"]
    assert len(changes) == 2  # one per automated action
    # resolved: the PagerDuty incident is resolved with the same dedup key
    client.post("/alerts/alertmanager", am_body(am_alert(labels, status="resolved")), token=TOKEN)
    wait_for(lambda: any(b.get("event_action") == "resolve" for _, b in events))
    [resolve] = [b for _, b in events if b.get("event_action") == "resolve"]
    assert resolve["dedup_key"] == incident["fingerprint"]
    assert d.metrics.runs.value(outcome="failed") == 2


def test_verification_failure_counts_as_failure(make_dispatcher, env) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    data = policy_data(str(env["tmp"] / "heal.yml"))
    data["runbooks"]["heal"]["verify"] = [
        {"check": "tcp", "args": {"host": "127.0.0.1", "port": closed, "timeout": 1}}
    ]
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(data))
    d, client = make_dispatcher(workers=1, retry={"max_attempts": 1})
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    [run] = wait_for(lambda: d.store.list_runs(status="failed"), timeout=120)
    assert run.reason.startswith("verification failed")
    assert env["marker"].read_text().startswith("web-01 app")  # the heal itself ran


def test_interrupted_run_is_recovered_and_retried(make_dispatcher, env) -> None:
    d, client = make_dispatcher(workers=0)
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    wait_for(lambda: d.store.list_runs(status="queued"))
    d.stop()
    # a worker of this instance claimed it, then the process died
    with SQLiteStore(env["tmp"] / "state/selfheal.db") as store:
        claimed = store.claim_next_run("test/w0", 600)
        assert claimed is not None and claimed.status == "running"
    d2, _ = make_dispatcher(workers=1)
    [run] = wait_for(lambda: d2.store.list_runs(status="succeeded"), timeout=120)
    assert run.id == claimed.id and run.attempts == 2
    assert d2.metrics.runs.value(outcome="interrupted") == 1


def test_lease_is_renewed_during_a_long_run(make_dispatcher, env) -> None:
    book = pause_playbook(env["tmp"] / "slow.yml", 3)
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(policy_data(str(book))))
    d, client = make_dispatcher(workers=1, lease_s=1.0)
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    [run] = wait_for(lambda: d.store.list_runs(status="succeeded"), timeout=120)
    assert run.attempts == 1  # never taken away as expired


def test_backoff_is_full_jitter_and_capped(make_dispatcher) -> None:
    d, _ = make_dispatcher(retry={"max_attempts": 5, "base_s": 2, "cap_s": 10})
    for attempt, ceiling in ((1, 2), (2, 4), (3, 8), (4, 10), (9, 10)):
        values = [d.backoff(attempt) for _ in range(200)]
        assert all(0 <= v <= ceiling for v in values)
        assert max(values) > ceiling / 2  # spread over the whole range


def test_start_delay_counts_the_wait_for_a_free_worker(make_dispatcher, env) -> None:
    d, client = make_dispatcher(workers=0)  # no worker: the run waits in the queue
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    wait_for(lambda: d.store.list_runs(status="queued"))
    assert "selfheal_run_start_delay_seconds_count 0" in d.metrics.render().decode()
    time.sleep(1.2)
    d.stop()
    d2, _ = make_dispatcher(workers=1)
    wait_for(lambda: d2.store.list_runs(status="succeeded"), timeout=120)
    text = d2.metrics.render().decode()
    assert "selfheal_run_start_delay_seconds_count 1" in text
    assert 'selfheal_run_start_delay_seconds_bucket{le="1"} 0' in text  # waited > 1.2 s
    assert 'selfheal_run_start_delay_seconds_bucket{le="10"} 1' in text
