"""SyntheticJourneyFailed: raised after N failures in a row, moved and resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from selfheal.synthetic.alerting import FailureTracker
from selfheal.synthetic.runner import JourneyResult, StepResult

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)


def _result(failing: str | None) -> JourneyResult:
    steps = [StepResult("login", ok=True)]
    if failing:
        steps.append(StepResult(failing, ok=False, failure=f"{failing}: status 500"))
    return JourneyResult("shop", ok=failing is None, duration_s=0.1, steps=steps)


def test_fires_after_the_threshold_then_resolves() -> None:
    tracker = FailureTracker(threshold=2)
    assert tracker.observe(_result("search"), TTL, NOW) == []
    [alert] = tracker.observe(_result("search"), TTL, NOW)
    assert alert["labels"] == {
        "alertname": "SyntheticJourneyFailed",
        "journey": "shop",
        "step": "search",
        "severity": "warning",
    }
    assert alert["annotations"]["failure"] == "search: status 500"
    assert alert["endsAt"] == "2026-03-02T10:10:00Z"
    [resolved] = tracker.observe(_result(None), TTL, NOW)
    assert resolved["labels"]["step"] == "search"
    assert resolved["endsAt"] == resolved["startsAt"] == "2026-03-02T10:00:00Z"
    assert tracker.observe(_result(None), TTL, NOW) == []  # nothing left to resolve


def test_a_moved_failure_resolves_the_old_step_and_fires_the_new() -> None:
    tracker = FailureTracker(threshold=1)
    tracker.observe(_result("search"), TTL, NOW)
    old, new = tracker.observe(_result("checkout"), TTL, NOW)
    assert (old["labels"]["step"], old["endsAt"]) == ("search", "2026-03-02T10:00:00Z")
    assert (new["labels"]["step"], new["endsAt"]) == ("checkout", "2026-03-02T10:10:00Z")


def test_state_round_trips() -> None:
    tracker = FailureTracker(threshold=3)
    tracker.observe(_result("search"), TTL, NOW)
    tracker.observe(_result("search"), TTL, NOW)
    again = FailureTracker(threshold=3, state=tracker.state())
    [alert] = again.observe(_result("search"), TTL, NOW)
    assert alert["annotations"]["consecutive_failures"] == "3"
