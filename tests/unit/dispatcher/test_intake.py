"""HTTP intake: every source accepted, auth, size limits, field-naming 4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.dispatcher.helpers import (
    READ_TOKEN,
    TOKEN,
    am_alert,
    am_body,
    hmac_headers,
)

AM = am_body(am_alert({"alertname": "ServiceDown", "service": "app", "host": "localhost"}))


def _sns(alarm: dict) -> dict:
    return {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:selfheal",
        "Subject": "ALARM: cpu",
        "Message": json.dumps(alarm),
        "Timestamp": "2026-11-26T01:00:00.000Z",
    }


ALARM = {
    "AlarmName": "cpu-high",
    "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu-high",
    "AWSAccountId": "123456789012",
    "NewStateValue": "ALARM",
    "NewStateReason": "threshold crossed",
    "StateChangeTime": "2026-11-26T01:00:00.000+0000",
    "OldStateValue": "OK",
}
EVENTBRIDGE = {
    "version": "0",
    "id": "e-1",
    "detail-type": "CloudWatch Alarm State Change",
    "source": "aws.cloudwatch",
    "account": "123456789012",
    "time": "2026-11-26T01:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:disk"],
    "detail": {
        "alarmName": "disk",
        "state": {"value": "ALARM", "reason": "r", "timestamp": "2026-11-26T01:00:00.000+0000"},
        "previousState": {"value": "OK"},
    },
}
AZURE = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertId": "/subscriptions/x/alerts/1",
            "alertRule": "vm-cpu",
            "severity": "Sev2",
            "signalType": "Metric",
            "monitorCondition": "Fired",
            "monitoringService": "Platform",
            "alertTargetIDs": ["/subscriptions/x/vm1"],
            "firedDateTime": "2026-11-26T01:00:00Z",
        },
        "alertContext": {},
    },
}
GRAFANA = {
    "receiver": "selfheal",
    "status": "firing",
    "version": "1",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighLatency", "host": "web-01"},
            "annotations": {},
            "startsAt": "2026-11-26T01:00:00Z",
            "fingerprint": "abc123",
        }
    ],
}
GENERIC = {"check": "disk", "state": "down", "tags": {"host": "web-02"}}


@pytest.fixture
def client(make_dispatcher):
    return make_dispatcher()[1]


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("alertmanager", AM),
        ("cloudwatch_sns", _sns(ALARM)),
        ("cloudwatch_eventbridge", EVENTBRIDGE),
        ("azure_monitor", AZURE),
        ("generic", GENERIC),
    ],
)
def test_each_token_source_is_accepted(make_dispatcher, source, body) -> None:
    d, client = make_dispatcher()
    r = client.post(f"/alerts/{source}", body, token=TOKEN)
    assert r.status == 202, r.body
    result = r.json()["results"][0]
    assert result["decision"] == "new"
    # committed before the 2xx: readable right away
    assert d.store.get_incident(result["incident_id"]).source == source


def test_grafana_with_hmac_signature(make_dispatcher) -> None:
    _, client = make_dispatcher()
    body = json.dumps(GRAFANA).encode()
    r = client.post("/alerts/grafana", body, headers=hmac_headers(body))
    assert r.status == 202, r.body
    assert r.json()["results"][0]["fingerprint"] == "abc123"


def test_bad_hmac_signature_is_403_and_missing_is_401(client) -> None:
    body = json.dumps(GRAFANA).encode()
    r = client.post("/alerts/grafana", body, headers=hmac_headers(body, "not-the-secret"))
    assert r.status == 403
    r = client.post("/alerts/grafana", body, headers={**hmac_headers(body + b" ")})
    assert r.status == 403
    assert client.post("/alerts/grafana", body).status == 401
    # a bearer token is no substitute for the signature
    assert client.post("/alerts/grafana", body, token=TOKEN).status == 401


def test_token_auth_failures(client) -> None:
    assert client.post("/alerts/alertmanager", AM).status == 401
    r = client.post("/alerts/alertmanager", AM, token="wrong-token-000000000000")
    assert r.status == 401
    assert r.headers.get("www-authenticate", "").startswith("Bearer")
    r = client.post("/alerts/alertmanager", AM, headers={"authorization": f"Basic {TOKEN}"})
    assert r.status == 401
    r = client.post("/alerts/alertmanager", AM, token=READ_TOKEN)  # no intake scope
    assert r.status == 403
    assert client.get("/incidents").status == 401
    assert client.get("/incidents", token=TOKEN).status == 403  # intake-only token


def test_sns_subscription_is_recorded_not_fetched(make_dispatcher) -> None:
    d, client = make_dispatcher()
    body = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m-2",
        "Token": "tok",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:selfheal",
        "Message": "confirm",
        "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok",
        "Timestamp": "2026-11-26T01:00:00.000Z",
    }
    r = client.post("/alerts/cloudwatch_sns", body, token=TOKEN)
    assert r.status == 202
    assert r.json()["status"] == "recorded"
    assert "confirm-subscription" in r.json()["instructions"]
    assert d.subscriptions[-1]["confirmed"] is False
    assert d.store.list_incidents() == []


def test_body_size_limit(make_dispatcher) -> None:
    _, client = make_dispatcher(max_body=2048)
    big = b"{" + b" " * 4096 + b"}"
    assert client.post("/alerts/alertmanager", big, token=TOKEN).status == 413
    # without a Content-Length the streamed body is counted too
    r = client.post("/alerts/alertmanager", big, token=TOKEN, headers={"content-length": "10"})
    assert r.status == 413


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"not json", 400, "(payload)"),
        ({"version": "4", "alerts": [{"status": "firing", "labels": []}]}, 422, "alerts[0].labels"),
        (
            {"version": "4", "alerts": [{"status": "maybe", "labels": {"alertname": "x"}}]},
            422,
            "alerts[0].status",
        ),
        ({"version": "4"}, 422, "alerts"),
    ],
)
def test_bad_payload_names_the_field(client, body, status, field) -> None:
    r = client.post("/alerts/alertmanager", body, token=TOKEN)
    assert r.status == status, r.body
    assert r.json()["field"] == field
    assert field in r.json()["error"]


def test_routing_errors(client) -> None:
    assert client.post("/alerts/nagios", AM, token=TOKEN).status == 404
    r = client.get("/alerts/alertmanager", token=TOKEN)
    assert r.status == 405 and r.headers["allow"] == "POST"
    assert client.get("/nowhere").status == 404
    assert client.get("/incidents/abc", token=READ_TOKEN).status == 400
    assert client.get("/incidents/999", token=READ_TOKEN).status == 404
    assert client.get("/runs/999", token=READ_TOKEN).status == 404
    assert client.get("/incidents?limit=0", token=READ_TOKEN).json()["field"] == "limit"
    assert client.get("/incidents?status=x", token=READ_TOKEN).json()["field"] == "status"


def test_incident_view_counts_duplicates(client) -> None:
    for _ in range(3):
        assert client.post("/alerts/alertmanager", AM, token=TOKEN).status == 202
    listed = client.get("/incidents?status=open", token=READ_TOKEN).json()["incidents"]
    assert len(listed) == 1
    view = client.get(f"/incidents/{listed[0]['id']}", token=READ_TOKEN).json()
    assert view["count"] == 3
    assert view["dedup"] == {"firing": 3, "duplicates": 2}


def test_openapi_describes_every_endpoint(client) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    for path in (
        "/alerts/{source}",
        "/incidents",
        "/incidents/{id}",
        "/incidents/{id}/root-cause",
        "/incidents/{id}/release",
        "/runs/{id}",
        "/approvals",
        "/approvals/{request_id}/approve",
        "/approvals/{request_id}/deny",
        "/metrics",
        "/livez",
        "/readyz",
    ):
        assert path in spec["paths"], path


def test_health_and_metrics(client) -> None:
    assert client.get("/livez").status == 200
    ready = client.get("/readyz")
    assert ready.status == 200 and "store" in ready.json()["checks"]
    client.post("/alerts/alertmanager", AM, token=TOKEN)
    client.post("/alerts/alertmanager", b"[", token=TOKEN)
    text = client.get("/metrics").body.decode()
    assert 'selfheal_alerts_received_total{source="alertmanager"} 1' in text
    assert 'selfheal_requests_rejected_total{source="alertmanager",status="400"} 1' in text
    assert "selfheal_run_queue_depth" in text
    assert "selfheal_mttd_seconds_bucket" in text


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    source=st.sampled_from(
        ["alertmanager", "cloudwatch_sns", "cloudwatch_eventbridge", "azure_monitor", "generic"]
    ),
    body=st.one_of(
        st.binary(max_size=300),
        _json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"version": st.just("4"), "alerts": st.lists(_json_values, max_size=3)}
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_fuzz_never_500(fuzz_client, source, body) -> None:
    r = fuzz_client.post(f"/alerts/{source}", body, token=TOKEN)
    assert r.status in (202, 400, 413, 422), (r.status, r.body)
    if r.status != 202:
        assert "error" in r.json()


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    import yaml
    from unit.dispatcher.helpers import INVENTORY, Client, policy_data

    from selfheal.dispatcher import Dispatcher, build_app, config_from_data

    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "policy.yml").write_text(yaml.safe_dump(policy_data("none.yml")))
    (tmp / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    d = Dispatcher(
        config_from_data(
            {
                "store": str(tmp / "s.db"),
                "policy": "policy.yml",
                "inventory": "inventory.yml",
                "workers": 0,
                "tokens": [{"name": "am", "token": TOKEN}],
            },
            tmp,
        )
    )
    d.start()
    client = Client(build_app(d, manage_lifecycle=False))
    yield client
    d.stop()
    client.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
    path=st.lists(
        st.sampled_from(
            [
                "alerts",
                "incidents",
                "runs",
                "approvals",
                "approve",
                "deny",
                "1",
                "x",
                "alertmanager",
                "generic",
                "..",
                "%00",
                "-1",
                "9" * 30,
            ]
        ),
        max_size=4,
    ).map(lambda parts: "/" + "/".join(parts)),
    auth=st.sampled_from([None, TOKEN, READ_TOKEN, "Bearer", "x" * 20]),
    query=st.text(max_size=20),
)
def test_fuzz_any_route_never_500(fuzz_client, method, path, auth, query) -> None:
    r = fuzz_client.request(method, f"{path}?{query}", b"{}", token=auth)
    assert r.status < 500, (method, path, r.status, r.body)
