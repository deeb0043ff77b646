"""Normalisers: one sender's webhook body in, a list of `Alert` out (or a `PayloadError`).

Every source is a function `_<source>(payload, ctx) -> list[Alert]`; `normalise()` is the
single entry point and the only place that parses bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from selfheal.alerts import _parse as p
from selfheal.alerts._parse import DEFAULT_LIMITS, TOP, Limits
from selfheal.alerts.https_url import CheckedURL, URLError, check_https_url
from selfheal.alerts.model import (
    SOURCES,
    Alert,
    PayloadError,
    SubscriptionConfirmation,
    compute_fingerprint,
)
from selfheal.errors import ConfigError

# Both CloudWatch deliveries of one alarm share a fingerprint: they hash as one family.
_FINGERPRINT_FAMILY = {"cloudwatch_sns": "cloudwatch", "cloudwatch_eventbridge": "cloudwatch"}


@dataclass(frozen=True)
class _Ctx:
    source: str
    limits: Limits
    received_at: datetime
    mapping: Mapping[str, Any] | None
    sender: str | None = None


def normalise(
    source: str,
    payload: bytes | str | dict[str, Any],
    *,
    mapping: Mapping[str, Any] | None = None,
    received_at: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
    sender: str | None = None,
) -> list[Alert] | SubscriptionConfirmation:
    """Validate and normalise one webhook body from ``source``.

    Returns the alerts it carries (never empty), or a `SubscriptionConfirmation` for an SNS
    subscription handshake. Raises `PayloadError` (naming the bad field path) for any payload
    that cannot be accepted, and `ConfigError` for an unknown source or a bad ``mapping``.
    ``sender`` (who delivered the body, as the server authenticated it) goes on every alert;
    nothing in the payload can set it.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r} (one of {', '.join(SOURCES)})", "source")
    if mapping is not None and source != "generic":
        raise ConfigError("a field mapping applies to the generic source only", "mapping")
    compiled = compile_mapping(mapping) if source == "generic" else None
    when = (received_at or datetime.now(UTC)).astimezone(UTC)
    value = p.load(payload, limits)
    ctx = _Ctx(source, limits, when, compiled, sender)
    return _NORMALISERS[source](value, ctx)


def _alert(
    ctx: _Ctx,
    *,
    status: str,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: datetime | None,
    ends_at: datetime | None,
    fingerprint: str | None,
    generator_url: str,
    raw: Any,
    path: str,
) -> Alert:
    if len(name) > ctx.limits.max_name:
        raise PayloadError(f"alert name too long (limit {ctx.limits.max_name})", path)
    labels.setdefault("alertname", name)
    family = _FINGERPRINT_FAMILY.get(ctx.source, ctx.source)
    return Alert(
        source=ctx.source,
        status=status,
        name=name,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint or compute_fingerprint(family, labels),
        generator_url=generator_url,
        received_at=ctx.received_at,
        raw=raw,
        sender=ctx.sender,
    )


def _status(value: Any, path: str, table: Mapping[str, str]) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"must be a string, not {p.kind(value)}", path)
    if value not in table:
        choices = ", ".join(repr(k) for k in table)
        raise PayloadError(f"unknown status {value[:64]!r} (expected {choices})", path)
    return table[value]


# -- Alertmanager (webhook payload version 4) and Grafana unified alerting -----------------

_AM_STATUS = {"firing": "firing", "resolved": "resolved"}


def _alert_list(body: Any, ctx: _Ctx, version: str, sender: str) -> list[Alert]:
    body = p.obj(body, TOP)
    if "version" in body and body["version"] != version:
        raise PayloadError(
            f"unsupported {sender} webhook version {str(body['version'])[:16]!r}"
            f" (expected {version!r})",
            "version",
        )
    if "alerts" not in body:
        hint = " (legacy Grafana alerting is not supported)" if sender == "Grafana" else ""
        raise PayloadError("missing" + hint, "alerts")
    items = p.array(body["alerts"], "alerts", ctx.limits.max_alerts)
    if not items:
        raise PayloadError("must hold at least one alert", "alerts")
    alerts = []
    for i, item in enumerate(items):
        path = p.join("alerts", i)
        item = p.obj(item, path)
        status = _status(item.get("status"), p.join(path, "status"), _AM_STATUS)
        labels = p.str_map(item.get("labels"), p.join(path, "labels"), ctx.limits, required=True)
        name = labels.get("alertname", "")
        if not name.strip():
            raise PayloadError("missing", p.join(path, "labels.alertname"))
        alerts.append(
            _alert(
                ctx,
                status=status,
                name=name,
                labels=labels,
                annotations=p.str_map(
                    item.get("annotations"), p.join(path, "annotations"), ctx.limits
                ),
                starts_at=p.timestamp(item.get("startsAt"), p.join(path, "startsAt")),
                ends_at=p.timestamp(item.get("endsAt"), p.join(path, "endsAt")),
                fingerprint=p.fingerprint(item.get("fingerprint"), p.join(path, "fingerprint")),
                generator_url=p.string(item, "generatorURL", path, ctx.limits),
                raw=item,
                path=path,
            )
        )
    return alerts


def _alertmanager(body: Any, ctx: _Ctx) -> list[Alert]:
    return _alert_list(body, ctx, "4", "Alertmanager")


def _grafana(body: Any, ctx: _Ctx) -> list[Alert]:
    return _alert_list(body, ctx, "1", "Grafana")


# -- AWS CloudWatch alarms, through SNS or EventBridge ------------------------------------

_CW_STATE = {"ALARM": "firing", "OK": "resolved"}
_ALARM_ARN = re.compile(r"arn:aws[a-z-]*:cloudwatch:([a-z0-9-]+):(\d{12}):alarm:.+")
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")


def _cw_state(value: Any, path: str) -> str:
    if value == "INSUFFICIENT_DATA":
        raise PayloadError(
            "INSUFFICIENT_DATA is neither ALARM nor OK (send only ALARM and OK actions here)",
            path,
        )
    return _status(value, path, _CW_STATE)


def _cw_labels(name: str, arn: str, account: str, region: str, path: str) -> dict[str, str]:
    labels = {"alertname": name}
    if arn:
        match = _ALARM_ARN.fullmatch(arn)
        if not match:
            raise PayloadError("not a CloudWatch alarm ARN", path)
        region = region or match.group(1)
        account = account or match.group(2)
        labels["alarm_arn"] = arn
    if account:
        labels["account"] = account
    if region:
        labels["region"] = region
    return labels


def _add_metric(labels: dict[str, str], namespace: str, metric: str, dims: dict[str, str]) -> None:
    if namespace:
        labels["namespace"] = namespace
    if metric:
        labels["metric"] = metric
    for key, value in dims.items():
        labels[key if key not in labels else f"dimension_{key}"] = value


def _cw_annotations(description: str, reason: str, old: str, new: str) -> dict[str, str]:
    values = {"description": description, "reason": reason, "previous_state": old, "state": new}
    return {k: v for k, v in values.items() if v}


def check_subscribe_url(url: str) -> CheckedURL:
    """An SNS ``SubscribeURL``: https, port 443, on an sns.<region>.amazonaws.com host."""
    return check_https_url(url, lambda host: _SNS_HOST.fullmatch(host) is not None)


def _cloudwatch_sns(body: Any, ctx: _Ctx) -> list[Alert] | SubscriptionConfirmation:
    body = p.obj(body, TOP)
    kind = p.string(body, "Type", TOP, ctx.limits, required=True)
    if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        text = p.string(body, "SubscribeURL", TOP, ctx.limits, required=True, max_len=4096)
        try:  # parsed once: the confirmation fetches exactly this host and target
            url = check_subscribe_url(text)
        except URLError as exc:
            raise PayloadError(
                f"must be an https URL on an sns.<region>.amazonaws.com host ({exc})",
                "SubscribeURL",
            ) from None
        return SubscriptionConfirmation(
            kind=kind,
            topic_arn=p.string(body, "TopicArn", TOP, ctx.limits, required=True),
            subscribe_url=url,
            token=p.string(body, "Token", TOP, ctx.limits, required=True),
            message_id=p.string(body, "MessageId", TOP, ctx.limits),
            raw=body,
        )
    if kind != "Notification":
        raise PayloadError(
            f"unknown SNS message type {kind[:64]!r} (expected Notification,"
            " SubscriptionConfirmation or UnsubscribeConfirmation)",
            "Type",
        )
    text = p.string(body, "Message", TOP, ctx.limits, required=True)
    alarm = p.obj(p.load(text, ctx.limits, "Message"), "Message")
    m = "Message"
    name = p.string(alarm, "AlarmName", m, ctx.limits, required=True)
    status = _cw_state(alarm.get("NewStateValue"), p.join(m, "NewStateValue"))
    changed = p.timestamp(alarm.get("StateChangeTime"), p.join(m, "StateChangeTime"))
    labels = _cw_labels(
        name,
        p.string(alarm, "AlarmArn", m, ctx.limits),
        p.string(alarm, "AWSAccountId", m, ctx.limits),
        "",  # "Region" is a display name ("US East (N. Virginia)"); the ARN has the code
        p.join(m, "AlarmArn"),
    )
    trigger = alarm.get("Trigger")
    if trigger is not None:
        tpath = p.join(m, "Trigger")
        trigger = p.obj(trigger, tpath)
        dims: dict[str, str] = {}
        dpath = p.join(tpath, "Dimensions")
        for i, dim in enumerate(p.array(trigger.get("Dimensions") or [], dpath, 64)):
            dim = p.obj(dim, p.join(dpath, i))
            key = p.string(dim, "name", p.join(dpath, i), ctx.limits, required=True)
            dims[key] = p.scalar(dim.get("value"), p.join(p.join(dpath, i), "value"), ctx.limits)
        _add_metric(
            labels,
            p.string(trigger, "Namespace", tpath, ctx.limits),
            p.string(trigger, "MetricName", tpath, ctx.limits),
            dims,
        )
    annotations = _cw_annotations(
        p.string(alarm, "AlarmDescription", m, ctx.limits),
        p.string(alarm, "NewStateReason", m, ctx.limits),
        p.string(alarm, "OldStateValue", m, ctx.limits),
        alarm["NewStateValue"],
    )
    subject = p.string(body, "Subject", TOP, ctx.limits)
    if subject:
        annotations["summary"] = subject
    return [
        _alert(
            ctx,
            status=status,
            name=name,
            labels=labels,
            annotations=annotations,
            starts_at=changed if status == "firing" else None,
            ends_at=changed if status == "resolved" else None,
            fingerprint=None,
            generator_url="",
            raw=body,
            path=m,
        )
    ]


def _cloudwatch_eventbridge(body: Any, ctx: _Ctx) -> list[Alert]:
    body = p.obj(body, TOP)
    detail_type = p.string(body, "detail-type", TOP, ctx.limits, required=True)
    if detail_type != "CloudWatch Alarm State Change":
        raise PayloadError(
            f"expected 'CloudWatch Alarm State Change', not {detail_type[:64]!r}", "detail-type"
        )
    if "source" in body and body["source"] != "aws.cloudwatch":
        raise PayloadError("expected 'aws.cloudwatch'", "source")
    detail = p.obj(body.get("detail"), "detail")
    name = p.string(detail, "alarmName", "detail", ctx.limits, required=True)
    state = p.obj(detail.get("state"), "detail.state")
    status = _cw_state(state.get("value"), "detail.state.value")
    changed = p.timestamp(state.get("timestamp"), "detail.state.timestamp")
    resources = p.array(body.get("resources") or [], "resources", 64)
    arn = resources[0] if resources else ""
    if not isinstance(arn, str):
        raise PayloadError(f"must be a string, not {p.kind(arn)}", "resources[0]")
    labels = _cw_labels(
        name,
        arn,
        p.string(body, "account", TOP, ctx.limits),
        p.string(body, "region", TOP, ctx.limits),
        "resources[0]",
    )
    config = detail.get("configuration")
    description = ""
    if config is not None:
        config = p.obj(config, "detail.configuration")
        description = p.string(config, "description", "detail.configuration", ctx.limits)
        mpath = "detail.configuration.metrics"
        metrics = p.array(config.get("metrics") or [], mpath, 64)
        stats = [m for m in metrics if isinstance(m, dict) and "metricStat" in m]
        if len(stats) == 1:  # a single-metric alarm (metric math alarms have several)
            i = metrics.index(stats[0])
            spath = p.join(p.join(mpath, i), "metricStat.metric")
            stat = p.obj(stats[0]["metricStat"], p.join(p.join(mpath, i), "metricStat"))
            metric = p.obj(stat.get("metric"), spath)
            _add_metric(
                labels,
                p.string(metric, "namespace", spath, ctx.limits),
                p.string(metric, "name", spath, ctx.limits),
                p.str_map(metric.get("dimensions"), p.join(spath, "dimensions"), ctx.limits),
            )
    previous = detail.get("previousState")
    old = ""
    if previous is not None:
        previous = p.obj(previous, "detail.previousState")
        old = p.string(previous, "value", "detail.previousState", ctx.limits)
    annotations = _cw_annotations(
        description,
        p.string(state, "reason", "detail.state", ctx.limits),
        old,
        state["value"],
    )
    return [
        _alert(
            ctx,
            status=status,
            name=name,
            labels=labels,
            annotations=annotations,
            starts_at=changed if status == "firing" else None,
            ends_at=changed if status == "resolved" else None,
            fingerprint=None,
            generator_url="",
            raw=body,
            path="detail",
        )
    ]


# -- Azure Monitor common alert schema ----------------------------------------------------

_AZURE_STATUS = {"Fired": "firing", "Resolved": "resolved"}


def _azure_monitor(body: Any, ctx: _Ctx) -> list[Alert]:
    body = p.obj(body, TOP)
    schema = body.get("schemaId")
    if schema != "azureMonitorCommonAlertSchema":
        raise PayloadError(
            "expected 'azureMonitorCommonAlertSchema' (enable the common alert schema)",
            "schemaId",
        )
    data = p.obj(body.get("data"), "data")
    e = "data.essentials"
    ess = p.obj(data.get("essentials"), e)
    name = p.string(ess, "alertRule", e, ctx.limits, required=True)
    status = _status(ess.get("monitorCondition"), p.join(e, "monitorCondition"), _AZURE_STATUS)
    tpath = p.join(e, "alertTargetIDs")
    targets = []
    for i, target in enumerate(p.array(ess.get("alertTargetIDs") or [], tpath, 256)):
        if not isinstance(target, str) or not target:
            raise PayloadError("must be a non-empty string", p.join(tpath, i))
        targets.append(target)
    labels = {"alertname": name}
    for label, key in (
        ("alert_rule_id", "alertRuleID"),
        ("severity", "severity"),
        ("signal_type", "signalType"),
        ("monitoring_service", "monitoringService"),
    ):
        value = p.string(ess, key, e, ctx.limits)
        if value:
            labels[label] = value
    if targets:
        labels["target_ids"] = ",".join(sorted(targets))
    annotations = {}
    for label, key in (
        ("description", "description"),
        ("alert_id", "alertId"),
        ("origin_alert_id", "originAlertId"),
        ("investigation_link", "investigationLink"),
    ):
        value = p.string(ess, key, e, ctx.limits)
        if value:
            annotations[label] = value
    items = p.array(ess.get("configurationItems") or [], p.join(e, "configurationItems"), 256)
    if items:
        annotations["configuration_items"] = ",".join(
            p.scalar(v, p.join(p.join(e, "configurationItems"), i), ctx.limits)
            for i, v in enumerate(items)
        )
    return [
        _alert(
            ctx,
            status=status,
            name=name,
            labels=labels,
            annotations=annotations,
            starts_at=p.timestamp(ess.get("firedDateTime"), p.join(e, "firedDateTime")),
            ends_at=p.timestamp(ess.get("resolvedDateTime"), p.join(e, "resolvedDateTime")),
            fingerprint=None,
            generator_url="",
            raw=body,
            path=e,
        )
    ]


# -- Generic JSON with a field mapping ----------------------------------------------------

DEFAULT_MAPPING: dict[str, Any] = {
    "name": "name",
    "status": "status",
    "labels": "labels",
    "annotations": "annotations",
    "starts_at": "starts_at",
    "ends_at": "ends_at",
    "generator_url": "generator_url",
}
_PATH_KEYS = (
    "alerts",
    "name",
    "status",
    "labels",
    "annotations",
    "starts_at",
    "ends_at",
    "generator_url",
    "fingerprint",
)
_MAPPING_KEYS = {*_PATH_KEYS, "firing", "resolved", "label_fields", "annotation_fields"}


def _path_spec(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, str) or not value or any(not s for s in value.split(".")):
        raise ConfigError("must be a dotted path such as 'alert.labels'", where)
    return tuple(value.split("."))


def compile_mapping(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a generic field mapping; raises ConfigError naming the bad mapping key."""
    if mapping is None:
        mapping = DEFAULT_MAPPING
    if not isinstance(mapping, Mapping):
        raise ConfigError("must be a mapping", "mapping")
    unknown = sorted(set(mapping) - _MAPPING_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(map(str, unknown))}", "mapping")
    for key in ("name", "status"):
        if key not in mapping:
            raise ConfigError("missing", f"mapping.{key}")
    out: dict[str, Any] = {}
    for key in _PATH_KEYS:
        if mapping.get(key) is not None:
            out[key] = _path_spec(mapping[key], f"mapping.{key}")
    for key in ("firing", "resolved"):
        values = mapping.get(key, [key])
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError("must be a non-empty list of values", f"mapping.{key}")
        out[key] = {str(v).lower() if isinstance(v, bool) else str(v) for v in values}
    if out["firing"] & out["resolved"]:
        raise ConfigError("a value is both firing and resolved", "mapping.firing")
    for key in ("label_fields", "annotation_fields"):
        fields = mapping.get(key) or {}
        if not isinstance(fields, Mapping):
            raise ConfigError("must map names to dotted paths", f"mapping.{key}")
        out[key] = {
            str(name): _path_spec(path, f"mapping.{key}.{name}") for name, path in fields.items()
        }
    return out


_MISSING = object()


def _lookup(value: Any, spec: tuple[str, ...], path: str) -> tuple[Any, str]:
    """Follow a dotted path (digits index arrays); returns (value or _MISSING, its path)."""
    for segment in spec:
        if isinstance(value, dict):
            path = p.join(path, segment)
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isascii() and segment.isdigit():
            path = p.join(path, int(segment))
            value = value[int(segment)] if int(segment) < len(value) else _MISSING
        else:
            return _MISSING, p.join(path, segment)
        if value is _MISSING:
            return _MISSING, path
    return value, path


def _generic(body: Any, ctx: _Ctx) -> list[Alert]:
    m = ctx.mapping
    assert m is not None
    if "alerts" in m:
        items, apath = _lookup(body, m["alerts"], TOP)
        if items is _MISSING:
            raise PayloadError("missing", apath)
        items = p.array(items, apath, ctx.limits.max_alerts)
        if not items:
            raise PayloadError("must hold at least one alert", apath)
        entries = [(item, p.join(apath, i)) for i, item in enumerate(items)]
    else:
        entries = [(body, TOP)]
    return [_generic_one(item, path, ctx) for item, path in entries]


def _generic_one(item: Any, path: str, ctx: _Ctx) -> Alert:
    m = ctx.mapping
    assert m is not None
    p.obj(item, path)

    def get(key: str, required: bool = False) -> tuple[Any, str]:
        if key not in m:
            return None, ""
        value, where = _lookup(item, m[key], path)
        if value is _MISSING:
            if required:
                raise PayloadError(f"missing (mapping.{key})", where)
            return None, where
        return value, where

    raw_name, npath = get("name", required=True)
    name = p.scalar(raw_name, npath, ctx.limits)
    if not name.strip():
        raise PayloadError("must not be empty", npath)
    raw_status, spath = get("status", required=True)
    status_text = p.scalar(raw_status, spath, ctx.limits)
    if status_text in m["firing"]:
        status = "firing"
    elif status_text in m["resolved"]:
        status = "resolved"
    else:
        expected = ", ".join(repr(v) for v in sorted(m["firing"] | m["resolved"]))
        raise PayloadError(f"unknown status {status_text[:64]!r} (expected {expected})", spath)

    def pairs(key: str, fields_key: str) -> dict[str, str]:
        value, where = get(key)
        out = p.str_map(value, where, ctx.limits) if value is not None else {}
        for field_name, spec in m[fields_key].items():
            found, fpath = _lookup(item, spec, path)
            if found is not _MISSING and found is not None:
                out[field_name] = p.scalar(found, fpath, ctx.limits)
        if len(out) > ctx.limits.max_pairs:
            raise PayloadError(f"too many {key} ({len(out)})", where or path)
        return out

    labels = pairs("labels", "label_fields")
    annotations = pairs("annotations", "annotation_fields")
    starts, where = get("starts_at")
    starts_at = p.timestamp(starts, where, epoch=True)
    ends, where = get("ends_at")
    ends_at = p.timestamp(ends, where, epoch=True)
    url, where = get("generator_url")
    generator_url = "" if url is None else p.scalar(url, where, ctx.limits)
    fp, where = get("fingerprint")
    fingerprint = None if fp is None else p.fingerprint(fp, where)
    return _alert(
        ctx,
        status=status,
        name=name,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint,
        generator_url=generator_url,
        raw=item,
        path=path,
    )


_NORMALISERS: dict[str, Callable[[Any, _Ctx], Any]] = {
    "alertmanager": _alertmanager,
    "cloudwatch_sns": _cloudwatch_sns,
    "cloudwatch_eventbridge": _cloudwatch_eventbridge,
    "azure_monitor": _azure_monitor,
    "grafana": _grafana,
    "generic": _generic,
}
