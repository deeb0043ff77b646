"""The dispatcher running a runbook on AWX, end to end: alert in -> policy -> worker ->
AWX job launched on the runbook's template with the target as limit and the incident's data
as !unsafe extra_vars -> followed to its end -> run row succeeded or failed.

AWX cannot run on this machine (it needs Kubernetes and a database): the AWX side is the
contract mock in fakes/awx_api.py, which implements the documented API v2 endpoints and
behaviours this backend relies on. Everything else (store, policy, workers, audit trail)
is the real dispatcher."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from fakes.awx_api import FakeAWX, Template, Unsafe
from unit.dispatcher.helpers import (
    INVENTORY,
    TOKEN,
    Client,
    am_alert,
    am_body,
    policy_data,
    wait_for,
    write_playbook,
)

from selfheal.audit import iter_records
from selfheal.dispatcher import Dispatcher, build_app, config_from_data

AWX_TOKEN = "awx-pat-0123456789abcdef"
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")


@pytest.fixture
def awx():
    fake = FakeAWX(AWX_TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def dispatch(tmp_path: Path, awx: FakeAWX):
    made: list[tuple[Dispatcher, Client]] = []

    def make(backend: dict, timeout: str = "2m") -> tuple[Dispatcher, Client]:
        playbook = write_playbook(tmp_path / "heal.yml", tmp_path / "runs.log")
        policy = policy_data(str(playbook))
        policy["runbooks"]["heal"]["timeout"] = timeout
        (tmp_path / "policy.yml").write_text(yaml.safe_dump(policy))
        (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
        config = {
            "store": str(tmp_path / "state/selfheal.db"),
            "policy": str(tmp_path / "policy.yml"),
            "inventory": str(tmp_path / "inventory.yml"),
            "audit": str(tmp_path / "audit"),
            "audit_key_file": str(tmp_path / "audit-keys.json"),
            "workers": 1,
            "instance": "test",
            "poll_s": 0.05,
            "retry": {"max_attempts": 1},
            "tokens": [{"name": "am", "token": TOKEN, "scopes": ["intake", "read"]}],
            "awx": {"url": awx.url, "token": AWX_TOKEN, "poll_s": 0.02, "poll_max_s": 0.1},
            "runbooks": {"heal": {"backend": "awx", **backend}},
        }
        d = Dispatcher(config_from_data(config, tmp_path))
        d.start()
        client = Client(build_app(d, manage_lifecycle=False))
        made.append((d, client))
        return d, client

    yield make
    for d, client in made:
        d.stop()
        client.close()


def _fire(client: Client, host: str = "web-01") -> int:
    labels = {"alertname": "ServiceDown", "service": "app", "host": host}
    r = client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    assert r.status == 202, r.body
    return r.json()["results"][0]["incident_id"]


def _finished_run(d: Dispatcher, incident_id: int):
    def done():
        runs = d.store.list_runs(incident_id=incident_id)
        return runs[0] if runs and runs[0].status in ("succeeded", "failed") else None

    return wait_for(done, timeout=60)


def test_alert_launches_the_job_template_and_the_run_succeeds(dispatch, awx, tmp_path) -> None:
    awx.job_templates[7] = Template(stdout="PLAY RECAP\nweb-01 : ok=2 changed=1\n")
    d, client = dispatch({"job_template": 7})
    incident_id = _fire(client)
    run = _finished_run(d, incident_id)
    assert run.status == "succeeded", run.reason
    [(path, body)] = awx.launches()
    assert path == "/api/v2/job_templates/7/launch/"
    assert body["limit"] == "web-01"  # the policy's target, not anything from the alert
    job = next(iter(awx.jobs.values()))
    assert job.extra_vars["target"] == Unsafe("web-01")
    assert job.extra_vars["runbook"] == Unsafe("heal")
    assert job.extra_vars["incident_id"] == incident_id
    assert TRACEPARENT.fullmatch(job.extra_vars["selfheal_traceparent"].value)
    assert job.statuses[-1] == "successful"
    record = Path(d.store.get_run(run.id).private_data_dir)
    assert "ok=2" in (record / "stdout.txt").read_text()
    assert not (tmp_path / "runs.log").exists()  # the local playbook did not run


def test_ignored_fields_fail_the_run_with_that_message(dispatch, awx) -> None:
    awx.job_templates[7] = Template(ask_variables_on_launch=False)
    d, client = dispatch({"job_template": 7})
    run = _finished_run(d, _fire(client))
    assert run.status == "failed"
    assert "ignored extra_vars" in run.reason and "Prompt on launch" in run.reason


def test_failed_job_fails_the_run_and_escalates(dispatch, awx, tmp_path) -> None:
    awx.job_templates[7] = Template(outcome="failed")
    d, client = dispatch({"job_template": 7})
    incident_id = _fire(client)
    run = _finished_run(d, incident_id)
    assert run.status == "failed"
    assert re.search(r"awx job \d+ failed", run.reason)

    def escalated():
        records = list(iter_records(tmp_path / "audit"))
        return [r for r in records if r.get("action") == "dispatcher.escalate"]

    assert wait_for(escalated, timeout=20)[0]["incident_id"] == str(incident_id)


def test_timeout_cancels_the_awx_job(dispatch, awx) -> None:
    awx.job_templates[7] = Template(outcome="hang")
    d, client = dispatch({"job_template": 7}, timeout="1s")
    run = _finished_run(d, _fire(client))
    assert run.status == "failed" and run.reason.startswith("timeout")
    job_id = next(iter(awx.jobs))
    assert awx.cancels == [("job", job_id)]


def test_workflow_approved_mid_way(dispatch, awx, tmp_path) -> None:
    awx.workflow_job_templates[9] = Template(approval=True)
    d, client = dispatch({"workflow_job_template": 9})
    stop = threading.Event()

    def human() -> None:  # approves in AWX once the node waits, like an operator would
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            pending = [a for a, info in awx.approvals.items() if info["status"] == "pending"]
            if pending:
                request = urllib.request.Request(
                    f"{awx.url}/api/v2/workflow_approvals/{pending[0]}/approve/",
                    data=b"{}",
                    method="POST",
                    headers={"Authorization": f"Bearer {AWX_TOKEN}"},
                )
                urllib.request.urlopen(request, timeout=5).close()
                return
            time.sleep(0.02)

    approver = threading.Thread(target=human)
    approver.start()
    try:
        run = _finished_run(d, _fire(client))
    finally:
        stop.set()
        approver.join(10)
    assert run.status == "succeeded", run.reason
    assert awx.launches()[0][0] == "/api/v2/workflow_job_templates/9/launch/"
    waiting = wait_for(
        lambda: [
            r for r in iter_records(tmp_path / "audit") if r.get("action") == "run.waiting_approval"
        ],
        timeout=10,
    )
    assert waiting[0]["data"]["approvals"] == list(awx.approvals)
