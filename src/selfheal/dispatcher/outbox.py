"""The pager outbox: the incident timeline mirrored to PagerDuty or Opsgenie without losing
an event when the pager is down.

Writers (`PagerTimeline`) add a row to the store's ``pager_outbox`` table right after the
state change it reports. A delivery thread (`PagerOutbox`) sends, per incident, the oldest
pending event and only then the next one, so a pager sees each incident's events in order:

* 2xx: delivered.
* 5xx, 429, network errors: pending again, due after an exponential backoff with full
  jitter (``uniform(0, min(cap, base * 2**(attempts-1)))``); retried until it goes through.
* any other 4xx: the pager refuses this event for good: ``dead``, logged and counted, and the
  incident's next event goes on.

Rows survive a restart: a new dispatcher on the same store sends what is pending. Delivery is
at least once: a crash between the pager's answer and the row's update sends that event again
(PagerDuty deduplicates by ``dedup_key``, Opsgenie by ``alias``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from selfheal.store import Incident, Store, StoreError

log = logging.getLogger("selfheal.dispatcher.pager")

KINDS = ("trigger", "acknowledge", "resolve", "change")
SEVERITIES = ("critical", "error", "warning", "info")


class PagerError(Exception):
    """A delivery that did not go through; `status` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


def post_json(
    url: str, body: dict[str, Any], headers: dict[str, str], timeout: float
) -> dict[str, Any]:
    """POST `body` as JSON; the decoded answer, or PagerError."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise PagerError(f"HTTP {exc.code}: {detail}", exc.code) from exc
    except (OSError, ValueError) as exc:  # refused, reset, timeout, bad URL
        raise PagerError(str(exc)) from exc
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {"raw": text}


class PagerClient(Protocol):
    target: str

    def send(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]: ...


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class PagerTimeline:
    """Writes timeline events into the outbox (never calls the pager itself).

    What is mirrored (the same for both pagers):

    * ``trigger``: an escalation (people must act), or an approval request (an approver must
      act); the ``dedup_key`` is the incident's fingerprint, stable across its events.
    * ``acknowledge``: a remediation run is queued for an incident the pager already holds
      (an approver said yes: automation takes it from here).
    * ``change``: every automated action (a run attempt finished).
    * ``resolve``: the incident resolved, when the pager holds it.
    """

    def __init__(self, store: Store, target: str, wake: Callable[[], None] = lambda: None):
        self.store = store
        self.target = target
        self._wake = wake

    def _add(self, incident_id: int, kind: str, payload: dict[str, Any]) -> None:
        self.store.enqueue_pager_event(incident_id, self.target, kind, payload)
        self._wake()

    def paged(self, incident_id: int) -> bool:
        """Whether a trigger for the incident is in the outbox (delivered or not)."""
        events = self.store.list_pager_events(incident_id=incident_id)
        return any(e.kind == "trigger" and e.target == self.target for e in events)

    def trigger(
        self,
        incident: Incident,
        summary: str,
        *,
        severity: str = "critical",
        component: str | None = None,
        group: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        payload = {
            "dedup_key": incident.fingerprint,
            "summary": summary[:1024],
            "severity": severity if severity in SEVERITIES else "critical",
            "timestamp": now_iso(),
            "details": {"incident_id": incident.id, **(details or {})},
        }
        if component:
            payload["component"] = component
        if group:
            payload["group"] = group
        self._add(incident.id, "trigger", payload)

    def acknowledge(self, incident: Incident, note: str) -> None:
        if self.paged(incident.id):
            payload = {"dedup_key": incident.fingerprint, "summary": note, "timestamp": now_iso()}
            self._add(incident.id, "acknowledge", payload)

    def resolve(self, incident: Incident, note: str = "incident resolved") -> None:
        if self.paged(incident.id):
            payload = {"dedup_key": incident.fingerprint, "summary": note, "timestamp": now_iso()}
            self._add(incident.id, "resolve", payload)

    def change(self, summary: str, details: dict[str, Any] | None = None) -> None:
        """An automated action; `details["incident_id"]` names the incident."""
        details = dict(details or {})
        incident = self.store.get_incident(int(details.get("incident_id", 0)))
        if incident is None:
            log.warning("pager change event without a known incident", extra=details)
            return
        if self.target == "opsgenie" and not self.paged(incident.id):
            return  # Opsgenie notes need the alert: nothing to annotate yet
        payload = {
            "dedup_key": incident.fingerprint,
            "summary": summary[:1024],
            "timestamp": now_iso(),
            "details": details,
        }
        self._add(incident.id, "change", payload)


class PagerOutbox:
    """The delivery loop. `deliver_due()` is one pass (tests call it directly); `run()` is
    the thread body, woken by `wake()` when an event is added."""

    def __init__(
        self,
        store: Store,
        client: PagerClient,
        *,
        base_s: float = 1.0,
        cap_s: float = 300.0,
        poll_s: float = 0.5,
        lease_s: float = 60.0,
        count: Callable[[str], None] = lambda outcome: None,
    ):
        self.store = store
        self.client = client
        self.target = client.target
        self.base_s = base_s
        self.cap_s = cap_s
        self.poll_s = poll_s
        self.lease_s = lease_s  # a claimed event is due again after this (sender crashed)
        self._count = count
        self._wakeup = threading.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def backoff(self, attempts: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(attempts-1)))."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1)))

    def deliver_due(self, now: datetime | None = None) -> int:
        """Try every incident's due head event once; the number of attempts made."""
        now = now or datetime.now(UTC)
        events = self.store.due_pager_events(self.target, now=now)
        for event in events:
            # replicas sharing one store: only the one that claims the event sends it
            if not self.store.claim_pager_event(
                event.id, now + timedelta(seconds=self.lease_s), now=now
            ):
                continue
            try:
                self.client.send(event.kind, event.payload)
            except PagerError as exc:
                attempts = event.attempts + 1
                if exc.retryable:
                    delay = self.backoff(attempts)
                    due = datetime.now(UTC) + timedelta(seconds=delay)
                    self.store.settle_pager_event(
                        event.id, "pending", error=str(exc)[:500], next_attempt_at=due
                    )
                    self._count("retried")
                    log.warning(
                        "pager delivery failed; retrying",
                        extra={"event_id": event.id, "error": str(exc), "delay_s": round(delay, 2)},
                    )
                else:
                    self.store.settle_pager_event(event.id, "dead", error=str(exc)[:500])
                    self._count("dead")
                    log.error(
                        "pager refused an event; not retried",
                        extra={"event_id": event.id, "kind": event.kind, "error": str(exc)},
                    )
                continue
            self.store.settle_pager_event(event.id, "delivered")
            self._count("delivered")
        return len(events)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.deliver_due() > 0
            except StoreError as exc:
                log.warning("pager outbox unavailable", extra={"error": str(exc)})
                busy = False
            except Exception:  # the loop must outlive one bad event
                log.exception("pager delivery step failed")
                busy = False
            if not busy:
                self._wakeup.wait(self.poll_s)
                self._wakeup.clear()


def client_for(config: Any) -> PagerClient:
    """The pager client a `PagerConfig` names."""
    from selfheal.dispatcher.config import PagerDutyConfig

    if config.target == "opsgenie":
        from selfheal.dispatcher.opsgenie import Opsgenie

        return Opsgenie(config)
    from selfheal.dispatcher.pagerduty import PagerDuty

    return PagerDuty(PagerDutyConfig(config.key, config.url, config.timeout_s), config.source)
