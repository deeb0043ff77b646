"""The console's server side: console roles become scopes, votes need a reason, the console's
read endpoints (whoami, timeline, runs, run log, freeze, report) and its static files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from unit.dispatcher.helpers import ALICE, TOKEN, am_alert, am_body, wait_for

from selfheal.audit import iter_records
from selfheal.console import console_role_of
from selfheal.dispatcher import config_from_data
from selfheal.dispatcher.config import CONSOLE_ROLES, SCOPES, Token
from selfheal.errors import ConfigError

VIEWER = "viewer-token-0123456789ab"
APPROVER = "approver-token-0123456789"
ADMIN = "admin-token-0123456789abc"
OPERATOR = "operator-token-0123456789"

CONSOLE_TOKENS = [
    {"name": "alertmanager", "token": TOKEN, "scopes": ["intake"]},
    {"name": "victor", "token": VIEWER, "console_role": "viewer"},
    {"name": "olga", "token": OPERATOR, "console_role": "operator"},
    {"name": "carol", "token": APPROVER, "console_role": "approver", "roles": ["sre-leads"]},
    {"name": "ada", "token": ADMIN, "console_role": "admin"},
    {"name": "alice", "token": ALICE, "scopes": ["read", "approve"]},
]


def _token(**raw) -> Token:
    cfg = config_from_data({"tokens": [{"name": "t", "token": "x" * 20, **raw}]}, Path("/"))
    return cfg.tokens[0]


@pytest.mark.parametrize(
    ("role", "scopes"),
    [
        ("viewer", {"read"}),
        ("operator", {"read", "operate"}),
        ("approver", {"read", "operate", "approve"}),
        ("admin", {"intake", "read", "operate", "approve", "admin"}),
    ],
)
def test_console_role_sets_the_scopes(role, scopes) -> None:
    token = _token(console_role=role)
    assert token.scopes == frozenset(scopes) == CONSOLE_ROLES[role]
    assert console_role_of(token) == role


def test_scopes_still_work_and_imply_a_role() -> None:
    assert "admin" in SCOPES
    assert console_role_of(_token(scopes=["read", "approve"])) == "approver"
    assert console_role_of(_token(scopes=["read"])) == "viewer"
    assert console_role_of(_token(scopes=["read", "operate"])) == "operator"
    assert console_role_of(_token(scopes=["read", "admin"])) == "admin"
    assert console_role_of(_token(scopes=["intake"])) is None
    assert console_role_of(_token()) == "admin"  # no scopes given: every scope
    assert _token(scopes=["read"]).console_role is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"console_role": "root"}, "tokens[0].console_role"),
        ({"console_role": "viewer", "scopes": ["read"]}, "tokens[0]"),
        ({"scopes": ["read", "sudo"]}, "tokens[0].scopes"),
    ],
)
def test_bad_console_role_config(raw, field) -> None:
    with pytest.raises(ConfigError) as info:
        _token(**raw)
    assert info.value.path == field


@pytest.fixture
def console(make_dispatcher):
    return make_dispatcher(tokens=CONSOLE_TOKENS)


def _approval(d, client, host: str = "web-01") -> tuple[int, str]:
    body = am_body(am_alert({"alertname": "OpsRisky", "host": host}))
    response = client.post("/alerts/alertmanager", body, token=TOKEN)
    assert response.status == 202
    incident_id = response.json()["results"][0]["incident_id"]
    wait_for(lambda: d.store.list_decisions(incident_id))
    rid = f"incident-{incident_id}"
    assert d.state.load_approval(rid)["status"] == "pending"
    return incident_id, rid


def test_whoami(console) -> None:
    _, client = console
    for token, name, role, can_vote, can_operate in [
        (VIEWER, "victor", "viewer", False, False),
        (OPERATOR, "olga", "operator", False, True),
        (APPROVER, "carol", "approver", True, True),
        (ADMIN, "ada", "admin", True, True),
        (ALICE, "alice", "approver", True, False),  # plain scopes [read, approve]
    ]:
        me = client.get("/whoami", token=token).json()
        assert (me["name"], me["console_role"]) == (name, role)
        assert (me["can_vote"], me["can_operate"]) == (can_vote, can_operate)
    assert client.get("/whoami", token=APPROVER).json()["groups"] == ["sre-leads"]
    assert client.get("/whoami").status == 401
    assert client.get("/whoami", token="not-a-token-at-all").status == 401
    assert client.get("/whoami", token=TOKEN).json()["console_role"] is None


def test_viewer_cannot_vote_and_nothing_is_recorded(console) -> None:
    d, client = console
    incident_id, rid = _approval(d, client)
    for verdict in ("approve", "deny"):
        response = client.post(f"/approvals/{rid}/{verdict}", {"reason": "ok"}, token=VIEWER)
        assert response.status == 403
        assert client.post(f"/approvals/{rid}/{verdict}", token=OPERATOR).status == 403
    assert d.store.list_approvals(rid) == []
    assert d.state.load_approval(rid)["votes"] == []
    assert d.store.list_runs(incident_id=incident_id) == []
    assert [
        a["request_id"] for a in client.get("/approvals", token=VIEWER).json()["approvals"]
    ] == [rid]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "reason"),
        ({}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": 42}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        (b"not json", "(payload)"),
        ([1], "(payload)"),
    ],
)
def test_console_votes_need_a_reason(console, body, field) -> None:
    d, client = console
    incident_id, rid = _approval(d, client)
    response = client.post(f"/approvals/{rid}/approve", body, token=APPROVER)
    assert response.status == 400
    assert response.json()["field"] == field
    assert d.store.list_approvals(rid) == []
    assert d.store.list_runs(incident_id=incident_id) == []


def test_approve_with_reason_is_recorded_and_runs(console) -> None:
    d, client = console
    incident_id, rid = _approval(d, client)
    response = client.post(
        f"/approvals/{rid}/approve", {"reason": "disk at 99%, runbook reviewed"}, token=APPROVER
    )
    assert response.status == 200 and response.json()["status"] == "approved"
    [run] = wait_for(lambda: d.store.list_runs(incident_id=incident_id))
    assert run.target == "web-01"
    comments = d.state.load_approval(rid)["comments"]
    assert [(c["by"], c["verdict"], c["reason"]) for c in comments] == [
        ("carol", "approve", "disk at 99%, runbook reviewed")
    ]
    wait_for(lambda: d.store.list_decisions(incident_id)[-1].mode == "approved")
    events = client.get(f"/incidents/{incident_id}/timeline", token=VIEWER).json()["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["alert", "opened"]
    assert {"decision", "approval", "run"} <= set(kinds)
    [vote] = [e for e in events if e["kind"] == "approval"]
    assert vote["text"] == "approve by carol"
    assert vote["reasons"] == ["disk at 99%, runbook reviewed"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    d.audit.close()  # flush before reading the trail
    reasons = [
        r for r in iter_records(d.config.path(d.config.audit)) if r["action"] == "approval.reason"
    ]
    assert [r["reasons"] for r in reasons] == [["disk at 99%, runbook reviewed"]]


def test_scope_only_tokens_may_still_vote_without_a_reason(console) -> None:
    d, client = console
    _, rid = _approval(d, client)
    assert client.post(f"/approvals/{rid}/approve", token=ALICE).status == 200


def test_refused_vote_keeps_no_reason(console) -> None:
    """An approver outside the policy's approver list is refused by the policy (403), and
    the reason given is not kept either."""
    d, client = console
    _, rid = _approval(d, client)
    response = client.post(f"/approvals/{rid}/approve", {"reason": "because"}, token=ADMIN)
    assert response.status == 403
    assert response.json()["reasons"][0]["code"] == "not_approver"
    assert "comments" not in d.state.load_approval(rid)


def test_runs_list_and_log(console, env) -> None:
    d, client = console
    incident_id, rid = _approval(d, client)
    client.post(f"/approvals/{rid}/approve", {"reason": "go"}, token=APPROVER)
    [run] = wait_for(lambda: d.store.list_runs(incident_id=incident_id))
    listed = client.get("/runs?limit=5", token=VIEWER).json()["runs"]
    assert [(r["id"], r["incident_name"]) for r in listed] == [(run.id, "OpsRisky")]
    log = client.get(f"/runs/{run.id}/log", token=VIEWER).json()
    assert log["run_id"] == run.id and log["log"] is None  # queued: no worker, no output
    # output of a finished run comes from ansible-runner's artifacts, secrets redacted
    pdd = env["tmp"] / "pdd"
    (pdd / "artifacts/abc").mkdir(parents=True)
    (pdd / "artifacts/abc/stdout").write_text("TASK [x]\npassword=hunter2-secret\nok: [web-01]\n")
    d.store.set_private_data_dir(run.id, str(pdd))
    text = client.get(f"/runs/{run.id}/log", token=VIEWER).json()["log"]
    assert "ok: [web-01]" in text and "hunter2-secret" not in text
    assert client.get("/runs/999/log", token=VIEWER).status == 404
    assert client.get("/runs?limit=0", token=VIEWER).status == 400
    assert client.get("/runs?limit=x", token=VIEWER).status == 400
    assert client.get("/runs", token=TOKEN).status == 403  # intake only


def test_freeze_status(make_dispatcher, env) -> None:
    policy = yaml.safe_load((env["tmp"] / "policy.yml").read_text())
    policy["windows"] = [
        {"name": "always", "kind": "deny", "schedule": "* * * * *", "duration": "2m"},
        {"name": "never", "kind": "deny", "dates": ["2001-01-01"]},
    ]
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(policy))
    _, client = make_dispatcher(tokens=CONSOLE_TOKENS)
    body = client.get("/freeze", token=VIEWER).json()
    names = {w["name"]: w for w in body["windows"]}
    assert set(names) == {"always", "never"}
    assert names["always"]["active"] is True and body["frozen"] is True
    assert names["never"]["active"] is False and names["never"]["next_opens"] is None
    assert client.get("/freeze").status == 401


def test_static_files_carry_a_strict_policy(console) -> None:
    _, client = console
    page = client.get("/ui/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.body.decode()
    assert (
        "<script src=" in html
        and "<script>" not in html
        and "http" not in html.lower().replace("http-equiv", "")
    )
    assert client.get("/ui/console.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/console.css").status == 200
    assert client.get("/ui/../config.py").status == 404
    assert client.get("/ui/nope.js").status == 404
    assert client.post("/ui/").status == 405


def test_report_ticket_is_single_use(console) -> None:
    _, client = console
    assert client.get("/ui/report").status == 401
    assert client.post("/ui/report-ticket").status == 401
    url = client.post("/ui/report-ticket", token=VIEWER).json()["url"]
    page = client.get(url)
    assert page.status == 200 and page.body.lstrip().lower().startswith(b"<!doctype html")
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["x-report-available"] in ("true", "false")
    if page.headers["x-report-available"] == "false":
        assert b"Report not available" in page.body
    assert client.get(url).status == 401  # used once
    assert client.get("/ui/report", token=VIEWER).status == 200


def test_openapi_lists_the_console_endpoints(console) -> None:
    _, client = console
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/whoami", "/freeze", "/runs", "/runs/{id}/log", "/incidents/{id}/timeline"):
        assert "get" in paths[path], path
    assert "400" in paths["/approvals/{request_id}/approve"]["post"]["responses"]
