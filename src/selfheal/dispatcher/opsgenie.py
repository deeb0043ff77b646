"""Opsgenie Alert API v2, the other pager the outbox can mirror the timeline to.

* trigger: ``POST /v2/alerts`` with ``alias`` = the incident's fingerprint (Opsgenie keeps
  one open alert per alias: a second trigger only raises its count);
* acknowledge / resolve: ``POST /v2/alerts/{alias}/acknowledge|close?identifierType=alias``;
* change: ``POST /v2/alerts/{alias}/notes?identifierType=alias`` (a note on the alert).

Authentication: ``Authorization: GenieKey <key>``. Requests are processed asynchronously:
202 with ``{"result": "Request will be processed", "requestId": ...}``. 4xx other than 429
are refusals (the outbox marks the event dead); 429 and 5xx are retried.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from selfheal.dispatcher.config import PagerConfig
from selfheal.dispatcher.outbox import PagerError, post_json

PRIORITIES = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}
MESSAGE_LIMIT = 130  # characters of `message`
NOTE_LIMIT = 25000


class Opsgenie:
    target = "opsgenie"

    def __init__(self, config: PagerConfig):
        self.config = config

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.config.url.rstrip("/") + path
        headers = {"Authorization": f"GenieKey {self.config.key}"}
        try:
            return post_json(url, body, headers, self.config.timeout_s)
        except PagerError as exc:
            raise PagerError(f"Opsgenie {path.split('?')[0]}: {exc}", exc.status) from exc

    @staticmethod
    def _alias_path(alias: str, action: str) -> str:
        return f"/v2/alerts/{urllib.parse.quote(alias, safe='')}/{action}?identifierType=alias"

    def send(self, kind: str, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver one outbox event (see `selfheal.dispatcher.outbox.PagerTimeline`)."""
        alias = event["dedup_key"]
        source = self.config.source
        if kind == "trigger":
            details = {k: str(v) for k, v in (event.get("details") or {}).items()}
            body: dict[str, Any] = {
                "message": event["summary"][:MESSAGE_LIMIT],
                "alias": alias[:512],
                "description": event["summary"][:15000],
                "source": source,
                "priority": PRIORITIES.get(event.get("severity", "critical"), "P1"),
                "details": details,
                "tags": ["selfheal"],
            }
            if event.get("component"):
                body["entity"] = event["component"]
            return self._post("/v2/alerts", body)
        note = {"source": source, "user": source, "note": event["summary"][:NOTE_LIMIT]}
        actions = {"acknowledge": "acknowledge", "resolve": "close", "change": "notes"}
        if kind not in actions:
            raise PagerError(f"Opsgenie: no alert action for {kind!r}", 400)
        return self._post(self._alias_path(alias, actions[kind]), note)
