"""``SyntheticJourneyFailed`` alerts: raised after N failed runs in a row, resolved when the
journey passes again.

Labels: ``alertname``, ``journey``, ``step`` (the failing step) and ``severity``; the
failed assertion is the ``failure`` annotation. When the failing step changes, the alert for
the old step is resolved and one for the new step raised. The tracker's state is a small
JSON-ready dict, so a scheduler running one pass at a time can carry it between runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .runner import JourneyResult

ALERTNAME = "SyntheticJourneyFailed"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class FailureTracker:
    def __init__(self, threshold: int = 1, state: dict | None = None, severity: str = "warning"):
        self.threshold = max(1, threshold)
        self.severity = severity
        state = state or {}
        self.failures: dict[str, int] = {
            k: int(v) for k, v in (state.get("failures") or {}).items()
        }
        self.firing: dict[str, dict] = dict(state.get("firing") or {})

    def state(self) -> dict:
        return {"failures": dict(self.failures), "firing": dict(self.firing)}

    def _alert(self, journey: str, step: str, failure: str, now: datetime, ends: datetime) -> dict:
        return {
            "labels": {
                "alertname": ALERTNAME,
                "journey": journey,
                "step": step,
                "severity": self.severity,
            },
            "annotations": {
                "summary": f"synthetic journey {journey} fails at step {step}",
                "failure": failure,
                "consecutive_failures": str(self.failures.get(journey, 0)),
            },
            "startsAt": _iso(now),
            "endsAt": _iso(ends),
        }

    def observe(
        self, result: JourneyResult, ttl: timedelta, now: datetime | None = None
    ) -> list[dict]:
        """Alerts to post after this result: firing (refreshed every failed run, so it stays
        active while it lasts) and resolved ones (``endsAt`` now)."""
        now = now or datetime.now(UTC)
        journey = result.journey
        out: list[dict] = []
        failed = result.failed_step
        previous = self.firing.get(journey)
        if failed is None:
            self.failures[journey] = 0
            if previous:
                out.append(self._alert(journey, previous["step"], previous["failure"], now, now))
                del self.firing[journey]
            return out
        self.failures[journey] = self.failures.get(journey, 0) + 1
        if previous and previous["step"] != failed.name:
            out.append(self._alert(journey, previous["step"], previous["failure"], now, now))
            del self.firing[journey]
        if self.failures[journey] >= self.threshold:
            self.firing[journey] = {"step": failed.name, "failure": failed.failure}
            out.append(self._alert(journey, failed.name, failed.failure, now, now + ttl))
        return out
