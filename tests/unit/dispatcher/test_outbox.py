"""The pager outbox in the store (SQLite, and PostgreSQL when its server binaries are
installed): per-incident order, a blocked head holds back only its incident, settling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from unit.store.conftest import (  # noqa: F401  (fixtures)
    T0,
    make_alert,
    postgres_dsn,
    postgres_server,
    store,
)

from selfheal.dispatcher.outbox import PagerError, PagerOutbox
from selfheal.store import StoreError


def _incidents(db, n: int) -> list[int]:
    results = db.accept([make_alert(f"web{i}") for i in range(n)], now=T0)
    return [r.incident_id for r in results]


def test_due_events_are_each_incidents_oldest_pending(store) -> None:  # noqa: F811
    a, b = _incidents(store, 2)
    e1 = store.enqueue_pager_event(a, "pagerduty", "trigger", {"n": 1}, now=T0)
    e2 = store.enqueue_pager_event(a, "pagerduty", "change", {"n": 2}, now=T0)
    e3 = store.enqueue_pager_event(b, "pagerduty", "trigger", {"n": 3}, now=T0)
    store.enqueue_pager_event(b, "opsgenie", "trigger", {"n": 4}, now=T0)
    due = store.due_pager_events("pagerduty", now=T0)
    assert [e.id for e in due] == [e1.id, e3.id]
    assert due[0].payload == {"n": 1} and due[0].status == "pending"
    # a failing head, due later, holds back its own incident only
    later = T0 + timedelta(seconds=30)
    retried = store.settle_pager_event(e1.id, "pending", error="HTTP 500", next_attempt_at=later)
    assert (retried.attempts, retried.last_error) == (1, "HTTP 500")
    assert [e.id for e in store.due_pager_events("pagerduty", now=T0)] == [e3.id]
    assert [e.id for e in store.due_pager_events("pagerduty", now=later)] == [e1.id, e3.id]
    # delivered: the next event of the incident is the head now
    done = store.settle_pager_event(e1.id, "delivered", now=later)
    assert done.delivered_at == later and done.attempts == 2
    assert [e.id for e in store.due_pager_events("pagerduty", now=later)] == [e2.id, e3.id]
    # dead is final too: it does not block what follows
    store.settle_pager_event(e2.id, "dead", error="HTTP 400", now=later)
    assert [e.id for e in store.due_pager_events("pagerduty", now=later)] == [e3.id]
    with pytest.raises(StoreError, match="not pending"):
        store.settle_pager_event(e2.id, "delivered")
    with pytest.raises(StoreError):
        store.settle_pager_event(e3.id, "lost")
    statuses = [(e.kind, e.status) for e in store.list_pager_events(incident_id=a)]
    assert statuses == [("trigger", "delivered"), ("change", "dead")]
    assert len(store.list_pager_events(status="pending")) == 2


def test_claim_is_won_once(store) -> None:  # noqa: F811
    (a,) = _incidents(store, 1)
    event = store.enqueue_pager_event(a, "pagerduty", "trigger", {}, now=T0)
    lease = T0 + timedelta(seconds=60)
    assert store.claim_pager_event(event.id, lease, now=T0)
    assert not store.claim_pager_event(event.id, lease, now=T0)  # taken: not due
    assert store.due_pager_events("pagerduty", now=T0) == []
    # the sender died: due again when the lease runs out
    assert [e.id for e in store.due_pager_events("pagerduty", now=lease)] == [event.id]
    assert store.claim_pager_event(event.id, lease + timedelta(seconds=60), now=lease)
    store.settle_pager_event(event.id, "delivered", now=lease)
    assert not store.claim_pager_event(event.id, lease, now=lease + timedelta(days=1))


def test_outbox_row_needs_an_incident(store) -> None:  # noqa: F811
    with pytest.raises(StoreError):
        store.enqueue_pager_event(424242, "pagerduty", "trigger", {}, now=T0)


def test_retryable_statuses() -> None:
    assert PagerError("refused").retryable  # no answer at all
    assert PagerError("x", 500).retryable and PagerError("x", 503).retryable
    assert PagerError("x", 429).retryable
    assert not PagerError("x", 400).retryable and not PagerError("x", 404).retryable


def test_backoff_is_full_jitter_under_the_cap(store) -> None:  # noqa: F811
    class Never:
        target = "pagerduty"

        def send(self, kind, payload):
            raise AssertionError("not called")

    outbox = PagerOutbox(store, Never(), base_s=1.0, cap_s=8.0)
    for attempts, bound in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (30, 8.0)):
        delays = [outbox.backoff(attempts) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # spread over the range, not a fixed delay
