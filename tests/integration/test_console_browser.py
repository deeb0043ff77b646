"""The operator console in a real headless Chromium against a real `selfheal serve`.

An Alertmanager-shaped webhook for a high-risk runbook opens a pending approval; an approver
signs in to the console with an API token, approves with a reason, and the console shows the
run succeeding (the playbook writes a marker file). A viewer sees the queue but no approve
button, and the API answers 403 to its vote and runs nothing. An operator cancels a running
run with a reason; it ends as canceled and is not retried.

Set SELFHEAL_CONSOLE_SCREENSHOT=FILE to save a screenshot of the console (docs/img).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support import CHROMIUM, CHROMIUM_ARGS
from unit.dispatcher.helpers import (
    Server,
    am_alert,
    am_body,
    free_port,
    pause_playbook,
    request,
    wait_for,
    write_playbook,
)

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed"),
]
INTAKE = "console-intake-token-0123"
APPROVER = "console-approver-token-01"
OPERATOR = "console-operator-token-01"
VIEWER = "console-viewer-token-0123"
WAIT_MS = 120_000  # every wait in the browser is bounded by this


def _policy(playbook: Path, slow: Path) -> dict:
    return {
        "version": 1,
        "limits": {"max_unhealthy": "100%"},
        "services": {"app": {"hosts": ["localhost"]}, "batch": {"hosts": ["localhost"]}},
        "runbooks": {
            "restart_app": {"playbook": str(playbook), "risk": "high", "timeout": "2m"},
            "slow_fix": {"playbook": str(slow), "risk": "low", "timeout": "5m"},
        },
        "risk_tiers": {
            "high": {
                "mode": "approval",
                "approval": {"groups": ["sre-leads"], "quorum": 1, "timeout": "30m"},
            }
        },
        "routes": [
            {
                "name": "app-risky",
                "match": {"alertname": "AppRisky"},
                "runbook": "restart_app",
                "service": "app",
                "target_label": "host",
            },
            {
                "name": "batch-slow",
                "match": {"alertname": "BatchSlow"},
                "runbook": "slow_fix",
                "service": "batch",
                "target_label": "host",
            },
        ],
    }


@pytest.fixture(scope="module")
def dispatcher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    marker = tmp / "marker.log"
    playbook = write_playbook(tmp / "restart_app.yml", marker)
    slow = pause_playbook(tmp / "slow_fix.yml", 120)
    (tmp / "policy.yml").write_text(yaml.safe_dump(_policy(playbook, slow)))
    inventory = {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                }
            }
        }
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    port = free_port()
    (tmp / "dispatcher.yml").write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "store": "state/selfheal.db",
                "policy": "policy.yml",
                "inventory": "inventory.yml",
                "workers": 1,
                "poll_s": 0.2,
                "instance": "console-it",
                "tokens": [
                    {"name": "alertmanager", "token": INTAKE, "scopes": ["intake"]},
                    {
                        "name": "carol",
                        "token": APPROVER,
                        "console_role": "approver",
                        "roles": ["sre-leads"],
                    },
                    {"name": "victor", "token": VIEWER, "console_role": "viewer"},
                    {"name": "olga", "token": OPERATOR, "console_role": "operator"},
                ],
            }
        )
    )
    server = Server(tmp / "dispatcher.yml", port, tmp / "serve.log")
    server.start()
    try:
        yield {"port": port, "marker": marker, "log": tmp / "serve.log"}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    # console errors include Content-Security-Policy violations; HTTP error statuses are
    # asserted where they are expected
    problems: list[str] = []

    def on_console(message) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    yield page
    context.close()


def _alert(port: int, instance: str, alertname: str = "AppRisky") -> int:
    """A firing Alertmanager webhook; returns the incident id."""
    labels = {"alertname": alertname, "host": "localhost", "instance": instance}
    starts = (datetime.now(UTC) - timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    body = json.dumps(am_body(am_alert(labels, starts=starts))).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/alerts/alertmanager",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {INTAKE}"},
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 202
        return json.loads(response.read())["results"][0]["incident_id"]


def _sign_in(page, port: int, token: str) -> None:
    page.goto(f"http://127.0.0.1:{port}/ui/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#app:not([hidden])")


def test_viewer_sees_the_queue_but_cannot_approve(dispatcher, page) -> None:
    port = dispatcher["port"]
    incident_id = _alert(port, "viewer-case")
    rid = f"incident-{incident_id}"
    # keyboard only: the token field has the focus when the page opens, Enter signs in
    page.goto(f"http://127.0.0.1:{port}/ui/")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'token'")
    page.keyboard.type(VIEWER)
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not([hidden])")
    assert page.text_content("#role") == "viewer"
    card = page.wait_for_selector(f'#approval-list li[data-request="{rid}"]')
    assert card.query_selector("button") is None and card.query_selector("textarea") is None
    assert "can see the queue but not vote" in page.text_content("#approvals-note")
    # the API itself refuses, whatever the page shows
    status = page.evaluate(
        """async ([rid, token]) => (await fetch(`/approvals/${rid}/approve`, {
               method: "POST",
               headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
               body: JSON.stringify({reason: "looks fine"}),
           })).status""",
        [rid, VIEWER],
    )
    assert status == 403
    record = request(port, "GET", f"/approvals/{rid}", token=VIEWER)[1]
    assert record["status"] == "pending" and record["votes"] == []
    view = request(port, "GET", f"/incidents/{incident_id}", token=VIEWER)[1]
    assert view["runs"] == []
    assert page.problems == []


def test_approver_approves_and_sees_the_run_succeed(dispatcher, page) -> None:
    port = dispatcher["port"]
    incident_id = _alert(port, "approver-case")
    rid = f"incident-{incident_id}"
    _sign_in(page, port, APPROVER)
    assert page.text_content("#who") == "carol"
    card = page.locator(f'#approval-list li[data-request="{rid}"]')
    card.wait_for()
    assert request(port, "GET", f"/incidents/{incident_id}", token=VIEWER)[1]["runs"] == []
    # the browser's own validation stops an empty reason; the API would answer 400 anyway
    card.get_by_role("button", name="Approve").click()
    assert card.locator("textarea:invalid").count() == 1
    assert request(port, "GET", f"/approvals/{rid}", token=VIEWER)[1]["votes"] == []
    card.get_by_label("Reason (required)").fill("checked the dashboards; restart is safe")
    card.get_by_role("button", name="Approve").click()
    page.wait_for_selector(f'#status:has-text("{rid}: approved")')
    row = page.locator(f'#run-table tr[data-incident="{incident_id}"], #run-table tr[data-run]')
    page.wait_for_selector('#run-table tr[data-status="succeeded"]')
    assert row.first.get_attribute("data-status") == "succeeded"
    assert dispatcher["marker"].read_text().split() == ["localhost", "app", str(incident_id)]

    page.get_by_role("button", name=f"Timeline of incident {incident_id}").click()
    timeline = page.locator("#timeline")
    timeline.locator('li[data-kind="approval"]').wait_for()
    assert "approve by carol" in timeline.text_content()
    assert "checked the dashboards; restart is safe" in timeline.text_content()
    page.wait_for_selector('#timeline li[data-kind="run"]:has-text("succeeded")')

    run_id = page.locator('#run-table tr[data-status="succeeded"]').first.get_attribute("data-run")
    page.get_by_role("button", name=f"Log of run {run_id}").click()
    page.wait_for_selector('#log:has-text("Record the run")')
    shot = os.environ.get("SELFHEAL_CONSOLE_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)

    # the report opens in a frame through a one-time ticket: charts, or a clear notice
    page.get_by_role("button", name="Show report").click()
    report = page.frame_locator("#report-frame")
    report.locator("h1").first.wait_for()
    heading = report.locator("h1").first.text_content()
    has_charts = report.locator("svg").count() > 0
    assert has_charts or heading == "Report not available"
    assert page.problems == []


def test_operator_cancels_a_running_run(dispatcher, page) -> None:
    port = dispatcher["port"]
    incident_id = _alert(port, "cancel-case", alertname="BatchSlow")
    run_id = wait_for(
        lambda: next(
            (
                r["id"]
                for r in request(port, "GET", f"/incidents/{incident_id}", token=VIEWER)[1]["runs"]
                if r["status"] == "running"
            ),
            None,
        ),
        timeout=60,
    )
    _sign_in(page, port, VIEWER)
    row = page.locator(f'#run-table tr[data-run="{run_id}"][data-status="running"]')
    row.wait_for()
    assert row.get_by_role("button", name="Cancel").count() == 0  # a viewer may not

    page.get_by_role("button", name="Sign out").click()
    _sign_in(page, port, OPERATOR)
    assert page.text_content("#role") == "operator"
    asked: list[str] = []

    def answer(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept("stuck batch job; restarting it by hand")

    page.once("dialog", answer)
    page.get_by_role("button", name=f"Cancel run {run_id}").click()
    page.wait_for_selector(f'#run-table tr[data-run="{run_id}"][data-status="canceled"]')
    assert asked and f"run {run_id}" in asked[0]
    run = request(port, "GET", f"/runs/{run_id}", token=VIEWER)[1]
    assert run["reason"] == "canceled by olga: stuck batch job; restarting it by hand"
    view = request(port, "GET", f"/incidents/{incident_id}", token=VIEWER)[1]
    assert [r["status"] for r in view["runs"]] == ["canceled"]  # not retried
    assert view["status"] == "open"
    assert page.problems == []
