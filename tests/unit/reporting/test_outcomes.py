"""Each outcome class, from a store filled the way the dispatcher fills it."""

from __future__ import annotations

from unit.reporting.helpers import at, fire, resolve, run_to_end, selection

from selfheal.reporting import OUTCOMES, classify


def _classify(store, incident_id: int) -> str:
    incident = store.get_incident(incident_id)
    return classify(
        incident,
        store.list_decisions(incident_id),
        store.list_runs(incident_id=incident_id),
        store.list_approvals(f"incident-{incident_id}"),
    )


def _reason(code: str, effect: str = "info") -> dict:
    return {"code": code, "message": code.replace("_", " "), "effect": effect}


def test_auto_resolved(store) -> None:
    i = fire(store, "Down", "web", 0, 10)
    store.record_decision(i, "auto", [selection("web", "restart", "web1")], at=at(11))
    run_to_end(store, i, "restart", "web1", "succeeded", 0, 12, 40)
    resolve(store, "Down", "web", 0, 60)
    assert _classify(store, i) == "auto-resolved"


def test_auto_failed_escalated(store) -> None:
    i = fire(store, "Down", "web", 0, 10)
    store.record_decision(i, "auto", [selection("web", "restart", "web1")], at=at(11))
    run_to_end(store, i, "restart", "web1", "failed", 2, 12, 40)
    store.record_decision(i, "escalated", [_reason("run_failed")], at=at(41))
    assert _classify(store, i) == "auto-failed-escalated"


def test_approval_denied_by_vote(store) -> None:
    i = fire(store, "Down", "db", 0, 10)
    store.record_decision(i, "approval", [_reason("risk", "approval")], at=at(11))
    store.record_approval(f"incident-{i}", "alice", "dba", "deny", at=at(20))
    store.record_decision(i, "denied", [_reason("approval_denied", "deny")], at=at(20))
    assert _classify(store, i) == "approval-denied"


def test_approval_timed_out(store) -> None:
    i = fire(store, "Down", "db", 0, 10)
    store.record_decision(i, "approval", [_reason("risk", "approval")], at=at(11))
    store.record_decision(i, "denied", [_reason("approval_timeout", "deny")], at=at(900))
    assert _classify(store, i) == "approval-timed-out"


def test_frozen(store) -> None:
    i = fire(store, "Down", "web", 0, 10)
    store.record_decision(i, "deny", [_reason("freeze", "deny")], at=at(11))
    assert _classify(store, i) == "frozen"
    resolve(store, "Down", "web", 0, 60)  # the freeze is why nothing ran, resolved or not
    assert _classify(store, i) == "frozen"


def test_suppressed_when_folded(store) -> None:
    root = fire(store, "DbDown", "db", 0, 10)
    child = fire(store, "WebErrors", "web", 0, 12)
    store.fold(child, root, "web depends on db")
    store.record_decision(child, "folded", [_reason("correlated")], at=at(13))
    assert _classify(store, child) == "suppressed"
    assert _classify(store, root) == "manual-only"


def test_manual_only(store) -> None:
    i = fire(store, "Down", "web", 0, 10)
    store.record_decision(i, "manual", [_reason("no_runbook", "manual")], at=at(11))
    assert _classify(store, i) == "manual-only"


def test_resolved_before_action(store) -> None:
    i = fire(store, "Flap", "web", 0, 10)
    store.record_decision(i, "auto", [selection("web", "restart", "web1")], at=at(11))
    store.enqueue_run(i, "restart", "web1", now=at(11))
    resolve(store, "Flap", "web", 0, 15)
    store.cancel_pending_runs(i, "incident resolved before the run", now=at(15))
    assert _classify(store, i) == "resolved-before-action"


def test_in_progress(store) -> None:
    i = fire(store, "Down", "web", 0, 10)
    store.record_decision(i, "auto", [selection("web", "restart", "web1")], at=at(11))
    store.enqueue_run(i, "restart", "web1", now=at(11))
    assert _classify(store, i) == "in-progress"


def test_precedence_success_beats_earlier_failure(store) -> None:
    i = fire(store, "Down", "web", 0, 10)
    run_to_end(store, i, "restart", "web1", "failed", 2, 12, 20)
    run_to_end(store, i, "restart", "web1", "succeeded", 0, 30, 40)
    assert _classify(store, i) == "auto-resolved"


def test_classes_listed() -> None:
    assert len(OUTCOMES) == len(set(OUTCOMES)) == 9
