"""Hand-written sender payloads for the intake tests.

Each builder follows the sender's publicly documented contract (field names, nesting,
value formats); the values are our own. No real sender runs here for these sources:
  - AWS SNS HTTP/S delivery: the JSON envelope (Type, MessageId, TopicArn, Subject, Message,
    Timestamp, Signature*, SubscribeURL/Token for SubscriptionConfirmation), with Message the
    CloudWatch alarm state change as a JSON string (AlarmName, AlarmArn, AWSAccountId,
    NewStateValue, NewStateReason, StateChangeTime, Region, OldStateValue, Trigger);
  - Amazon EventBridge event "CloudWatch Alarm State Change" (source aws.cloudwatch,
    detail.alarmName, detail.state, detail.previousState, detail.configuration.metrics);
  - Azure Monitor common alert schema (schemaId azureMonitorCommonAlertSchema,
    data.essentials with alertRule, severity, monitorCondition, alertTargetIDs, ...);
  - Grafana unified alerting webhook (version "1", alerts[] with status, labels,
    annotations, fingerprint, startsAt, endsAt, values, ...).
"""

from __future__ import annotations

import copy
import json

ALARM_ARN = "arn:aws:cloudwatch:eu-west-1:210987654321:alarm:orders-db-cpu-high"


def cloudwatch_alarm(state: str = "ALARM", when: str = "2026-11-20T08:15:02.118+0000") -> dict:
    old = "OK" if state == "ALARM" else "ALARM"
    return {
        "AlarmName": "orders-db-cpu-high",
        "AlarmDescription": "CPU of the orders database above 85% for 10 minutes",
        "AWSAccountId": "210987654321",
        "AlarmConfigurationUpdatedTimestamp": "2026-11-01T10:00:00.000+0000",
        "NewStateValue": state,
        "NewStateReason": f"Threshold Crossed: 2 datapoints were {'greater' if state == 'ALARM' else 'less'} than the threshold (85.0).",
        "StateChangeTime": when,
        "Region": "EU (Ireland)",
        "AlarmArn": ALARM_ARN,
        "OldStateValue": old,
        "OKActions": ["arn:aws:sns:eu-west-1:210987654321:selfheal"],
        "AlarmActions": ["arn:aws:sns:eu-west-1:210987654321:selfheal"],
        "InsufficientDataActions": [],
        "Trigger": {
            "MetricName": "CPUUtilization",
            "Namespace": "AWS/RDS",
            "StatisticType": "Statistic",
            "Statistic": "AVERAGE",
            "Unit": None,
            "Dimensions": [{"value": "orders-db-1", "name": "DBInstanceIdentifier"}],
            "Period": 300,
            "EvaluationPeriods": 2,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 85.0,
            "TreatMissingData": "missing",
        },
    }


def sns_notification(alarm: dict | None = None, **overrides) -> dict:
    alarm = cloudwatch_alarm() if alarm is None else alarm
    body = {
        "Type": "Notification",
        "MessageId": "6f1d5c8e-5b0a-4c62-9a55-0d3f0d1e2a11",
        "TopicArn": "arn:aws:sns:eu-west-1:210987654321:selfheal",
        "Subject": f'{alarm.get("NewStateValue")}: "orders-db-cpu-high" in EU (Ireland)',
        "Message": json.dumps(alarm),
        "Timestamp": "2026-11-20T08:15:02.171Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJlLW5vdC1jaGVja2VkLWhlcmU=",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }
    body.update(overrides)
    return body


def sns_subscription_confirmation() -> dict:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": "0a3c1e55-7c1b-4d6e-8f21-3b1c2d4e5f60",
        "Token": "2336412f37fb687f5d51e6e2425a8a58" * 4,
        "TopicArn": "arn:aws:sns:eu-west-1:210987654321:selfheal",
        "Message": "You have chosen to subscribe to the topic "
        "arn:aws:sns:eu-west-1:210987654321:selfheal.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        "&TopicArn=arn:aws:sns:eu-west-1:210987654321:selfheal&Token=2336412f",
        "Timestamp": "2026-11-20T08:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJlLW5vdC1jaGVja2VkLWhlcmU=",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
    }


def eventbridge_alarm(state: str = "ALARM", when: str = "2026-11-20T08:15:02.118+0000") -> dict:
    previous = "OK" if state == "ALARM" else "ALARM"
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "210987654321",
        "time": "2026-11-20T08:15:02Z",
        "region": "eu-west-1",
        "resources": [ALARM_ARN],
        "detail": {
            "alarmName": "orders-db-cpu-high",
            "state": {
                "value": state,
                "reason": "Threshold Crossed: 2 datapoints crossed the threshold (85.0).",
                "reasonData": '{"version":"1.0","queryDate":"2026-11-20T08:15:02.110+0000"}',
                "timestamp": when,
            },
            "previousState": {
                "value": previous,
                "reason": "earlier state",
                "timestamp": "2026-11-20T07:00:00.000+0000",
            },
            "configuration": {
                "description": "CPU of the orders database above 85% for 10 minutes",
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "namespace": "AWS/RDS",
                                "name": "CPUUtilization",
                                "dimensions": {"DBInstanceIdentifier": "orders-db-1"},
                            },
                            "period": 300,
                            "stat": "Average",
                        },
                        "returnData": True,
                    }
                ],
            },
        },
    }


AZURE_TARGET = (
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/shop-rg"
    "/providers/Microsoft.Compute/virtualMachines/shop-web-01"
)


def azure_alert(condition: str = "Fired") -> dict:
    essentials = {
        "alertId": "/subscriptions/11111111-2222-3333-4444-555555555555/providers/"
        "Microsoft.AlertsManagement/alerts/9d1c6e7a-0b1f-4b53-a0c4-21e2f0f3c1aa",
        "alertRule": "shop-web-cpu",
        "severity": "Sev2",
        "signalType": "Metric",
        "monitorCondition": condition,
        "monitoringService": "Platform",
        "alertTargetIDs": [AZURE_TARGET],
        "configurationItems": ["shop-web-01"],
        "originAlertId": "11111111-2222-3333-4444-555555555555_shop-rg_microsoft.insights"
        "_metricAlerts_shop-web-cpu_-123456789",
        "firedDateTime": "2026-11-20T09:00:11.5512345Z",
        "description": "CPU above 90% on the shop web tier",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2026-11-20T09:20:40.1234567Z"
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": essentials,
            "alertContext": {
                "properties": None,
                "conditionType": "SingleResourceMultipleMetricCriteria",
                "condition": {
                    "windowSize": "PT5M",
                    "allOf": [
                        {
                            "metricName": "Percentage CPU",
                            "metricNamespace": "Microsoft.Compute/virtualMachines",
                            "operator": "GreaterThan",
                            "threshold": "90",
                            "timeAggregation": "Average",
                            "dimensions": [],
                            "metricValue": 97.3,
                        }
                    ],
                },
            },
            "customProperties": None,
        },
    }


_GRAFANA_ALERT = {
    "status": "firing",
    "labels": {
        "alertname": "DiskAlmostFull",
        "grafana_folder": "storage",
        "host": "files-02",
        "mount": "/srv",
    },
    "annotations": {"summary": "/srv on files-02 is 93% full"},
    "startsAt": "2026-11-20T10:01:00+01:00",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "https://grafana.example.net/alerting/grafana/b7c2/view",
    "fingerprint": "5e1f0c3a9b7d2e44",
    "silenceURL": "https://grafana.example.net/alerting/silence/new",
    "dashboardURL": "",
    "panelURL": "",
    "values": {"A": 93.1, "C": 1},
    "valueString": "[ var='A' labels={host=files-02} value=93.1 ]",
}


def grafana_webhook(status: str = "firing", **alert_overrides) -> dict:
    alert = copy.deepcopy(_GRAFANA_ALERT)
    alert["status"] = status
    if status == "resolved":
        alert["endsAt"] = "2026-11-20T10:31:00+01:00"
    alert.update(alert_overrides)
    return {
        "receiver": "selfheal",
        "status": status,
        "orgId": 1,
        "alerts": [alert],
        "groupLabels": {"alertname": "DiskAlmostFull"},
        "commonLabels": dict(alert["labels"]),
        "commonAnnotations": dict(alert["annotations"]),
        "externalURL": "https://grafana.example.net/",
        "version": "1",
        "groupKey": '{}:{alertname="DiskAlmostFull"}',
        "truncatedAlerts": 0,
        "title": f"[{status.upper()}:1] DiskAlmostFull (storage)",
        "state": "alerting" if status == "firing" else "ok",
        "message": "**Firing**\n\nValue: A=93.1",
    }
