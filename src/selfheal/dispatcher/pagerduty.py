"""PagerDuty Events API v2: alert events (``POST /v2/enqueue``: trigger / acknowledge /
resolve, deduplicated by ``dedup_key``) and change events (``POST /v2/change/enqueue``, one
per automated action). Both answer 202 with ``{"status": "success", ...}``; 400 means the
event is invalid (never retried), 429 and 5xx mean try again later. Standard library only;
blocking calls, made by the outbox's delivery thread."""

from __future__ import annotations

from typing import Any

from selfheal.dispatcher.config import PagerDutyConfig
from selfheal.dispatcher.outbox import PagerError, post_json

PagerDutyError = PagerError  # the older name


class PagerDuty:
    target = "pagerduty"

    def __init__(self, config: PagerDutyConfig, source: str = "selfheal-dispatcher"):
        self.config = config
        self.source = source

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.config.url.rstrip("/") + path
        try:
            return post_json(url, body, {}, self.config.timeout_s)
        except PagerError as exc:
            raise PagerError(f"PagerDuty {path}: {exc}", exc.status) from exc

    def send(self, kind: str, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver one outbox event (see `selfheal.dispatcher.outbox.PagerTimeline`)."""
        if kind == "change":
            payload: dict[str, Any] = {
                "summary": event["summary"][:1024],
                "source": self.source,
                "timestamp": event.get("timestamp"),
            }
            if event.get("details"):
                payload["custom_details"] = event["details"]
            body = {"routing_key": self.config.routing_key, "payload": payload}
            return self._post("/v2/change/enqueue", body)
        if kind not in ("trigger", "acknowledge", "resolve"):
            raise PagerError(f"PagerDuty: no event action for {kind!r}", 400)
        body = {
            "routing_key": self.config.routing_key,
            "event_action": kind,
            "dedup_key": event["dedup_key"],
        }
        if kind == "trigger":
            payload = {
                "summary": event["summary"][:1024],
                "source": self.source,
                "severity": event.get("severity", "critical"),
                "timestamp": event.get("timestamp"),
            }
            for key in ("component", "group"):
                if event.get(key):
                    payload[key] = event[key]
            if event.get("details"):
                payload["custom_details"] = event["details"]
            body["payload"] = payload
        return self._post("/v2/enqueue", body)
