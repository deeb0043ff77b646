"""PagerDuty Events API v2: alert events (trigger / resolve, deduplicated by `dedup_key`)
and change events (one per automated action). Standard library only; blocking calls."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from selfheal.dispatcher.config import PagerDutyConfig

SEVERITIES = ("critical", "error", "warning", "info")


class PagerDutyError(Exception):
    pass


class PagerDuty:
    def __init__(self, config: PagerDutyConfig, source: str = "selfheal-dispatcher"):
        self.config = config
        self.source = source

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            self.config.url.rstrip("/") + path,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                text = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise PagerDutyError(f"PagerDuty {path}: HTTP {exc.code}: {detail}") from exc
        except OSError as exc:
            raise PagerDutyError(f"PagerDuty {path}: {exc}") from exc
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {"raw": text}

    def trigger(
        self,
        dedup_key: str,
        summary: str,
        *,
        severity: str = "critical",
        component: str | None = None,
        group: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if severity not in SEVERITIES:
            severity = "critical"
        payload: dict[str, Any] = {
            "summary": summary[:1024],
            "source": self.source,
            "severity": severity,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        if component:
            payload["component"] = component
        if group:
            payload["group"] = group
        if details:
            payload["custom_details"] = details
        return self._post(
            "/v2/enqueue",
            {
                "routing_key": self.config.routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": payload,
            },
        )

    def resolve(self, dedup_key: str) -> dict[str, Any]:
        return self._post(
            "/v2/enqueue",
            {
                "routing_key": self.config.routing_key,
                "event_action": "resolve",
                "dedup_key": dedup_key,
            },
        )

    def change(self, summary: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "summary": summary[:1024],
            "source": self.source,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        if details:
            payload["custom_details"] = details
        return self._post(
            "/v2/change/enqueue", {"routing_key": self.config.routing_key, "payload": payload}
        )
