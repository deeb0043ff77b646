"""Posting KPI anomalies: to Alertmanager (``POST /api/v2/alerts``), or straight to the
dispatcher's ``alertmanager`` intake (``POST /alerts/alertmanager``, a bearer token).

Each alert carries ``alertname=KPIAnomaly`` and ``kpi=<name>`` (plus the series' own labels),
and the evidence as annotations: the reason, the value, the baseline it was compared with
(``expected`` and which baseline, ``context``), the score and the threshold, so the dispatcher
handles it like any other alert and a KPI anomaly can open an incident.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from selfheal.baseline.detector import Detection

ALERTNAME = "KPIAnomaly"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def build_alert(
    detection: Detection,
    kpi: str,
    labels: dict[str, str] | None = None,
    ttl: timedelta = timedelta(hours=1),
    severity: str = "warning",
    threshold: float | None = None,
    series: str | None = None,
) -> dict:
    """One Alertmanager v2 alert for an anomalous point; it resolves ``ttl`` after the point."""
    all_labels = {k: str(v) for k, v in (labels or {}).items() if k != "__name__"}
    all_labels.update({"alertname": ALERTNAME, "kpi": kpi, "severity": severity})
    return {
        "labels": all_labels,
        "annotations": {
            "reason": detection.reason,
            "summary": f"{kpi} departs from its baseline",
            "score": f"{detection.score:.3f}",
            "value": repr(detection.value),
            "expected": repr(detection.expected),
            "context": detection.context,
            **({"threshold": f"{threshold:g}"} if threshold is not None else {}),
            **({"series": series} if series else {}),
        },
        "startsAt": _iso(detection.timestamp),
        "endsAt": _iso(detection.timestamp + ttl.total_seconds()),
    }


def post_alerts(url: str, alerts: list[dict], timeout: float = 10.0) -> int:
    """POST the alerts; returns the HTTP status. Raises OSError (URLError) on failure."""
    body = json.dumps(alerts).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v2/alerts",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def webhook_body(alerts: list[dict]) -> dict:
    """Alerts as an Alertmanager webhook delivery (version 4), as the dispatcher takes them."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "selfheal-detect",
        "groupLabels": {},
        "commonLabels": {"alertname": ALERTNAME},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": [{"status": "firing", "generatorURL": "", **alert} for alert in alerts],
    }


def post_to_dispatcher(url: str, alerts: list[dict], token: str, timeout: float = 10.0) -> dict:
    """POST the alerts to the dispatcher's ``alertmanager`` intake; returns its answer.

    Raises OSError when the dispatcher cannot be reached or refuses the delivery (the HTTP
    error's message carries the dispatcher's reason).
    """
    request = urllib.request.Request(
        url.rstrip("/") + "/alerts/alertmanager",
        data=json.dumps(webhook_body(alerts)).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode(errors="replace")
        raise OSError(f"dispatcher answered {exc.code}: {detail}") from None
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}
