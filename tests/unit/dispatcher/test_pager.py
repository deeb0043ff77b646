"""Pager delivery against contract mocks of PagerDuty's Events API v2 and Opsgenie's Alert
API v2: an outage (HTTP 500) loses nothing and keeps each incident's order, a refused event
(400) is dead at once, a restarted dispatcher delivers what was pending."""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from unit.dispatcher.helpers import ALICE, TOKEN, am_alert, am_body, policy_data, wait_for

from selfheal.dispatcher.config import PagerConfig, PagerDutyConfig, config_from_data
from selfheal.dispatcher.opsgenie import Opsgenie
from selfheal.dispatcher.outbox import PagerOutbox, PagerTimeline
from selfheal.dispatcher.pagerduty import PagerDuty
from selfheal.errors import ConfigError
from selfheal.store import SQLiteStore
from selfheal.store.model import PagerEvent

ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"
GENIE_KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"
LATER = datetime(2100, 1, 1, tzinfo=UTC)  # "now" for a pass: every backoff has expired


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        mock: ContractMock = self.server.mock  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, reply = mock.handle(self.path, dict(self.headers), raw)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class ContractMock:
    """A 127.0.0.1 HTTP server that checks requests against the documented contract of
    PagerDuty's Events API v2 (`POST /v2/enqueue`: routing_key, event_action trigger |
    acknowledge | resolve, dedup_key, a trigger's payload with summary, source and a valid
    severity; `POST /v2/change/enqueue`: routing_key, payload.summary and source; 202
    ``{"status": "success"}``, 400 ``{"status": "invalid event"}``) or Opsgenie's Alert API
    v2 (`Authorization: GenieKey`; `POST /v2/alerts` with message and alias; `POST
    /v2/alerts/{alias}/acknowledge|close|notes?identifierType=alias`, notes need `note`;
    202 ``{"result": "Request will be processed", "requestId": ...}``). It is a contract
    mock, not the real service. `fail_with` makes every request fail with that status (an
    outage) until cleared; `accepted` is what the service took, in arrival order."""

    def __init__(self, api: str):
        self.api = api
        self.fail_with: int | None = None
        self.requests: list[tuple[str, dict]] = []  # everything, failures included
        self.accepted: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.mock = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, path: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"message": "body is not JSON"}
        with self._lock:
            self.requests.append((path, body))
            if self.fail_with is not None:
                return self.fail_with, {"message": "service unavailable"}
            check = self._pagerduty if self.api == "pagerduty" else self._opsgenie
            status, reply = check(path, headers, body)
            if status == 202:
                self.accepted.append((path, body))
            return status, reply

    @staticmethod
    def _pagerduty(path: str, headers: dict, body: dict) -> tuple[int, dict]:
        invalid = 400, {"status": "invalid event", "message": "Event object is invalid"}
        payload = body.get("payload") or {}
        if body.get("routing_key") != ROUTING_KEY:
            return invalid
        if path == "/v2/change/enqueue":
            if not payload.get("summary") or not payload.get("source"):
                return invalid
            return 202, {"status": "success", "message": "Change event processed"}
        if path != "/v2/enqueue":
            return 404, {"message": "not found"}
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve") or not body.get("dedup_key"):
            return invalid
        if action == "trigger" and (
            not payload.get("summary")
            or not payload.get("source")
            or payload.get("severity") not in ("critical", "error", "warning", "info")
        ):
            return invalid
        return 202, {
            "status": "success",
            "message": "Event processed",
            "dedup_key": body["dedup_key"],
        }

    @staticmethod
    def _opsgenie(path: str, headers: dict, body: dict) -> tuple[int, dict]:
        if headers.get("Authorization") != f"GenieKey {GENIE_KEY}":
            return 401, {"message": "Could not authenticate", "took": 0.0, "requestId": "r"}
        url = urllib.parse.urlsplit(path)
        parts = url.path.strip("/").split("/")
        ok = 202, {"result": "Request will be processed", "took": 0.01, "requestId": "r1"}
        bad = 422, {"message": "Request body is not valid", "took": 0.0, "requestId": "r"}
        if parts == ["v2", "alerts"]:
            message = body.get("message")
            if not message or len(message) > 130 or not body.get("alias"):
                return bad
            return ok
        query = urllib.parse.parse_qs(url.query)
        if (
            len(parts) == 4
            and parts[:2] == ["v2", "alerts"]
            and query.get("identifierType") == ["alias"]
        ):
            if parts[3] == "notes" and not body.get("note"):
                return bad
            if parts[3] in ("acknowledge", "close", "notes"):
                return ok
        return 404, {"message": "not found", "took": 0.0, "requestId": "r"}


@pytest.fixture
def pagerduty_mock():
    mock = ContractMock("pagerduty")
    yield mock
    mock.close()


@pytest.fixture
def opsgenie_mock():
    mock = ContractMock("opsgenie")
    yield mock
    mock.close()


def _store_with_incidents(tmp_path, n: int):
    from unit.store.conftest import T0, make_alert

    db = SQLiteStore(tmp_path / "state.db")
    results = db.accept([make_alert(f"web{i}") for i in range(n)], now=T0)
    return db, [db.get_incident(r.incident_id) for r in results]


def _timeline(timeline: PagerTimeline, incident) -> list[str]:
    """An approval page, its acknowledgement, two automated actions, the resolution."""
    timeline.trigger(incident, f"approval needed ({incident.id})", severity="warning")
    timeline.acknowledge(incident, "approved")
    for attempt in (1, 2):
        timeline.change(f"run {attempt} done", {"incident_id": incident.id, "attempt": attempt})
    timeline.resolve(incident)
    return ["trigger", "acknowledge", "change", "change", "resolve"]


def _drain(outbox: PagerOutbox, passes: int = 50) -> None:
    for _ in range(passes):
        if outbox.deliver_due(now=LATER) == 0:
            return
    raise AssertionError("the outbox did not drain")


def _pd_kind(path: str, body: dict) -> str:
    return "change" if path == "/v2/change/enqueue" else body["event_action"]


def test_pagerduty_outage_loses_nothing_and_keeps_order(tmp_path, pagerduty_mock) -> None:
    db, incidents = _store_with_incidents(tmp_path, 3)
    client = PagerDuty(PagerDutyConfig(ROUTING_KEY, pagerduty_mock.url, 5.0))
    counts: list[str] = []
    outbox = PagerOutbox(db, client, base_s=0.01, cap_s=0.05, count=counts.append)
    timeline = PagerTimeline(db, "pagerduty")
    pagerduty_mock.fail_with = 500
    expected = {i.id: _timeline(timeline, i) for i in incidents}
    for _ in range(4):  # the outage lasts several passes
        assert outbox.deliver_due(now=LATER) == 3  # one head per incident, each failing
    assert pagerduty_mock.accepted == []
    pending = db.list_pager_events(status="pending")
    assert len(pending) == 15
    heads = [e for e in pending if e.attempts]
    assert sorted(e.attempts for e in heads) == [4, 4, 4] and heads[0].last_error.startswith(
        "PagerDuty /v2/enqueue: HTTP 500"
    )
    pagerduty_mock.fail_with = None
    _drain(outbox)
    # every event exactly once, each incident's in the order written
    assert len(pagerduty_mock.accepted) == 15
    by_key: dict[str, list[str]] = {}
    for path, body in pagerduty_mock.accepted:
        key = body.get("dedup_key") or body["payload"]["custom_details"]["incident_id"]
        by_key.setdefault(str(key), []).append(_pd_kind(path, body))
    for incident in incidents:
        changes = [
            b["payload"]["custom_details"]["attempt"]
            for p, b in pagerduty_mock.accepted
            if p == "/v2/change/enqueue"
            and b["payload"]["custom_details"]["incident_id"] == incident.id
        ]
        assert changes == [1, 2]
        alerts = [k for k in by_key[incident.fingerprint]]
        assert alerts == [k for k in expected[incident.id] if k != "change"]
    sent = [(p, b) for p, b in pagerduty_mock.accepted if b.get("dedup_key")]
    trigger = next(b for _, b in sent if b["event_action"] == "trigger")
    assert trigger["payload"]["severity"] == "warning"
    assert trigger["payload"]["source"] == "selfheal-dispatcher"
    assert trigger["dedup_key"] == incidents[0].fingerprint
    assert all(e.status == "delivered" for e in db.list_pager_events())
    assert counts.count("delivered") == 15 and counts.count("retried") == 12
    db.close()


def test_order_holds_within_an_incident_across_failures(tmp_path, pagerduty_mock) -> None:
    """A head that fails blocks its incident's later events, not other incidents'."""
    db, (a, b) = _store_with_incidents(tmp_path, 2)
    client = PagerDuty(PagerDutyConfig(ROUTING_KEY, pagerduty_mock.url, 5.0))
    outbox = PagerOutbox(db, client, base_s=0.01, cap_s=0.05)
    timeline = PagerTimeline(db, "pagerduty")
    timeline.trigger(a, "a down")
    pagerduty_mock.fail_with = 503
    outbox.deliver_due(now=LATER)  # a's trigger fails once
    pagerduty_mock.fail_with = None
    timeline.trigger(b, "b down")
    timeline.resolve(a)
    outbox.deliver_due(now=datetime.now(UTC) - timedelta(hours=1))  # a's head is not due
    assert [b_["dedup_key"] for _, b_ in pagerduty_mock.accepted] == []
    outbox.deliver_due()  # b's trigger is due now; a's may or may not be (jitter)
    assert b.fingerprint in [x["dedup_key"] for _, x in pagerduty_mock.accepted]
    _drain(outbox)
    keys = [(x["dedup_key"], x["event_action"]) for _, x in pagerduty_mock.accepted]
    assert [k for k in keys if k[0] == a.fingerprint] == [
        (a.fingerprint, "trigger"),
        (a.fingerprint, "resolve"),
    ]
    db.close()


def test_replicas_sharing_a_store_send_each_event_once(tmp_path, pagerduty_mock) -> None:
    """Two dispatchers' outboxes on one database, delivering at the same time."""
    db, incidents = _store_with_incidents(tmp_path, 4)
    timeline = PagerTimeline(db, "pagerduty")
    for incident in incidents:
        _timeline(timeline, incident)
    client = PagerDuty(PagerDutyConfig(ROUTING_KEY, pagerduty_mock.url, 5.0))
    stores = [SQLiteStore(tmp_path / "state.db") for _ in range(2)]
    outboxes = [PagerOutbox(s, client, base_s=0.01, cap_s=0.05) for s in stores]
    threads = [threading.Thread(target=_drain, args=(o, 200)) for o in outboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(pagerduty_mock.requests) == len(pagerduty_mock.accepted) == 20
    assert all(e.status == "delivered" for e in db.list_pager_events())
    for s in (*stores, db):
        s.close()


def test_refused_event_is_dead_at_once_and_the_next_goes_on(tmp_path, pagerduty_mock) -> None:
    db, (incident,) = _store_with_incidents(tmp_path, 1)
    client = PagerDuty(PagerDutyConfig(ROUTING_KEY, pagerduty_mock.url, 5.0))
    counts: list[str] = []
    outbox = PagerOutbox(db, client, base_s=0.01, cap_s=0.05, count=counts.append)
    # an event the API calls invalid (a severity it does not know): 400
    bad = db.enqueue_pager_event(
        incident.id,
        "pagerduty",
        "trigger",
        {"dedup_key": incident.fingerprint, "summary": "x", "severity": "apocalyptic"},
    )
    PagerTimeline(db, "pagerduty").trigger(incident, "service down")
    _drain(outbox)
    dead: PagerEvent = next(e for e in db.list_pager_events() if e.id == bad.id)
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert "HTTP 400" in dead.last_error and "invalid event" in dead.last_error
    assert len(pagerduty_mock.requests) == 2  # the refused one was sent once, never again
    assert [b["payload"]["summary"] for _, b in pagerduty_mock.accepted] == ["service down"]
    assert counts == ["dead", "delivered"]
    db.close()


def test_rate_limited_event_is_retried(tmp_path, pagerduty_mock) -> None:
    db, (incident,) = _store_with_incidents(tmp_path, 1)
    client = PagerDuty(PagerDutyConfig(ROUTING_KEY, pagerduty_mock.url, 5.0))
    outbox = PagerOutbox(db, client, base_s=0.01, cap_s=0.05)
    PagerTimeline(db, "pagerduty").trigger(incident, "service down")
    pagerduty_mock.fail_with = 429
    outbox.deliver_due(now=LATER)
    [event] = db.list_pager_events()
    assert (event.status, event.attempts) == ("pending", 1)
    pagerduty_mock.fail_with = None
    _drain(outbox)
    assert db.list_pager_events()[0].status == "delivered"
    db.close()


def test_pager_down_entirely_is_retried(tmp_path) -> None:
    """Nothing listening at all (connection refused) is an outage too."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db, (incident,) = _store_with_incidents(tmp_path, 1)
    client = PagerDuty(PagerDutyConfig(ROUTING_KEY, f"http://127.0.0.1:{port}", 2.0))
    outbox = PagerOutbox(db, client, base_s=0.01, cap_s=0.05)
    PagerTimeline(db, "pagerduty").trigger(incident, "service down")
    outbox.deliver_due(now=LATER)
    [event] = db.list_pager_events()
    assert (event.status, event.attempts) == ("pending", 1)
    db.close()


def test_opsgenie_outage_then_alias_calls_in_order(tmp_path, opsgenie_mock) -> None:
    db, (a, b) = _store_with_incidents(tmp_path, 2)
    config = PagerConfig("opsgenie", GENIE_KEY, opsgenie_mock.url, 5.0)
    outbox = PagerOutbox(db, Opsgenie(config), base_s=0.01, cap_s=0.05)
    timeline = PagerTimeline(db, "opsgenie")
    timeline.change("before any page", {"incident_id": a.id})  # no alert yet: not a note
    opsgenie_mock.fail_with = 500
    for incident in (a, b):
        _timeline(timeline, incident)
    outbox.deliver_due(now=LATER)
    outbox.deliver_due(now=LATER)
    opsgenie_mock.fail_with = None
    _drain(outbox)
    assert len(opsgenie_mock.accepted) == 10
    for incident in (a, b):
        alias = urllib.parse.quote(incident.fingerprint, safe="")
        paths = [
            p.split("?")[0]
            for p, body in opsgenie_mock.accepted
            if body.get("alias") == incident.fingerprint or f"/{alias}/" in p
        ]
        assert paths == [
            "/v2/alerts",
            f"/v2/alerts/{alias}/acknowledge",
            f"/v2/alerts/{alias}/notes",
            f"/v2/alerts/{alias}/notes",
            f"/v2/alerts/{alias}/close",
        ]
    create = opsgenie_mock.accepted[0][1]
    assert create["priority"] == "P3" and create["source"] == "selfheal-dispatcher"
    assert all(v == str(v) for v in create["details"].values())  # Opsgenie wants strings
    for incident in (a, b):
        alias = urllib.parse.quote(incident.fingerprint, safe="")
        notes = [
            x["note"]
            for p, x in opsgenie_mock.accepted
            if p.startswith(f"/v2/alerts/{alias}/notes")
        ]
        assert notes == ["run 1 done", "run 2 done"]
    db.close()


def test_opsgenie_wrong_key_is_dead(tmp_path, opsgenie_mock) -> None:
    db, (incident,) = _store_with_incidents(tmp_path, 1)
    config = PagerConfig("opsgenie", "not-the-key", opsgenie_mock.url, 5.0)
    outbox = PagerOutbox(db, Opsgenie(config), base_s=0.01, cap_s=0.05)
    PagerTimeline(db, "opsgenie").trigger(incident, "service down")
    _drain(outbox)
    [event] = db.list_pager_events()
    assert event.status == "dead" and "HTTP 401" in event.last_error
    db.close()


def test_pager_config(tmp_path) -> None:
    (tmp_path / "og.key").write_text(GENIE_KEY + "\n")
    cfg = config_from_data(
        {"pager": {"target": "opsgenie", "api_key_file": "og.key", "retry": {"base_s": 2}}},
        tmp_path,
    )
    assert cfg.pager == PagerConfig("opsgenie", GENIE_KEY, "https://api.opsgenie.com", base_s=2.0)
    legacy = config_from_data({"pagerduty": {"routing_key": ROUTING_KEY}}, tmp_path)
    assert legacy.pager is not None and legacy.pager.target == "pagerduty"
    assert legacy.pager.url == "https://events.pagerduty.com"
    for bad, where in (
        ({"pager": {"target": "sms", "routing_key": "k"}}, "pager.target"),
        ({"pager": {"target": "opsgenie", "routing_key": "k"}}, "pager.routing_key"),
        ({"pager": {"target": "pagerduty"}}, "pager"),
        ({"pager": {"routing_key": "k", "retry": {"base_s": 5, "cap_s": 1}}}, "pager"),
        ({"pager": {"routing_key": "k"}, "pagerduty": {"routing_key": "k"}}, "pager"),
    ):
        with pytest.raises(ConfigError) as err:
            config_from_data(bad, tmp_path)
        assert err.value.path == where


def _risky_policy(env) -> None:
    (env["tmp"] / "policy.yml").write_text(
        yaml.safe_dump(policy_data(str(env["tmp"] / "heal.yml")))
    )


def test_dispatcher_timeline_survives_outage_and_restart(
    make_dispatcher, env, pagerduty_mock
) -> None:
    """An approval incident's timeline (page, acknowledgement, the run's change event,
    resolution) written while PagerDuty answers 500; the dispatcher stops with everything
    pending; a new dispatcher on the same store delivers it all, once, in order."""
    _risky_policy(env)
    pager = {
        "target": "pagerduty",
        "routing_key": ROUTING_KEY,
        "url": pagerduty_mock.url,
        "retry": {"base_s": 0.05, "cap_s": 0.2},
    }
    pagerduty_mock.fail_with = 500
    d, client = make_dispatcher(workers=1, pager=pager)
    labels = {"alertname": "OpsRisky", "host": "web-01"}
    [r] = client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN).json()[
        "results"
    ]
    incident_id = r["incident_id"]
    rid = f"incident-{incident_id}"
    wait_for(lambda: d.store.list_pager_events(incident_id=incident_id))
    assert client.post(f"/approvals/{rid}/approve", token=ALICE).status == 200
    wait_for(lambda: d.store.list_runs(incident_id=incident_id, status="succeeded"), timeout=120)
    client.post("/alerts/alertmanager", am_body(am_alert(labels, status="resolved")), token=TOKEN)
    wait_for(lambda: len(d.store.list_pager_events(incident_id=incident_id)) == 4)
    wait_for(lambda: d.metrics.pager.value(target="pagerduty", outcome="retried") >= 2)
    d.stop()
    assert pagerduty_mock.accepted == []
    pending = [e.kind for e in SQLiteStore(env["tmp"] / "state/selfheal.db").list_pager_events()]
    assert pending == ["trigger", "acknowledge", "change", "resolve"]
    pagerduty_mock.fail_with = None
    d2, _ = make_dispatcher(workers=0, pager=pager)
    wait_for(lambda: len(pagerduty_mock.accepted) == 4, timeout=30)
    assert [_pd_kind(p, b) for p, b in pagerduty_mock.accepted] == [
        "trigger",
        "acknowledge",
        "change",
        "resolve",
    ]
    fingerprint = r["fingerprint"]
    assert [b.get("dedup_key") for _, b in pagerduty_mock.accepted] == [
        fingerprint,
        fingerprint,
        None,
        fingerprint,
    ]
    change = pagerduty_mock.accepted[2][1]["payload"]
    assert change["summary"] == "selfheal ran risky on web-01: succeeded"
    assert all(e.status == "delivered" for e in d2.store.list_pager_events())
    assert d2.metrics.pager.value(target="pagerduty", outcome="delivered") == 4
