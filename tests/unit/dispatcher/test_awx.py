"""The AWX backend's client against a contract mock of the AWX API v2 (no AWX can run here):
launch with extra_vars and limit, polling to the end, ignored_fields, cancel on timeout,
approval nodes, output, auth; and the config that selects the backend per runbook."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest
from fakes.awx_api import FakeAWX, Template, Unsafe

from selfheal.dispatcher.awx import (
    AWXClient,
    AWXError,
    AWXSettings,
    RunbookBackend,
    awx_executor,
    awx_settings_from_data,
    backends_from_data,
)
from selfheal.errors import ConfigError

TOKEN = "awx-pat-0123456789abcdef"
HOSTILE = "{{ lookup('pipe', 'touch /tmp/pwned') }}"


@pytest.fixture
def awx():
    fake = FakeAWX(TOKEN).start()
    yield fake
    fake.stop()


def client(fake: FakeAWX, token: str = TOKEN) -> AWXClient:
    settings = AWXSettings(url=fake.url, token=token, poll_s=0.01, poll_max_s=0.05)
    return AWXClient(settings)


JOB = RunbookBackend("heal", "awx", job_template=7)
WORKFLOW = RunbookBackend("heal", "awx", workflow_job_template=9)
VARS = {"target": "web-01", "incident_id": 42, "summary": HOSTILE, "dry": False}


def test_job_template_runs_to_success_with_data_only_extra_vars(awx) -> None:
    awx.job_templates[7] = Template(stdout="PLAY RECAP\nweb-01 : ok=3\n")
    outcome = client(awx).run(JOB, VARS, "web-01", timeout_s=30)
    assert outcome.ok and outcome.kind == "job" and outcome.status == "successful"
    path, body = awx.launches()[0]
    assert path == "/api/v2/job_templates/7/launch/"
    assert body["limit"] == "web-01"
    job = awx.jobs[outcome.job_id]
    # every string is !unsafe (AWX/Ansible never template it); ints and bools stay plain
    assert job.extra_vars == {
        "target": Unsafe("web-01"),
        "incident_id": 42,
        "summary": Unsafe(HOSTILE),
        "dry": False,
    }
    assert job.statuses[0] == "pending" and "running" in job.statuses
    assert job.statuses[-1] == "successful"
    assert "ok=3" in outcome.stdout
    assert awx.cancels == []


def test_a_failed_status_read_is_retried(awx) -> None:
    awx.job_templates[7] = Template()
    awx.failing_polls = 2
    outcome = client(awx).run(JOB, VARS, "web-01", timeout_s=30)
    assert outcome.ok and awx.failing_polls == 0


def test_ignored_fields_fail_loudly_and_stop_the_job(awx) -> None:
    awx.job_templates[7] = Template(ask_limit_on_launch=False)
    with pytest.raises(AWXError, match=r"ignored limit.*Prompt on launch"):
        client(awx).run(JOB, VARS, "web-01", timeout_s=30)
    assert len(awx.cancels) == 1  # the job it started without our limit is canceled
    awx.job_templates[7] = Template(ask_variables_on_launch=False)
    with pytest.raises(AWXError, match="ignored extra_vars"):
        client(awx).run(JOB, VARS, "web-01", timeout_s=30)


def test_failed_job_is_reported(awx) -> None:
    awx.job_templates[7] = Template(outcome="failed", stdout="fatal: [web-01]: FAILED!\n")
    outcome = client(awx).run(JOB, VARS, "web-01", timeout_s=30)
    assert not outcome.ok and outcome.status == "failed"
    assert "FAILED!" in outcome.stdout


def test_timeout_cancels_the_job(awx) -> None:
    awx.job_templates[7] = Template(outcome="hang")
    outcome = client(awx).run(JOB, VARS, "web-01", timeout_s=0.3)
    assert outcome.status == "timeout" and not outcome.ok
    assert awx.cancels == [("job", outcome.job_id)]
    assert awx.jobs[outcome.job_id].status == "canceled"
    assert "cancel requested" in outcome.explanation


def test_cancel_callback_cancels_the_job(awx) -> None:
    awx.job_templates[7] = Template(outcome="hang")
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    outcome = client(awx).run(JOB, VARS, "web-01", timeout_s=30, cancel=stop.is_set)
    assert outcome.status == "canceled"
    assert awx.cancels == [("job", outcome.job_id)]


def _approve(fake: FakeAWX, approval_id: int) -> None:
    """What a human does in the AWX UI: approve the pending node."""
    request = urllib.request.Request(
        f"{fake.url}/api/v2/workflow_approvals/{approval_id}/approve/",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 204


def test_workflow_waits_for_approval_then_succeeds(awx) -> None:
    awx.workflow_job_templates[9] = Template(approval=True)
    seen: list[list[int]] = []

    def waiting(approvals: list[int]) -> None:
        seen.append(approvals)
        _approve(awx, approvals[0])

    outcome = client(awx).run(WORKFLOW, VARS, "web-01", timeout_s=30, on_waiting=waiting)
    assert outcome.ok and outcome.kind == "workflow_job"
    assert awx.launches()[0][0] == "/api/v2/workflow_job_templates/9/launch/"
    assert len(seen) == 1 and outcome.approvals == seen[0]
    assert awx.approvals[seen[0][0]]["status"] == "approved"
    assert "workflow_approval" in outcome.stdout  # the node summary stands for the output


def test_workflow_left_waiting_times_out_as_waiting_for_approval(awx) -> None:
    awx.workflow_job_templates[9] = Template(approval=True)
    outcome = client(awx).run(WORKFLOW, VARS, "web-01", timeout_s=0.4)
    assert outcome.status == "timeout"
    assert "waiting for approval" in outcome.explanation
    assert awx.cancels == [("workflow_job", outcome.job_id)]


def test_bad_token_and_unknown_template(awx) -> None:
    awx.job_templates[7] = Template()
    with pytest.raises(AWXError, match="HTTP 401"):
        client(awx, token="wrong-token-0123456789").run(JOB, VARS, "web-01", timeout_s=5)
    with pytest.raises(AWXError, match="HTTP 404"):
        client(awx).run(RunbookBackend("x", "awx", job_template=999), VARS, "h", timeout_s=5)


def test_executor_records_the_job_like_a_run(awx, tmp_path: Path) -> None:
    awx.job_templates[7] = Template(outcome="failed")
    run = awx_executor(client(awx), JOB)
    result = run(None, tmp_path / "inv", extravars=VARS, timeout=30, base_dir=tmp_path)
    assert not result.ok and result.status == "failed"
    assert "awx job" in result.failed_tasks[0] and "failed" in result.failed_tasks[0]
    record = json.loads((result.private_data_dir / "job.json").read_text())
    assert record["status"] == "failed"
    assert (result.private_data_dir / "stdout.txt").read_text().startswith("PLAY RECAP")


def test_backend_config(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SELFHEAL_AWX_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"awx\.token"):
        awx_settings_from_data({"url": "https://awx.example.com"}, tmp_path)
    monkeypatch.setenv("SELFHEAL_AWX_TOKEN", TOKEN)
    settings = awx_settings_from_data({"url": "https://awx.example.com/"}, tmp_path)
    assert settings is not None and settings.token == TOKEN
    assert settings.url == "https://awx.example.com"
    with pytest.raises(ConfigError, match=r"awx\.url"):
        awx_settings_from_data({"url": "ftp://x"}, tmp_path)
    backends = backends_from_data({"heal": {"backend": "awx", "job_template": 3}}, settings)
    assert backends["heal"].is_awx and backends["heal"].job_template == 3
    bad = [
        ({"heal": {"backend": "awx", "job_template": 3}}, None, "needs the awx"),
        ({"heal": {"backend": "awx"}}, settings, "one"),
        (
            {"heal": {"backend": "awx", "job_template": 1, "workflow_job_template": 2}},
            settings,
            "one",
        ),
        ({"heal": {"backend": "awx", "job_template": "3"}}, settings, "positive integer"),
        ({"heal": {"job_template": 3}}, settings, "need backend: awx"),
        ({"heal": {"backend": "tower"}}, settings, "must be one of"),
    ]
    for data, awx_settings, message in bad:
        with pytest.raises(ConfigError, match=message):
            backends_from_data(data, awx_settings)
