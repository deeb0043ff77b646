"""Intake under hostile input: timestamps in range, one strict JSON reader for every body,
Content-Type checked, refusals audited (bounded), timestamped HMAC signatures accepted once,
the sender recorded on every alert, and a warning for tokens that can both raise and approve.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import time

import pytest
from unit.dispatcher.helpers import (
    ALICE,
    HMAC_SECRET,
    TOKEN,
    am_alert,
    am_body,
    hmac_headers,
)
from unit.dispatcher.test_intake import ALARM, AM, AZURE, EVENTBRIDGE, GRAFANA, _sns

from selfheal.audit import iter_records
from selfheal.dispatcher import config_from_data

OPS = "operator-token-0123456789"


def _tokens(env) -> list[dict]:
    return [
        *env["config"]["tokens"],
        {"name": "ops", "token": OPS, "scopes": ["read", "operate"]},
    ]


def _sources(env, **changes) -> dict:
    sources = copy.deepcopy(env["config"]["sources"])
    for name, change in changes.items():
        sources[name] = {**sources.get(name, {}), **change}
    return sources


GENERIC_TIMED = {"name": "check", "status": "state", "labels": "tags", "starts_at": "at"}
GENERIC_TIMED.update({"firing": "down", "resolved": "up"})


def _with_time(source: str, value) -> tuple[dict, str]:
    """A valid body of `source` with its start timestamp set to `value`; and that field."""
    if source in ("alertmanager", "grafana"):
        body = copy.deepcopy(AM if source == "alertmanager" else GRAFANA)
        body["alerts"][0]["startsAt"] = value
        return body, "alerts[0].startsAt"
    if source == "cloudwatch_sns":
        return _sns({**ALARM, "StateChangeTime": value}), "Message.StateChangeTime"
    if source == "cloudwatch_eventbridge":
        body = copy.deepcopy(EVENTBRIDGE)
        body["detail"]["state"]["timestamp"] = value
        return body, "detail.state.timestamp"
    if source == "azure_monitor":
        body = copy.deepcopy(AZURE)
        body["data"]["essentials"]["firedDateTime"] = value
        return body, "data.essentials.firedDateTime"
    return {"check": "disk", "state": "down", "tags": {"host": "web-02"}, "at": value}, "at"


def _post(client, source: str, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if source == "grafana":
        return client.post(f"/alerts/{source}", raw, headers={**hmac_headers(raw), **headers})
    return client.post(f"/alerts/{source}", raw, token=TOKEN, headers=headers)


@pytest.fixture
def timed(make_dispatcher, env):
    return make_dispatcher(sources=_sources(env, generic={"mapping": GENERIC_TIMED}))


TEXT_SOURCES = ["alertmanager", "grafana", "cloudwatch_eventbridge", "azure_monitor"]
OUT_OF_RANGE = [
    "0002-01-01T00:00:00Z",
    "0999-12-31T23:59:59Z",
    "0001-01-01T00:00:01Z",  # not Go's zero time
    "1969-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
    "9999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+01:00",
]


# -- 1. nothing accepted can poison the store ------------------------------------------------


@pytest.mark.parametrize("source", [*TEXT_SOURCES, "cloudwatch_sns"])
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_timestamps_out_of_range_are_refused_by_field(timed, source, value) -> None:
    d, client = timed
    if source == "cloudwatch_sns" and value.endswith("+00:00"):
        value = value.replace("+00:00", "+0000")  # CloudWatch's own offset spelling
    body, field = _with_time(source, value)
    r = _post(client, source, body)
    assert r.status == 422, r.body
    assert r.json()["field"] == field
    assert "out of range" in r.json()["error"]
    assert d.store.list_incidents() == []


@pytest.mark.parametrize("value", [-1, -0.5, 7258118400, 1e12, -62135596800, 253402300800])
def test_generic_epoch_numbers_out_of_range_are_refused(timed, value) -> None:
    d, client = timed
    body, _ = _with_time("generic", value)
    r = _post(client, "generic", body)
    assert r.status == 422, r.body
    assert r.json()["field"] == "at" and "out of range" in r.json()["error"]
    assert d.store.list_incidents() == []


@pytest.mark.parametrize("value", ["1970-01-01T00:00:00Z", "2199-12-31T23:59:59Z"])
def test_range_bounds_and_go_zero_time_are_accepted(timed, value) -> None:
    d, client = timed
    body, _ = _with_time("alertmanager", value)
    body["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z"  # Go's zero time: not set
    r = _post(client, "alertmanager", body)
    assert r.status == 202, r.body
    [incident] = d.store.list_incidents()
    [alert] = d.store.alerts_of(incident.id)
    assert alert["ends_at"] is None
    assert alert["starts_at"].startswith(value[:19].replace("T", "T"))


# -- 2. one hardened JSON reader for every endpoint ---------------------------------------

DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"reason": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}"


@pytest.fixture
def strict(make_dispatcher, env):
    return make_dispatcher(
        tokens=_tokens(env),
        sources=_sources(env, cloudwatch_sns={"verify_signatures": True}),
    )


def _endpoints() -> list[tuple[str, str]]:
    return [
        ("/approvals/incident-1/approve", ALICE),
        ("/approvals/incident-1/deny", ALICE),
        ("/runs/1/cancel", OPS),
        ("/incidents/1/root-cause", TOKEN),
        ("/alerts/cloudwatch_sns", TOKEN),
        ("/alerts/alertmanager", TOKEN),
    ]


@pytest.mark.parametrize(("path", "token"), _endpoints())
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deep_json_is_a_4xx_on_every_endpoint(strict, path, token, body) -> None:
    _, client = strict
    r = client.post(path, body, token=token)
    assert r.status in (400, 422), (r.status, r.body)
    assert "nested deeper" in r.json()["error"]


DUPLICATES = {
    "/approvals/incident-1/approve": b'{"reason": "ok", "reason": "approve it all"}',
    "/approvals/incident-1/deny": b'{"reason": "no", "reason": "yes"}',
    "/runs/1/cancel": b'{"reason": "stop", "reason": "go on"}',
    "/incidents/1/root-cause": (
        b'{"candidates": [{"service": "a"}], "candidates": [{"service": "b"}]}'
    ),
    "/alerts/cloudwatch_sns": b'{"Type": "Notification", "Type": "SubscriptionConfirmation"}',
    "/alerts/alertmanager": b'{"version": "4", "alerts": [], "alerts": []}',
}


@pytest.mark.parametrize(("path", "token"), _endpoints())
def test_duplicate_keys_are_refused_on_every_endpoint(strict, path, token) -> None:
    _, client = strict
    r = client.post(path, DUPLICATES[path], token=token)
    assert r.status in (400, 422), (r.status, r.body)
    assert "duplicate key" in r.json()["error"]


# -- 4. intake refusals are audited, and bounded -------------------------------------------


def _refusals(env) -> list[dict]:
    return [
        r
        for r in iter_records(env["tmp"] / "audit")
        if r["action"] in ("intake.refused", "intake.refused.suppressed")
    ]


def test_a_refusal_leaves_an_audit_record_and_a_log_line(make_dispatcher, env, caplog) -> None:
    _, client = make_dispatcher()
    body = json.dumps({"version": "4", "alerts": "not a list"}).encode()
    with caplog.at_level(logging.WARNING, logger="selfheal.dispatcher.http"):
        r = client.post("/alerts/alertmanager", body, token=TOKEN)
    assert r.status == 422
    [record] = _refusals(env)
    assert record["action"] == "intake.refused"
    data = record["data"]
    assert data["source"] == "alertmanager" and data["status"] == 422
    assert data["field"] == "alerts" and "array" in data["reason"]
    assert data["sha256"] == hashlib.sha256(body).hexdigest()
    assert data["identity"] == "alertmanager"
    assert any("intake refused" in m and "alertmanager" in m for m in caplog.messages)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "text/html"}, AM, 415),
        ({}, b"{", 400),
        ({}, {"version": "4"}, 422),
        ({"content-length": str(10**9)}, AM, 413),
    ],
)
def test_each_kind_of_refusal_is_audited(make_dispatcher, env, headers, body, status) -> None:
    _, client = make_dispatcher()
    r = client.post("/alerts/alertmanager", body, token=TOKEN, headers=headers)
    assert r.status == status
    [record] = _refusals(env)
    assert record["data"]["status"] == status and record["data"]["identity"] == "alertmanager"


def test_a_refusal_flood_is_bounded_and_summarised(make_dispatcher, env) -> None:
    _, client = make_dispatcher()
    refusals = client.app.refusals
    refusals.burst, refusals.rate = 3, 0.0  # three records, then nothing refills
    for i in range(40):
        assert client.post("/alerts/generic", {"n": i}, token=TOKEN).status == 422
    assert [r["action"] for r in _refusals(env)] == ["intake.refused"] * 3
    refusals.rate = 1e9  # the bucket refills: the next refusal is recorded, after a summary
    assert client.post("/alerts/generic", {"n": 41}, token=TOKEN).status == 422
    records = _refusals(env)
    assert [r["action"] for r in records[3:]] == ["intake.refused.suppressed", "intake.refused"]
    assert records[3]["data"]["count"] == 37
    assert "37 more refusals suppressed" in records[3]["reasons"][0]


# -- 5. Content-Type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain; charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
        "",
    ],
)
@pytest.mark.parametrize("source", ["alertmanager", "grafana", "generic"])
def test_wrong_or_missing_content_type_is_415(make_dispatcher, source, content_type) -> None:
    d, client = make_dispatcher()
    body = {"alertmanager": AM, "grafana": GRAFANA}.get(source, _with_time("generic", None)[0])
    r = _post(client, source, body, **{"content-type": content_type})
    assert r.status == 415, r.body
    assert r.json()["field"] == "Content-Type"
    assert d.store.list_incidents() == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.x+json",
    ],
)
def test_json_content_types_are_accepted(make_dispatcher, content_type) -> None:
    _, client = make_dispatcher()
    assert _post(client, "alertmanager", AM, **{"content-type": content_type}).status == 202


def test_sns_text_plain_is_accepted_for_sns_only(make_dispatcher) -> None:
    _, client = make_dispatcher()
    sns = {"content-type": "text/plain; charset=UTF-8"}  # what SNS HTTP(S) deliveries send
    assert _post(client, "cloudwatch_sns", _sns(ALARM), **sns).status == 202
    assert _post(client, "cloudwatch_eventbridge", EVENTBRIDGE, **sns).status == 415
    assert _post(client, "azure_monitor", AZURE, **sns).status == 415


# -- 7. HMAC over a timestamp, each delivery once --------------------------------------------


def _grafana_body(n: int = 0) -> bytes:
    return json.dumps({**GRAFANA, "groupKey": f"g{n}"}).encode()


def test_timestamped_signature_is_accepted_once(make_dispatcher) -> None:
    d, client = make_dispatcher()
    body = _grafana_body()
    headers = hmac_headers(body)
    assert client.post("/alerts/grafana", body, headers=headers).status == 202
    r = client.post("/alerts/grafana", body, headers=headers)  # captured and replayed
    assert r.status == 403 and "replay" in r.json()["error"]
    [incident] = d.store.list_incidents()
    assert incident.count == 1


def test_replay_is_refused_by_another_replica_sharing_the_store(make_dispatcher) -> None:
    _, first = make_dispatcher()
    _, second = make_dispatcher()  # the same store: another replica
    body = _grafana_body()
    headers = hmac_headers(body)
    assert first.post("/alerts/grafana", body, headers=headers).status == 202
    assert second.post("/alerts/grafana", body, headers=headers).status == 403


@pytest.mark.parametrize("skew", [-301, 301, -86400, 10**6])
def test_timestamp_outside_tolerance_is_refused(make_dispatcher, skew) -> None:
    d, client = make_dispatcher()
    body = _grafana_body()
    r = client.post("/alerts/grafana", body, headers=hmac_headers(body, at=int(time.time()) + skew))
    assert r.status == 403, r.body
    assert r.json()["field"] == "X-Grafana-Alerting-Timestamp"
    assert d.store.list_incidents() == []


def test_the_timestamp_is_part_of_the_signed_string(make_dispatcher) -> None:
    _, client = make_dispatcher()
    body = _grafana_body()
    headers = hmac_headers(body)
    moved = {**headers, "X-Grafana-Alerting-Timestamp": str(int(time.time()) + 1)}
    assert client.post("/alerts/grafana", body, headers=moved).status == 403
    body_only = "sha256=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    stamped = {**headers, "X-Selfheal-Signature": body_only}
    assert client.post("/alerts/grafana", body, headers=stamped).status == 403
    assert (
        client.post("/alerts/grafana", body, headers={"X-Selfheal-Signature": body_only}).status
        == 401
    )
    for bad in ("", "soon", "1e9", "-5", "9" * 20):
        r = client.post(
            "/alerts/grafana", body, headers={**headers, "X-Grafana-Alerting-Timestamp": bad}
        )
        assert r.status == 401, bad


def test_legacy_body_only_signatures_only_when_configured(make_dispatcher, env) -> None:
    legacy = {"hmac_require_timestamp": False, "hmac_timestamp_header": "X-Stamp"}
    _, client = make_dispatcher(sources=_sources(env, grafana=legacy))
    body = _grafana_body()
    body_only = "sha256=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert (
        client.post("/alerts/grafana", body, headers={"X-Selfheal-Signature": body_only}).status
        == 202
    )
    stamp = str(int(time.time()))
    mac = hmac.new(HMAC_SECRET.encode(), f"{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    signed = {"X-Selfheal-Signature": mac, "X-Stamp": stamp}  # bare hex, as Grafana sends
    assert client.post("/alerts/grafana", body, headers=signed).status == 202
    assert client.post("/alerts/grafana", body, headers=signed).status == 403  # replay


# -- 8. the sender of every alert ----------------------------------------------------------


def test_sender_is_the_token_or_the_source_never_the_payload(make_dispatcher, env) -> None:
    d, client = make_dispatcher(sources=_sources(env, azure_monitor={"auth": "none"}))
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    body = am_body(am_alert(labels, sender="mallory", requester="mallory"))
    body["sender"] = "mallory"
    r = client.post("/alerts/alertmanager", body, token=TOKEN)
    assert r.status == 202, r.body
    first = r.json()["results"][0]["incident_id"]
    raw = _grafana_body()
    r = client.post("/alerts/grafana", raw, headers=hmac_headers(raw))
    second = r.json()["results"][0]["incident_id"]
    r = client.post("/alerts/azure_monitor", AZURE)
    third = r.json()["results"][0]["incident_id"]
    for incident_id, sender in [
        (first, "alertmanager"),
        (second, "source:grafana"),
        (third, "source:azure_monitor"),
    ]:
        [alert] = d.store.alerts_of(incident_id)
        assert alert["sender"] == sender
        assert d.store.get_incident(incident_id).requester == sender


# -- 9. a token that can raise and approve --------------------------------------------------


def test_a_token_with_intake_and_approve_is_warned_about(env, caplog) -> None:
    data = copy.deepcopy(env["config"])
    data["tokens"].append(
        {"name": "both", "token": "both-token-0123456789", "scopes": ["intake", "approve"]}
    )
    cfg = config_from_data(data, env["tmp"])
    with caplog.at_level(logging.WARNING, logger="selfheal.dispatcher"):
        cfg.validate()
        cfg.validate()  # the CLI and the Dispatcher both validate: one warning
    warnings = [
        r for r in caplog.records if "intake" in r.getMessage() and "approve" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "'both'" in warnings[0].getMessage()
    assert not any("'alice'" in r.getMessage() for r in caplog.records)


# -- found by the property suite: a NUL character failed PostgreSQL's whole group commit ------


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("alertmanager", am_body(am_alert({"alertname": "A\u0000", "host": "web-01"}))),
        ("alertmanager", {**AM, "receiver": "\u0000"}),  # kept only in the raw payload
        ("alertmanager", am_body(am_alert({"alertname": "A", "x\u0000": "1"}))),
        ("cloudwatch_sns", _sns({**ALARM, "AlarmName": "cpu\u0000"})),
        ("cloudwatch_eventbridge", {**EVENTBRIDGE, "id": "\u0000"}),
        ("generic", {"check": "disk", "state": "down", "tags": {"host": "a\u0000b"}}),
    ],
)
def test_nul_characters_are_refused(make_dispatcher, source, body) -> None:
    d, client = make_dispatcher()
    r = _post(client, source, body)
    assert r.status in (400, 422), r.body  # 422 names the field holding it (SNS: Message)
    assert "NUL" in r.json()["error"]
    assert d.store.list_incidents() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"header_timeout_s": 0}, "header_timeout_s"),
        ({"body_timeout_s": -1}, "body_timeout_s"),
        (
            {"sources": {"grafana": {"auth": "hmac", "hmac_secret": "s", "hmac_tolerance_s": 0}}},
            "sources.grafana.hmac_tolerance_s",
        ),
        (
            {
                "sources": {
                    "grafana": {
                        "auth": "hmac",
                        "hmac_secret": "s",
                        "hmac_timestamp_header": "X Stamp",
                    }
                }
            },
            "sources.grafana.hmac_timestamp_header",
        ),
        (
            {
                "sources": {
                    "grafana": {"auth": "hmac", "hmac_secret": "s", "hmac_require_timestamp": "no"}
                }
            },
            "sources.grafana.hmac_require_timestamp",
        ),
    ],
)
def test_timeout_and_signature_settings_are_validated(env, change, field) -> None:
    from selfheal.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config_from_data({**env["config"], **change}, env["tmp"]).validate()
    assert err.value.path == field
