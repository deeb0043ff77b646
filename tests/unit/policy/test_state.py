"""State implementations: same behaviour in memory and in SQLite; SQLite shared by processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import timedelta

from unit.policy.policy_fixtures import NOW

from selfheal.policy import SQLiteState, State


def test_both_implement_the_interface(state) -> None:
    assert isinstance(state, State)


def test_runs_and_cost(state) -> None:
    state.record_run(request_id="a", runbook="r1", target="h1", service="s", at=NOW, cost=2.5)
    state.record_run(
        request_id="b",
        runbook="r2",
        target="h1",
        service="s",
        at=NOW + timedelta(minutes=5),
        cost=1,
    )
    state.record_run(
        request_id="c", runbook="r1", target="h2", service=None, at=NOW - timedelta(hours=2)
    )
    assert state.runs(since=NOW - timedelta(hours=1)) == 2
    assert state.runs(since=NOW - timedelta(hours=1), target="h1") == 2
    assert state.runs(since=NOW - timedelta(hours=3), runbook="r1") == 2
    assert state.runs(since=NOW - timedelta(hours=3), runbook="r1", target="h2") == 1
    assert state.cost_spent(NOW - timedelta(hours=1)) == 3.5


def test_failures_reset_by_success(state) -> None:
    for minutes, ok in ((0, False), (1, False), (2, True), (3, False), (4, False)):
        state.record_result(runbook="r", target="h", ok=ok, at=NOW + timedelta(minutes=minutes))
    assert state.failures_since_success("r", NOW - timedelta(hours=1)) == [
        NOW + timedelta(minutes=3),
        NOW + timedelta(minutes=4),
    ]
    assert state.failures_since_success("r", NOW + timedelta(minutes=4)) == [
        NOW + timedelta(minutes=4)
    ]
    assert state.consecutive_failures("r", "h") == 2
    assert state.consecutive_failures("r", "other") == 0


def test_locks_with_limits_and_ttl(state) -> None:
    ttl = timedelta(minutes=10)
    take = dict(now=NOW, ttl=ttl, max_global=2, max_per_target=1)
    assert state.acquire(owner="a", target="h1", runbook="r", **take)
    assert state.acquire(owner="a", target="h1", runbook="r", **take)  # re-entrant
    assert not state.acquire(owner="b", target="h1", runbook="r", **take)
    assert state.acquire(owner="c", target="h2", runbook="r", **take)
    assert not state.acquire(owner="d", target="h3", runbook="r", **take)  # global limit
    assert {lock.owner for lock in state.locks(NOW)} == {"a", "c"}
    state.release("a")
    assert state.acquire(owner="d", target="h3", runbook="r", **take)
    later = NOW + ttl
    assert state.locks(later) == []
    assert state.acquire(owner="e", target="h3", runbook="r", **{**take, "now": later})


def test_health_and_storms(state) -> None:
    state.set_health("web", "h1", healthy=False, at=NOW)
    state.set_health("web", "h2", healthy=False, at=NOW)
    state.set_health("web", "h1", healthy=True, at=NOW)
    assert state.unhealthy("web") == {"h2"}
    assert state.unhealthy("db") == set()
    assert state.last_storm("web") is None
    state.note_storm("web", NOW)
    state.note_storm("web", NOW - timedelta(minutes=5))  # never moves back
    assert state.last_storm("web") == NOW


def test_approvals_roundtrip(state) -> None:
    assert state.load_approval("x") is None
    state.save_approval("x", {"votes": []})
    updated = state.update_approval("x", lambda r: {**r, "votes": ["a"]})
    assert updated == {"votes": ["a"]} == state.load_approval("x")
    assert state.update_approval("missing", lambda r: r) is None


def test_sqlite_uses_wal_and_survives_reopen(tmp_path) -> None:
    path = tmp_path / "s.db"
    first = SQLiteState(path)
    first.record_run(request_id="a", runbook="r", target="h", service=None, at=NOW)
    first.close()
    again = SQLiteState(path)
    assert again.runs(since=NOW) == 1
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _grab(path: str, owner: str, queue) -> None:
    state = SQLiteState(path)
    won = state.acquire(
        owner=owner,
        target="db-01",
        runbook="failover",
        now=NOW,
        ttl=timedelta(minutes=5),
        max_global=10,
        max_per_target=1,
    )
    queue.put(won)
    state.close()


def test_sqlite_lock_is_exclusive_across_processes(tmp_path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteState(path).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_grab, args=(path, f"p{i}", queue)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    results = [queue.get(timeout=5) for _ in workers]
    assert results.count(True) == 1
    state = SQLiteState(path)
    assert len(state.locks(NOW)) == 1
    state.close()
