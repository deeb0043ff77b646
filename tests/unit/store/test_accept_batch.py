"""accept() of one big batch decides exactly as the same alerts accepted one at a time:
the per-batch fingerprint cache, the grouped count updates and the bulk insert change
nothing a caller can see."""

from __future__ import annotations

import random

from unit.store.conftest import later, make_alert

from selfheal.store import SQLiteStore


def _sequence(seed: int, length: int) -> list:
    rng = random.Random(seed)
    alerts = []
    for _ in range(length):
        instance = rng.choice(["web1", "web2", "db1"])
        status = rng.choice(["firing", "firing", "firing", "resolved"])
        start = later(rng.choice([0, 60]))  # a repeated start: late copies of a resolved one
        alerts.append(
            make_alert(
                instance,
                status,
                starts_at=start,
                ends_at=later(90) if status == "resolved" else None,
            )
        )
    return alerts


def _snapshot(store) -> list[tuple]:
    return store._read(
        "SELECT id, fingerprint, status, count, reopened_from, starts_at FROM incidents ORDER BY id"
    )


def test_one_batch_decides_like_one_at_a_time(tmp_path):
    for seed in range(5):
        alerts = _sequence(seed, 200)
        batched = SQLiteStore(tmp_path / f"batched-{seed}.db")
        single = SQLiteStore(tmp_path / f"single-{seed}.db")
        try:
            together = batched.accept(alerts, now=later(100))
            alone = [r for a in alerts for r in single.accept([a], now=later(100))]
            assert [(r.incident_id, r.decision) for r in together] == [
                (r.incident_id, r.decision) for r in alone
            ]
            assert {r.decision for r in together} >= {"new", "duplicate", "resolved", "reopened"}
            assert _snapshot(batched) == _snapshot(single)
            # the alert ids follow the batch order, one per alert
            ids = [r.alert_id for r in together]
            assert ids == sorted(ids) and len(set(ids)) == len(alerts)
            stored = batched._read("SELECT id, decision FROM alerts ORDER BY id")
            assert stored == [(r.alert_id, r.decision) for r in together]
        finally:
            batched.close()
            single.close()


def test_empty_batch(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    try:
        assert store.accept([]) == []
    finally:
        store.close()
