"""What the guardrails remember: runs, outcomes, locks, health, storms, cost, approvals.

`State` is the small interface the engine reads (and the dispatcher writes). `MemoryState`
keeps it in one process; `SQLiteState` keeps it in a SQLite database in WAL mode that several
processes can share -- lock acquisition runs in a `BEGIN IMMEDIATE` transaction, so two
dispatchers never both take the last slot.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import inf
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Lock:
    owner: str  # the request id holding it
    target: str
    runbook: str
    expires: datetime


@runtime_checkable
class State(Protocol):
    def runs(
        self, *, since: datetime, target: str | None = None, runbook: str | None = None
    ) -> int:
        """Runs started at or after `since`, for one target and/or one runbook."""

    def record_run(
        self,
        *,
        request_id: str,
        runbook: str,
        target: str,
        service: str | None,
        at: datetime,
        cost: float = 0.0,
    ) -> None: ...

    def record_result(self, *, runbook: str, target: str, ok: bool, at: datetime) -> None: ...

    def failures_since_success(self, runbook: str, since: datetime) -> list[datetime]:
        """Failure times of `runbook` (any target) at or after `since` and its last success."""

    def consecutive_failures(self, runbook: str, target: str) -> int:
        """Failures of `runbook` on `target` since its last success there."""

    def cost_spent(self, since: datetime) -> float: ...

    def locks(self, now: datetime) -> list[Lock]:
        """Locks not yet expired at `now` (actions in flight)."""

    def acquire(
        self,
        *,
        owner: str,
        target: str,
        runbook: str,
        now: datetime,
        ttl: timedelta,
        max_global: int,
        max_per_target: int,
    ) -> bool:
        """Take a run slot atomically; False if the global or per-target limit is reached."""

    def release(self, owner: str) -> None: ...

    def set_health(self, service: str, target: str, healthy: bool, at: datetime) -> None: ...

    def unhealthy(self, service: str) -> set[str]: ...

    def note_storm(self, service: str, at: datetime) -> None: ...

    def last_storm(self, service: str) -> datetime | None: ...

    def save_approval(self, request_id: str, record: dict[str, Any]) -> None: ...

    def load_approval(self, request_id: str) -> dict[str, Any] | None: ...

    def update_approval(
        self, request_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Read-modify-write one approval record atomically; `change` returns the new record."""


class MemoryState:
    """Everything in process memory (tests, the CLI, single-process dispatchers)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # run times (and costs), indexed the ways the guardrails ask
        self._runs_all: list[tuple[datetime, float]] = []
        self._runs_by_target: dict[str, list[datetime]] = {}
        self._runs_by_runbook: dict[str, list[datetime]] = {}
        self._runs_by_pair: dict[tuple[str, str], list[datetime]] = {}
        self._results: dict[str, list[tuple[datetime, str, bool]]] = {}
        self._locks: dict[str, Lock] = {}
        self._unhealthy: dict[str, set[str]] = {}
        self._storms: dict[str, datetime] = {}
        self._approvals: dict[str, str] = {}

    def runs(self, *, since, target=None, runbook=None) -> int:
        if target is not None and runbook is not None:
            times = self._runs_by_pair.get((runbook, target), ())
        elif target is not None:
            times = self._runs_by_target.get(target, ())
        elif runbook is not None:
            times = self._runs_by_runbook.get(runbook, ())
        else:
            return len(self._runs_all) - bisect_left(self._runs_all, (since, -inf))
        return len(times) - bisect_left(times, since)

    def record_run(self, *, request_id, runbook, target, service, at, cost=0.0) -> None:
        with self._lock:
            insort(self._runs_all, (at, float(cost)))
            insort(self._runs_by_target.setdefault(target, []), at)
            insort(self._runs_by_runbook.setdefault(runbook, []), at)
            insort(self._runs_by_pair.setdefault((runbook, target), []), at)

    def record_result(self, *, runbook, target, ok, at) -> None:
        with self._lock:
            self._results.setdefault(runbook, []).append((at, target, bool(ok)))

    def failures_since_success(self, runbook, since) -> list[datetime]:
        rows = self._results.get(runbook, ())
        last_ok = max((at for at, _, ok in rows if ok), default=None)
        return sorted(
            at for at, _, ok in rows if not ok and at >= since and (last_ok is None or at > last_ok)
        )

    def consecutive_failures(self, runbook, target) -> int:
        rows = [(at, ok) for at, tg, ok in self._results.get(runbook, ()) if tg == target]
        last_ok = max((at for at, ok in rows if ok), default=None)
        return sum(1 for at, ok in rows if not ok and (last_ok is None or at > last_ok))

    def cost_spent(self, since) -> float:
        runs = self._runs_all
        return sum(cost for _, cost in runs[bisect_left(runs, (since, -inf)) :])

    def locks(self, now) -> list[Lock]:
        return [lock for lock in self._locks.values() if lock.expires > now]

    def acquire(self, *, owner, target, runbook, now, ttl, max_global, max_per_target) -> bool:
        with self._lock:
            live = self.locks(now)
            if owner in {lock.owner for lock in live}:
                return True
            if len(live) >= max_global:
                return False
            if sum(1 for lock in live if lock.target == target) >= max_per_target:
                return False
            self._locks[owner] = Lock(owner, target, runbook, now + ttl)
            return True

    def release(self, owner) -> None:
        with self._lock:
            self._locks.pop(owner, None)

    def set_health(self, service, target, healthy, at) -> None:
        with self._lock:
            bucket = self._unhealthy.setdefault(service, set())
            if healthy:
                bucket.discard(target)
            else:
                bucket.add(target)

    def unhealthy(self, service) -> set[str]:
        return set(self._unhealthy.get(service, ()))

    def note_storm(self, service, at) -> None:
        with self._lock:
            previous = self._storms.get(service)
            if previous is None or at > previous:
                self._storms[service] = at

    def last_storm(self, service) -> datetime | None:
        return self._storms.get(service)

    def save_approval(self, request_id, record) -> None:
        with self._lock:
            self._approvals[request_id] = json.dumps(record)

    def load_approval(self, request_id) -> dict[str, Any] | None:
        raw = self._approvals.get(request_id)
        return json.loads(raw) if raw is not None else None

    def update_approval(self, request_id, change) -> dict[str, Any] | None:
        with self._lock:
            record = change(self.load_approval(request_id))
            if record is not None:
                self.save_approval(request_id, record)
            return record


def _ts(when: datetime) -> float:
    return when.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    request_id TEXT, runbook TEXT NOT NULL, target TEXT NOT NULL, service TEXT,
    at REAL NOT NULL, cost REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_target ON runs (target, at);
CREATE INDEX IF NOT EXISTS runs_runbook ON runs (runbook, at);
CREATE INDEX IF NOT EXISTS runs_at ON runs (at);
CREATE TABLE IF NOT EXISTS results (
    runbook TEXT NOT NULL, target TEXT NOT NULL, ok INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS results_runbook ON results (runbook, target, at);
CREATE TABLE IF NOT EXISTS locks (
    owner TEXT PRIMARY KEY, target TEXT NOT NULL, runbook TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS health (
    service TEXT NOT NULL, target TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (service, target));
CREATE TABLE IF NOT EXISTS storms (service TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (request_id TEXT PRIMARY KEY, record TEXT NOT NULL);
"""


class SQLiteState:
    """State in a SQLite database (WAL) shared by several processes on one host."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._mutex = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._write():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the database write lock up front."""
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> Any:
        with self._mutex:
            return self._db.execute(sql, args).fetchone()[0]

    def runs(self, *, since, target=None, runbook=None) -> int:
        sql, args = "SELECT count(*) FROM runs WHERE at >= ?", [_ts(since)]
        if target is not None:
            sql += " AND target = ?"
            args.append(target)
        if runbook is not None:
            sql += " AND runbook = ?"
            args.append(runbook)
        return int(self._one(sql, *args))

    def record_run(self, *, request_id, runbook, target, service, at, cost=0.0) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, runbook, target, service, _ts(at), float(cost)),
            )

    def record_result(self, *, runbook, target, ok, at) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?)", (runbook, target, int(bool(ok)), _ts(at))
            )

    def failures_since_success(self, runbook, since) -> list[datetime]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT at FROM results WHERE runbook = ? AND ok = 0 AND at >= ? AND at > "
                "coalesce((SELECT max(at) FROM results WHERE runbook = ? AND ok = 1), -1e18) "
                "ORDER BY at",
                (runbook, _ts(since), runbook),
            ).fetchall()
        return [_dt(r[0]) for r in rows]

    def consecutive_failures(self, runbook, target) -> int:
        return int(
            self._one(
                "SELECT count(*) FROM results WHERE runbook = ? AND target = ? AND ok = 0 AND at > "
                "coalesce((SELECT max(at) FROM results WHERE runbook = ? AND target = ? "
                "AND ok = 1), -1e18)",
                runbook,
                target,
                runbook,
                target,
            )
        )

    def cost_spent(self, since) -> float:
        return float(self._one("SELECT coalesce(sum(cost), 0) FROM runs WHERE at >= ?", _ts(since)))

    def locks(self, now) -> list[Lock]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT owner, target, runbook, expires FROM locks WHERE expires > ?", (_ts(now),)
            ).fetchall()
        return [Lock(o, t, r, _dt(e)) for o, t, r, e in rows]

    def acquire(self, *, owner, target, runbook, now, ttl, max_global, max_per_target) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM locks WHERE expires <= ?", (_ts(now),))
            if db.execute("SELECT 1 FROM locks WHERE owner = ?", (owner,)).fetchone():
                return True
            if db.execute("SELECT count(*) FROM locks").fetchone()[0] >= max_global:
                return False
            held = db.execute("SELECT count(*) FROM locks WHERE target = ?", (target,)).fetchone()
            if held[0] >= max_per_target:
                return False
            db.execute(
                "INSERT INTO locks VALUES (?, ?, ?, ?)", (owner, target, runbook, _ts(now + ttl))
            )
            return True

    def release(self, owner) -> None:
        with self._write() as db:
            db.execute("DELETE FROM locks WHERE owner = ?", (owner,))

    def set_health(self, service, target, healthy, at) -> None:
        with self._write() as db:
            if healthy:
                db.execute("DELETE FROM health WHERE service = ? AND target = ?", (service, target))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO health VALUES (?, ?, ?)", (service, target, _ts(at))
                )

    def unhealthy(self, service) -> set[str]:
        with self._mutex:
            rows = self._db.execute("SELECT target FROM health WHERE service = ?", (service,))
            return {r[0] for r in rows.fetchall()}

    def note_storm(self, service, at) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO storms VALUES (?, ?) ON CONFLICT (service) "
                "DO UPDATE SET at = max(at, excluded.at)",
                (service, _ts(at)),
            )

    def last_storm(self, service) -> datetime | None:
        with self._mutex:
            row = self._db.execute("SELECT at FROM storms WHERE service = ?", (service,)).fetchone()
        return _dt(row[0]) if row else None

    def save_approval(self, request_id, record) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO approvals VALUES (?, ?)", (request_id, json.dumps(record))
            )

    def load_approval(self, request_id) -> dict[str, Any] | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT record FROM approvals WHERE request_id = ?", (request_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def update_approval(self, request_id, change) -> dict[str, Any] | None:
        with self._write() as db:
            row = db.execute(
                "SELECT record FROM approvals WHERE request_id = ?", (request_id,)
            ).fetchone()
            record = change(json.loads(row[0]) if row else None)
            if record is not None:
                db.execute(
                    "INSERT OR REPLACE INTO approvals VALUES (?, ?)",
                    (request_id, json.dumps(record)),
                )
            return record
