"""accept(): alerts stored with their dedup decision; incidents opened, bumped, resolved,
reopened; correlation folds; decisions and approvals; schema versions."""

from __future__ import annotations

import sqlite3

import pytest
from unit.store.conftest import T0, later, make_alert

from selfheal.alerts import normalise
from selfheal.store import SCHEMA_VERSION, SQLiteStore, StoreError


def _count(store, table: str) -> int:
    return store._read(f"SELECT COUNT(*) FROM {table}")[0][0]


def test_thousand_copies_and_hundred_distinct_make_101_incidents(store):
    alerts = []
    for i in range(1100):
        # 1,000 copies of web-hot interleaved with 100 distinct alerts
        alerts.append(make_alert("web-hot") if i % 11 else make_alert(f"web-{i // 11}"))
    results = []
    for start in range(0, len(alerts), 100):
        results += store.accept(alerts[start : start + 100], now=later(start))
    assert len(results) == 1100
    assert sum(r.decision == "new" for r in results) == 101
    assert sum(r.decision == "duplicate" for r in results) == 999
    incidents = store.list_incidents(limit=1000)
    assert len(incidents) == 101 == _count(store, "incidents")
    hot = store.open_incident(make_alert("web-hot").fingerprint)
    assert hot.count == 1000
    assert hot.last_seen == later(1000)
    assert sorted(i.count for i in incidents) == [1] * 100 + [1000]
    assert _count(store, "alerts") == 1100
    assert len({r.alert_id for r in results}) == 1100


def test_firing_then_resolved_is_one_incident(store):
    (fired,) = store.accept([make_alert()], now=T0)
    (ended,) = store.accept([make_alert(status="resolved", ends_at=later(60))], now=later(65))
    assert (fired.decision, ended.decision) == ("new", "resolved")
    assert fired.incident_id == ended.incident_id
    incident = store.get_incident(fired.incident_id)
    assert incident.status == "resolved"
    assert incident.resolved_at == later(60)  # the sender's end time
    assert incident.count == 1
    assert store.open_incident(make_alert().fingerprint) is None
    assert [a["decision"] for a in store.alerts_of(incident.id)] == ["new", "resolved"]
    assert store.alerts_of(incident.id)[0]["raw"] == {"instance": "web1", "status": "firing"}


def test_firing_after_resolution_reopens_a_new_incident(store):
    first = store.accept([make_alert()])[0]
    store.accept([make_alert(status="resolved", ends_at=later(60))])
    again = store.accept([make_alert(starts_at=later(600))])[0]
    assert again.decision == "reopened"
    assert again.incident_id != first.incident_id
    incident = store.get_incident(again.incident_id)
    assert incident.status == "open" and incident.reopened_from == first.incident_id
    assert store.open_incident(make_alert().fingerprint).id == again.incident_id


def test_late_copy_of_a_resolved_alert_does_not_reopen(store):
    """A retried delivery of the old firing notification (same start) after the resolved one."""
    first = store.accept([make_alert()])[0]
    store.accept([make_alert(status="resolved", ends_at=later(60))])
    late = store.accept([make_alert()])[0]
    assert (late.decision, late.incident_id) == ("duplicate", first.incident_id)
    assert len(store.list_incidents()) == 1


def test_resolved_without_incident(store):
    (result,) = store.accept([make_alert(status="resolved")])
    assert (result.decision, result.incident_id) == ("unmatched", None)
    assert _count(store, "alerts") == 1  # kept, never dropped
    store.accept([make_alert()])
    store.accept([make_alert(status="resolved")])
    (repeat,) = store.accept([make_alert(status="resolved")])
    assert repeat.decision == "duplicate"


def test_one_batch_one_transaction(store):
    """A batch that fails half-way leaves nothing behind."""
    good = make_alert("a")
    bad = make_alert("b", raw=object())  # cannot be serialised
    with pytest.raises(TypeError):
        store.accept([good, bad])
    assert _count(store, "alerts") == 0 and _count(store, "incidents") == 0
    assert store.accept([good])[0].decision == "new"


def test_real_alertmanager_sequence(store, shared):
    samples = shared / "samples" / "alertmanager"
    decisions = []
    for name in ("group-firing-2-alerts.json", "group-partly-resolved.json"):
        alerts = normalise("alertmanager", (samples / name).read_bytes())
        decisions += [r.decision for r in store.accept(alerts)]
    assert decisions == ["new", "new", "resolved", "duplicate"]


def test_fold_into_root_cause(store):
    root = store.accept([make_alert("db", name="DatabaseDown")])[0].incident_id
    child = store.accept([make_alert("web")])[0].incident_id
    grandchild = store.accept([make_alert("lb", name="HighErrorRate")])[0].incident_id
    folded = store.fold(child, root, "web depends on db")
    assert (folded.parent_id, folded.fold_reason) == (root, "web depends on db")
    store.fold(grandchild, child, "lb in front of web")
    with pytest.raises(StoreError, match="cycle"):
        store.fold(root, grandchild, "loop")
    with pytest.raises(StoreError, match="into itself"):
        store.fold(root, root, "self")
    with pytest.raises(StoreError, match="no incident 999"):
        store.fold(999, root, "x")


def test_decisions_and_approvals(store):
    incident = store.accept([make_alert()])[0].incident_id
    store.record_decision(incident, "approval", [{"code": "risk_tier", "detail": "high"}], at=T0)
    (decision,) = store.list_decisions(incident)
    assert decision.mode == "approval" and decision.reasons[0]["code"] == "risk_tier"
    assert decision.at == T0
    store.record_approval("req-1", "alice", "sre", "approve", at=T0)
    store.record_approval("req-1", "bob", "dba", "deny")
    assert [(a.approver, a.verdict) for a in store.list_approvals("req-1")] == [
        ("alice", "approve"),
        ("bob", "deny"),
    ]
    with pytest.raises(StoreError, match="already voted"):
        store.record_approval("req-1", "alice", "sre", "approve")
    with pytest.raises(StoreError, match="verdict"):
        store.record_approval("req-1", "carol", "sre", "maybe")
    with pytest.raises(StoreError, match="no incident"):
        store.record_decision(12345, "auto", [])


def test_schema_version_and_pragmas(tmp_path):
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
        store.accept([make_alert()])
    with SQLiteStore(path) as store:  # reopening migrates nothing and keeps the data
        assert store.schema_version() == SCHEMA_VERSION
        assert len(store.list_incidents()) == 1
    with sqlite3.connect(path) as conn:
        # one row per migration, none added by reopening
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute("INSERT INTO schema_version VALUES (99, '2030-01-01T00:00:00.000000Z')")
    with pytest.raises(StoreError, match="newer than this selfheal"):
        SQLiteStore(path)


def test_threads_share_one_store(store):
    from concurrent.futures import ThreadPoolExecutor

    def work(n: int) -> list[str]:
        return [r.decision for r in store.accept([make_alert(f"t{n % 5}")])]

    with ThreadPoolExecutor(4) as pool:
        decisions = [d for ds in pool.map(work, range(200)) for d in ds]
    assert decisions.count("new") == 5 and decisions.count("duplicate") == 195
    assert sum(i.count for i in store.list_incidents()) == 200
