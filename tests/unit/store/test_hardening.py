"""Schema 3 on SQLite and PostgreSQL: timestamps of any year round-trip, resolves keep to their
episode, senders become requesters, quarantine and unfolding, fenced run processes, and
signed deliveries that can be taken only once."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.store.conftest import T0, later, make_alert

from selfheal.store import SQLiteStore
from selfheal.store.sql import dt, ts

any_time = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
).map(lambda value: value.replace(tzinfo=UTC))


@given(any_time)
def test_every_timestamp_reads_back_as_written(value) -> None:
    """strftime's %Y wrote the year 2 as "2", which nothing could read back."""
    text = ts(value)
    assert len(text) == 27 and dt(text) == value


def test_rows_an_older_version_wrote_for_years_below_1000_read_back() -> None:
    assert dt("2-01-01T00:00:00.000000Z") == datetime(2, 1, 1, tzinfo=UTC)
    assert dt("987-06-05T04:03:02.000001Z") == datetime(987, 6, 5, 4, 3, 2, 1, tzinfo=UTC)


_hosts = itertools.count()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(starts=any_time, ends=any_time)
def test_accepted_timestamps_round_trip_through_the_store(store, starts, ends) -> None:
    alert = make_alert(f"h{next(_hosts)}", starts_at=starts)
    [result] = store.accept([alert], now=T0)
    incident = store.get_incident(result.incident_id)
    assert incident.starts_at == starts
    [stored] = store.alerts_of(result.incident_id)
    assert dt(stored["starts_at"]) == starts
    resolved = dataclasses.replace(alert, status="resolved", ends_at=ends)
    [closing] = store.accept([resolved], now=T0)
    assert closing.decision == ("stale" if ends < starts else "resolved")
    assert store.list_incidents(limit=5)  # every row of the listing reads back


def test_a_resolve_of_an_earlier_episode_keeps_the_incident_open(store) -> None:
    first = make_alert(starts_at=T0)
    store.accept([first], now=T0)
    store.accept([dataclasses.replace(first, status="resolved", ends_at=later(300))], now=later(1))
    again = make_alert(starts_at=later(3600))
    [reopened] = store.accept([again], now=later(3601))
    assert reopened.decision == "reopened"
    old_resolve = dataclasses.replace(first, status="resolved", ends_at=later(300))
    [stale] = store.accept([old_resolve], now=later(3700))
    assert stale.decision == "stale"
    incident = store.get_incident(reopened.incident_id)
    assert (incident.status, incident.resolved_at) == ("open", None)
    # a resolve without endsAt, or one that ends after the start, still closes it
    own = dataclasses.replace(again, status="resolved", ends_at=later(3900))
    assert store.accept([own], now=later(3901))[0].decision == "resolved"


def test_the_episode_starts_when_opened_for_alerts_without_a_start(store) -> None:
    alert = make_alert(starts_at=None)
    [opened] = store.accept([alert], now=later(100))
    early = dataclasses.replace(alert, status="resolved", ends_at=later(50))
    assert store.accept([early], now=later(101))[0].decision == "stale"
    on_time = dataclasses.replace(alert, status="resolved", ends_at=later(150))
    assert store.accept([on_time], now=later(151))[0].decision == "resolved"
    assert store.get_incident(opened.incident_id).status == "resolved"


def test_the_sender_of_the_first_alert_is_the_incident_requester(store) -> None:
    first = dataclasses.replace(make_alert(), sender="alertmanager")
    [opened] = store.accept([first], now=T0)
    store.accept([dataclasses.replace(first, sender="someone-else")], now=later(1))
    assert store.get_incident(opened.incident_id).requester == "alertmanager"
    senders = [a["sender"] for a in store.alerts_of(opened.incident_id)]
    assert senders == ["alertmanager", "someone-else"]


def test_quarantine_release_and_listing(store) -> None:
    [a] = store.accept([make_alert("a")], now=T0)
    [b] = store.accept([make_alert("b")], now=T0)
    quarantined = store.quarantine(a.incident_id, "decision failed: ValueError", now=later(5))
    assert quarantined.quarantined_at == later(5)
    assert quarantined.quarantine_reason == "decision failed: ValueError"
    assert [i.id for i in store.list_quarantined()] == [a.incident_id]
    assert store.get_incident(b.incident_id).quarantined_at is None
    assert store.release_quarantine(a.incident_id).quarantined_at is None
    assert store.release_quarantine(a.incident_id) is None  # not quarantined any more
    assert store.list_quarantined() == []
    assert store.incident_ids(status="open") == [a.incident_id, b.incident_id]


def test_unfold_and_children(store) -> None:
    [root] = store.accept([make_alert("db")], now=T0)
    [child] = store.accept([make_alert("web")], now=T0)
    store.fold(child.incident_id, root.incident_id, "web depends on db")
    assert [c.id for c in store.children_of(root.incident_id)] == [child.incident_id]
    unfolded = store.unfold(child.incident_id, "root resolved")
    assert (unfolded.parent_id, unfolded.fold_reason) == (None, "root resolved")
    assert store.unfold(child.incident_id, "again") is None
    assert store.children_of(root.incident_id) == []


def test_a_run_process_is_recorded_only_by_its_current_attempt(store) -> None:
    [opened] = store.accept([make_alert()], now=T0)
    run = store.enqueue_run(opened.incident_id, "heal", "web1")
    claimed = store.claim_next_run("w1", 30, now=later(1))
    process = {"host": "h", "pid": 42, "pgid": 42}
    assert store.set_run_process(run.id, "w1", claimed.attempts, process)
    assert store.get_run(run.id).process == process
    assert not store.set_run_process(run.id, "w2", claimed.attempts, {"pid": 1})  # not its worker
    assert not store.set_run_process(run.id, "w1", claimed.attempts + 1, {"pid": 1})  # stale
    assert store.get_run(run.id).process == process


def test_a_signed_delivery_is_taken_once_until_it_expires(store) -> None:
    until = later(300)
    assert store.remember_delivery("d1", "grafana", until, now=later(1))
    assert not store.remember_delivery("d1", "grafana", until, now=later(2))  # a replay
    assert store.remember_delivery("d2", "grafana", until, now=later(2))
    # past its expiry the signature's timestamp check refuses it anyway; the row goes
    assert store.remember_delivery("d1", "grafana", later(900), now=later(301))


def test_a_listing_leaves_out_a_row_it_cannot_read(tmp_path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        [good] = store.accept([make_alert("good")], now=T0)
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "INSERT INTO incidents (fingerprint, source, name, labels, status, count, opened_at,"
            " last_seen) VALUES ('x', 'generic', 'Broken', '{}', 'open', 1, 'garbage', 'garbage')"
        )
    db.close()
    with SQLiteStore(path) as store:
        assert [i.id for i in store.list_incidents()] == [good.incident_id]
        assert len(store.incident_ids(status="open")) == 2


def test_migration_from_schema_2_keeps_the_rows(tmp_path, monkeypatch) -> None:
    """A store created by the previous version gains the new columns and keeps its data."""
    from selfheal.store import sql

    path = tmp_path / "state.db"
    with monkeypatch.context() as patch:
        patch.setattr(sql, "MIGRATIONS", sql.MIGRATIONS[:2])
        patch.setattr(sql, "SCHEMA_VERSION", 2)
        old = SQLiteStore(path)
        assert old.schema_version() == 2
        old.close()
    db = sqlite3.connect(path)
    with db:  # what the previous version wrote
        db.execute(
            "INSERT INTO incidents (fingerprint, source, name, labels, status, count, opened_at,"
            " last_seen, starts_at) VALUES ('f', 'generic', 'Down', '{}', 'open', 1,"
            " '2026-11-20T12:00:00.000000Z', '2026-11-20T12:00:00.000000Z',"
            " '2-01-01T00:00:00.000000Z')"
        )
    db.close()
    with SQLiteStore(path) as store:
        assert store.schema_version() == sql.SCHEMA_VERSION == 3
        [incident] = store.list_incidents()
        assert (incident.requester, incident.quarantined_at) == (None, None)
        assert incident.starts_at == datetime(2, 1, 1, tzinfo=UTC)


def test_a_run_and_its_decision_are_stored_together(store) -> None:
    """A worker reading the decision of a run it just claimed always finds it (it read an
    empty service when it came first), and a crash cannot leave one without the other."""
    [opened] = store.accept([make_alert()], now=T0)
    selection = {"code": "selection", "message": "m", "effect": "info", "service": "app"}
    run = store.enqueue_run(
        opened.incident_id, "heal", "web1", decision=("auto", [{"code": "route"}, selection])
    )
    [decision] = store.list_decisions(opened.incident_id)
    assert decision.mode == "auto"
    assert decision.reasons[-1] == {**selection, "run_id": run.id}
