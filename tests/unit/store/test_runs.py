"""Runs: queue, claim with a lease, finish, recover interrupted ones, retry, cancel."""

from __future__ import annotations

import pytest
from unit.store.conftest import T0, later, make_alert

from selfheal.store import StoreError


@pytest.fixture
def incident(store):
    return store.accept([make_alert()], now=T0)[0].incident_id


def test_claim_finish(store, incident):
    assert store.claim_next_run("w1", 30, now=T0) is None
    queued = store.enqueue_run(incident, "restart_service", "web1", now=T0)
    assert (queued.status, queued.attempts) == ("queued", 0)
    run = store.claim_next_run("w1", 30, now=later(1))
    assert (run.id, run.status, run.attempts, run.worker_id) == (queued.id, "running", 1, "w1")
    assert run.lease_expires_at == later(31)
    assert store.claim_next_run("w2", 30, now=later(2)) is None
    store.set_private_data_dir(run.id, "runs/1")
    with pytest.raises(StoreError, match="not running under worker 'w2'"):
        store.finish_run(run.id, "succeeded", rc=0, worker_id="w2")
    done = store.finish_run(run.id, "succeeded", rc=0, worker_id="w1", now=later(10))
    assert (done.status, done.rc, done.finished_at) == ("succeeded", 0, later(10))
    assert done.private_data_dir == "runs/1"
    with pytest.raises(StoreError, match="not running"):
        store.finish_run(run.id, "failed")
    with pytest.raises(StoreError, match="finishes as one of"):
        store.finish_run(run.id, "running")


def test_claim_order_and_not_before(store, incident):
    first = store.enqueue_run(incident, "rb", "a", not_before=later(100), now=T0)
    second = store.enqueue_run(incident, "rb", "b", now=T0)
    assert store.claim_next_run("w", 30, now=later(1)).id == second.id
    assert store.claim_next_run("w", 30, now=later(1)) is None
    assert store.claim_next_run("w", 30, now=later(100)).id == first.id


def test_recover_expired_lease_and_retry(store, incident):
    run = store.enqueue_run(incident, "rb", "web1", now=T0)
    store.claim_next_run("w1", 30, now=T0)
    assert store.renew_lease(run.id, "w1", 30, now=later(20))  # now expires at +50
    assert not store.renew_lease(run.id, "w2", 30, now=later(20))
    assert store.recover_interrupted(later(49)) == []
    (lost,) = store.recover_interrupted(later(50))
    assert (lost.id, lost.status, lost.reason) == (run.id, "interrupted", "lease expired")
    assert not store.renew_lease(run.id, "w1", 30, now=later(51))  # too late: it is gone
    with pytest.raises(StoreError):
        store.finish_run(run.id, "succeeded", worker_id="w1")
    retried = store.retry_run(run.id, not_before=later(60))
    assert (retried.status, retried.attempts) == ("queued", 1)
    assert store.claim_next_run("w2", 30, now=later(59)) is None
    again = store.claim_next_run("w2", 30, now=later(60))
    assert (again.id, again.attempts, again.worker_id) == (run.id, 2, "w2")
    with pytest.raises(StoreError, match="not interrupted or failed"):
        store.retry_run(run.id)


def test_recover_at_startup_takes_only_this_workers_runs(store, incident):
    mine = store.enqueue_run(incident, "rb", "a", now=T0)
    theirs = store.enqueue_run(incident, "rb", "b", now=T0)
    store.claim_next_run("dispatcher-1", 300, now=T0)
    store.claim_next_run("dispatcher-2", 300, now=T0)
    (recovered,) = store.recover_interrupted(later(1), worker_id="dispatcher-1")
    assert (recovered.id, recovered.reason) == (mine.id, "worker restarted")
    assert store.get_run(theirs.id).status == "running"
    assert [r.id for r in store.list_runs(status="interrupted")] == [mine.id]


def test_cancel_pending_runs_when_resolved_first(store, incident):
    running = store.enqueue_run(incident, "rb", "a", now=T0)
    store.claim_next_run("w", 30, now=T0)
    pending = [store.enqueue_run(incident, "rb", t, now=T0) for t in ("b", "c")]
    other = store.accept([make_alert("web9")])[0].incident_id
    untouched = store.enqueue_run(other, "rb", "z", now=T0)
    canceled = store.cancel_pending_runs(incident, "alert resolved before the run started")
    assert [r.id for r in canceled] == [r.id for r in pending]
    assert all(r.status == "canceled" and r.reason.startswith("alert resolved") for r in canceled)
    assert store.get_run(running.id).status == "running"
    assert store.get_run(untouched.id).status == "queued"
    assert [r.id for r in store.list_runs(incident_id=incident)] == [running.id] + [
        r.id for r in pending
    ]


def test_enqueue_needs_an_incident(store):
    with pytest.raises(StoreError, match="no incident 7"):
        store.enqueue_run(7, "rb", "a")


def test_newest_runs_and_counts(store, incident):
    other = store.accept([make_alert("web9")])[0].incident_id
    runs = [
        store.enqueue_run(i, "rb", f"t{n}", now=T0) for n, i in enumerate([incident, other] * 3)
    ]
    store.claim_next_run("w", 30, now=T0)  # the oldest is running now
    assert [r.id for r in store.list_runs(newest=4)] == [r.id for r in reversed(runs[-4:])]
    assert [r.id for r in store.list_runs(incident_id=other, newest=2)] == [runs[5].id, runs[3].id]
    assert [r.id for r in store.list_runs(status="running", newest=10)] == [runs[0].id]
    assert store.count_runs() == 6
    assert store.count_runs(status="queued") == 5
    assert store.count_runs(incident_id=incident, status="queued") == 2
    assert store.count_runs(status="failed") == 0


def test_attempt_fences_lease_finish_and_process(store, incident):
    """The attempt number is a fencing token: a worker id reused by a later attempt does not
    let the earlier attempt renew, record or finish it."""
    store.enqueue_run(incident, "restart_service", "web1", now=T0)
    first = store.claim_next_run("w1", 30, now=later(1))
    assert store.renew_lease(first.id, "w1", 30, now=later(2), attempt=1)
    assert store.set_run_process(first.id, "w1", 1, {"pid": 1})
    [interrupted] = store.recover_interrupted(now=later(60))
    assert interrupted.process == {"pid": 1}  # what recovery fences
    store.retry_run(first.id)
    second = store.claim_next_run("w1", 30, now=later(61))
    assert second.attempts == 2
    assert not store.renew_lease(first.id, "w1", 30, now=later(62), attempt=1)
    assert not store.set_run_process(first.id, "w1", 1, {"pid": 2})
    with pytest.raises(StoreError, match="not running"):
        store.finish_run(first.id, "succeeded", worker_id="w1", attempt=1)
    assert store.renew_lease(first.id, "w1", 30, now=later(62), attempt=2)
    done = store.finish_run(first.id, "succeeded", worker_id="w1", attempt=2, now=later(63))
    assert (done.status, done.attempts) == ("succeeded", 2)
