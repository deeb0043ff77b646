"""Posting KPI anomalies to Alertmanager (``POST /api/v2/alerts``).

Each alert carries ``alertname=KPIAnomaly`` and ``kpi=<name>`` (plus the series' own labels),
and the human reason as an annotation, so the dispatcher receives it through Alertmanager's
webhook like any other alert.
"""

from __future__ import annotations

import json
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
