"""Each normaliser against real Alertmanager samples and the hand-written fixtures (which
follow each sender's documented contract; see alert_fixtures.py)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from support import SHARED
from unit.alerts import alert_fixtures as fx

from selfheal.alerts import (
    Alert,
    PayloadError,
    SubscriptionConfirmation,
    compute_fingerprint,
    normalise,
)
from selfheal.errors import ConfigError

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SAMPLES = SHARED / "samples" / "alertmanager"


def _sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"sample {name} not available")
    return path.read_bytes()


# -- Alertmanager (real payloads from Alertmanager 0.25) ----------------------------------


def test_alertmanager_single_firing():
    (alert,) = normalise("alertmanager", _sample("firing-v0.25.json"), received_at=NOW)
    assert isinstance(alert, Alert)
    assert (alert.source, alert.status, alert.name) == ("alertmanager", "firing", "ServiceDown")
    assert dict(alert.labels) == {
        "alertname": "ServiceDown",
        "instance": "web1",
        "severity": "critical",
    }
    assert dict(alert.annotations) == {"summary": "down"}
    assert alert.fingerprint == "ac3d4ae63a8e5e2f"  # Alertmanager's own
    assert alert.starts_at == datetime(2026, 11, 24, 19, 13, 35, 926862, tzinfo=UTC)
    assert alert.ends_at is None  # Go zero time
    assert alert.received_at == NOW
    assert alert.raw["fingerprint"] == "ac3d4ae63a8e5e2f"


def test_alertmanager_group_and_partly_resolved_share_fingerprints():
    firing = normalise("alertmanager", _sample("group-firing-2-alerts.json"))
    later = normalise("alertmanager", _sample("group-partly-resolved.json"))
    assert [a.labels["instance"] for a in firing] == ["lab-1:8080", "lab-2:8080"]
    assert [a.status for a in later] == ["resolved", "firing"]
    assert [a.fingerprint for a in firing] == [a.fingerprint for a in later]
    assert later[0].ends_at == datetime(2026, 11, 24, 20, 50, 31, tzinfo=UTC)
    assert later[0].annotations["runbook_url"] == "https://runbooks.example/web-down"


def test_alertmanager_one_alert_group():
    (alert,) = normalise("alertmanager", _sample("group-firing-1-alert.json"))
    assert alert.name == "HighLatency" and alert.labels["service"] == "checkout"


def test_alertmanager_without_fingerprint_hashes_labels():
    body = json.loads(_sample("firing-v0.25.json"))
    del body["alerts"][0]["fingerprint"]
    firing = normalise("alertmanager", body)[0]
    body["alerts"][0]["status"] = "resolved"
    body["alerts"][0]["annotations"] = {"summary": "back up"}
    body["alerts"][0]["endsAt"] = "2026-11-24T19:20:00Z"
    resolved = normalise("alertmanager", body)[0]
    assert len(firing.fingerprint) == 64
    assert firing.fingerprint == resolved.fingerprint
    assert firing.fingerprint == compute_fingerprint("alertmanager", firing.labels)
    body["alerts"][0]["labels"]["instance"] = "web2"
    assert normalise("alertmanager", body)[0].fingerprint != firing.fingerprint


def test_alertmanager_bytes_str_and_dict_agree():
    raw = _sample("group-firing-2-alerts.json")
    a = normalise("alertmanager", raw, received_at=NOW)
    b = normalise("alertmanager", raw.decode(), received_at=NOW)
    c = normalise("alertmanager", json.loads(raw), received_at=NOW)
    assert a == b == c


def test_alertmanager_rejects_other_versions():
    body = json.loads(_sample("firing-v0.25.json"))
    body["version"] = "3"
    with pytest.raises(PayloadError, match=r"^version: unsupported Alertmanager"):
        normalise("alertmanager", body)


def test_alert_is_read_only():
    (alert,) = normalise("alertmanager", _sample("firing-v0.25.json"))
    with pytest.raises(TypeError):
        alert.labels["instance"] = "evil"  # type: ignore[index]
    with pytest.raises(AttributeError):
        alert.status = "resolved"  # type: ignore[misc]
    assert alert.to_dict()["starts_at"] == "2026-11-24T19:13:35.926862Z"


# -- CloudWatch via SNS and via EventBridge -----------------------------------------------


def test_sns_alarm_firing():
    (alert,) = normalise("cloudwatch_sns", json.dumps(fx.sns_notification()).encode())
    assert (alert.source, alert.status, alert.name) == (
        "cloudwatch_sns",
        "firing",
        "orders-db-cpu-high",
    )
    assert dict(alert.labels) == {
        "alertname": "orders-db-cpu-high",
        "alarm_arn": fx.ALARM_ARN,
        "account": "210987654321",
        "region": "eu-west-1",
        "namespace": "AWS/RDS",
        "metric": "CPUUtilization",
        "DBInstanceIdentifier": "orders-db-1",
    }
    assert alert.annotations["state"] == "ALARM"
    assert alert.annotations["previous_state"] == "OK"
    assert alert.annotations["description"].startswith("CPU of the orders database")
    assert alert.starts_at == datetime(2026, 11, 20, 8, 15, 2, 118000, tzinfo=UTC)
    assert alert.ends_at is None
    assert alert.raw["Type"] == "Notification"


def test_sns_alarm_ok_is_resolved_with_same_fingerprint():
    firing = normalise("cloudwatch_sns", fx.sns_notification())[0]
    ok = fx.cloudwatch_alarm("OK", "2026-11-20T08:40:00.000+0000")
    resolved = normalise("cloudwatch_sns", fx.sns_notification(ok))[0]
    assert resolved.status == "resolved"
    assert resolved.ends_at == datetime(2026, 11, 20, 8, 40, tzinfo=UTC)
    assert resolved.starts_at is None
    assert resolved.fingerprint == firing.fingerprint


def test_sns_subscription_confirmation_is_not_an_alert():
    result = normalise("cloudwatch_sns", fx.sns_subscription_confirmation())
    assert isinstance(result, SubscriptionConfirmation)
    assert result.kind == "SubscriptionConfirmation"
    assert result.subscribe_url.startswith("https://sns.eu-west-1.amazonaws.com/?Action=")
    assert result.token.startswith("2336412f")
    assert result.topic_arn.endswith(":selfheal")


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://evil.example/?Action=ConfirmSubscription",
        "https://sns.eu-west-1.amazonaws.com.evil.example/",
        "file:///etc/passwd",
    ],
)
def test_sns_subscribe_url_must_be_sns(url):
    body = fx.sns_subscription_confirmation()
    body["SubscribeURL"] = url
    with pytest.raises(PayloadError, match=r"^SubscribeURL: must be an https URL"):
        normalise("cloudwatch_sns", body)


def test_sns_message_not_json():
    with pytest.raises(PayloadError, match=r"^Message: not JSON"):
        normalise("cloudwatch_sns", fx.sns_notification(Message="ALARM! cpu high"))


def test_sns_insufficient_data_is_rejected_clearly():
    body = fx.sns_notification(fx.cloudwatch_alarm("INSUFFICIENT_DATA"))
    with pytest.raises(PayloadError, match=r"^Message.NewStateValue: INSUFFICIENT_DATA"):
        normalise("cloudwatch_sns", body)


def test_sns_unknown_type():
    with pytest.raises(PayloadError, match=r"^Type: unknown SNS message type"):
        normalise("cloudwatch_sns", fx.sns_notification(Type="Surprise"))


def test_eventbridge_alarm_matches_sns_delivery():
    (alert,) = normalise("cloudwatch_eventbridge", fx.eventbridge_alarm())
    assert (alert.source, alert.status, alert.name) == (
        "cloudwatch_eventbridge",
        "firing",
        "orders-db-cpu-high",
    )
    sns = normalise("cloudwatch_sns", fx.sns_notification())[0]
    assert dict(alert.labels) == dict(sns.labels)
    assert alert.fingerprint == sns.fingerprint  # one alarm, however it was delivered
    assert alert.starts_at == sns.starts_at
    resolved = normalise("cloudwatch_eventbridge", fx.eventbridge_alarm("OK"))[0]
    assert resolved.status == "resolved" and resolved.fingerprint == alert.fingerprint


def test_eventbridge_other_event_rejected():
    body = fx.eventbridge_alarm()
    body["detail-type"] = "EC2 Instance State-change Notification"
    with pytest.raises(PayloadError, match=r"^detail-type: expected"):
        normalise("cloudwatch_eventbridge", body)


def test_eventbridge_metric_math_alarm_has_no_metric_labels():
    body = fx.eventbridge_alarm()
    metric = body["detail"]["configuration"]["metrics"][0]
    body["detail"]["configuration"]["metrics"] = [
        metric,
        copy.deepcopy(metric) | {"id": "m2"},
        {"id": "e1", "expression": "m1+m2", "returnData": True},
    ]
    (alert,) = normalise("cloudwatch_eventbridge", body)
    assert "metric" not in alert.labels and alert.labels["alarm_arn"] == fx.ALARM_ARN


# -- Azure Monitor -------------------------------------------------------------------------


def test_azure_fired_and_resolved():
    fired = normalise("azure_monitor", fx.azure_alert("Fired"))[0]
    assert (fired.source, fired.status, fired.name) == ("azure_monitor", "firing", "shop-web-cpu")
    assert fired.labels["severity"] == "Sev2"
    assert fired.labels["target_ids"] == fx.AZURE_TARGET
    assert fired.labels["signal_type"] == "Metric"
    assert fired.annotations["configuration_items"] == "shop-web-01"
    assert fired.annotations["alert_id"].endswith("21e2f0f3c1aa")
    assert fired.starts_at == datetime(2026, 11, 20, 9, 0, 11, 551234, tzinfo=UTC)
    resolved = normalise("azure_monitor", fx.azure_alert("Resolved"))[0]
    assert resolved.status == "resolved"
    assert resolved.ends_at == datetime(2026, 11, 20, 9, 20, 40, 123456, tzinfo=UTC)
    assert resolved.fingerprint == fired.fingerprint


def test_azure_requires_common_schema():
    body = fx.azure_alert()
    body["schemaId"] = "AzureMonitorMetricAlert"
    with pytest.raises(PayloadError, match=r"^schemaId: expected"):
        normalise("azure_monitor", body)


def test_azure_unknown_condition():
    body = fx.azure_alert()
    body["data"]["essentials"]["monitorCondition"] = "Acknowledged"
    with pytest.raises(PayloadError, match=r"^data.essentials.monitorCondition: unknown status"):
        normalise("azure_monitor", body)


# -- Grafana ---------------------------------------------------------------------------------


def test_grafana_firing_and_resolved():
    firing = normalise("grafana", fx.grafana_webhook())[0]
    assert (firing.source, firing.status, firing.name) == ("grafana", "firing", "DiskAlmostFull")
    assert firing.fingerprint == "5e1f0c3a9b7d2e44"
    assert firing.starts_at == datetime(2026, 11, 20, 9, 1, tzinfo=UTC)  # +01:00 to UTC
    assert firing.generator_url.startswith("https://grafana.example.net/alerting/")
    resolved = normalise("grafana", fx.grafana_webhook("resolved"))[0]
    assert resolved.status == "resolved" and resolved.fingerprint == firing.fingerprint
    assert resolved.ends_at == datetime(2026, 11, 20, 9, 31, tzinfo=UTC)


def test_grafana_legacy_format_rejected():
    legacy = {"ruleName": "x", "state": "alerting", "evalMatches": [], "title": "x"}
    with pytest.raises(PayloadError, match=r"^alerts: missing \(legacy Grafana"):
        normalise("grafana", legacy)


# -- generic JSON with a field mapping ----------------------------------------------------

MAPPING = {
    "alerts": "data.events",
    "name": "check.name",
    "status": "check.state",
    "firing": ["CRITICAL", "WARNING"],
    "resolved": ["OK"],
    "labels": "tags",
    "label_fields": {"host": "host.name"},
    "annotation_fields": {"summary": "output"},
    "starts_at": "since",
}


def test_generic_with_mapping():
    body = {
        "data": {
            "events": [
                {
                    "check": {"name": "disk", "state": "CRITICAL"},
                    "host": {"name": "db-7"},
                    "tags": {"team": "dba", "tier": 1},
                    "output": "disk /var 97%",
                    "since": 1_763_600_000,
                },
                {
                    "check": {"name": "disk", "state": "OK"},
                    "host": {"name": "db-8"},
                    "since": "2026-11-20T01:00:00Z",
                },
            ]
        }
    }
    first, second = normalise("generic", body, mapping=MAPPING)
    assert (first.name, first.status, second.status) == ("disk", "firing", "resolved")
    assert dict(first.labels) == {"team": "dba", "tier": "1", "host": "db-7", "alertname": "disk"}
    assert first.annotations["summary"] == "disk /var 97%"
    assert first.starts_at == datetime.fromtimestamp(1_763_600_000, UTC)
    assert first.raw["host"] == {"name": "db-7"}


def test_generic_default_mapping():
    (alert,) = normalise("generic", {"name": "x", "status": "firing", "labels": {"a": "b"}})
    assert alert.name == "x" and alert.labels == {"a": "b", "alertname": "x"}
    assert alert.fingerprint == compute_fingerprint("generic", {"a": "b", "alertname": "x"})


def test_generic_errors_name_the_field():
    with pytest.raises(
        PayloadError, match=r"^data.events\[0\].check.state: unknown status 'UNKNOWN'"
    ):
        normalise(
            "generic",
            {"data": {"events": [{"check": {"name": "d", "state": "UNKNOWN"}}]}},
            mapping=MAPPING,
        )
    with pytest.raises(PayloadError, match=r"^data.events\[0\].check.name: missing"):
        normalise("generic", {"data": {"events": [{"check": {}}]}}, mapping=MAPPING)


@pytest.mark.parametrize(
    ("mapping", "where"),
    [
        ({"status": "s"}, "mapping.name"),
        ({"name": "n", "status": "s", "colour": "c"}, "mapping"),
        ({"name": "", "status": "s"}, "mapping.name"),
        ({"name": "a..b", "status": "s"}, "mapping.name"),
        ({"name": "n", "status": "s", "firing": ["x"], "resolved": ["x"]}, "mapping.firing"),
        ({"name": "n", "status": "s", "label_fields": {"h": 3}}, "mapping.label_fields.h"),
    ],
)
def test_generic_bad_mapping_is_a_config_error(mapping, where):
    with pytest.raises(ConfigError, match=rf"^{where}: ") as info:
        normalise("generic", {}, mapping=mapping)
    assert not isinstance(info.value, PayloadError)


def test_mapping_only_for_generic_and_unknown_source():
    with pytest.raises(ConfigError, match=r"^mapping: "):
        normalise("alertmanager", {}, mapping={"name": "n", "status": "s"})
    with pytest.raises(ConfigError, match=r"^source: unknown source"):
        normalise("nagios", {})
