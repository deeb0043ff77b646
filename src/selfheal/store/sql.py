"""All the store's SQL and logic, written once for SQLite and (later) PostgreSQL.

The SQL sticks to what both engines accept: ``?`` placeholders (a subclass may rewrite them),
TEXT timestamps in one fixed-width UTC format (so they compare as text), JSON as TEXT,
``RETURNING``, partial unique indexes. A subclass supplies the connection, the id column
type and the transactions (`_transaction`); the claim query is a class attribute so that a
PostgreSQL store can add ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from selfheal.alerts import Alert
from selfheal.store.model import (
    FINAL_RUN_STATUSES,
    INCIDENT_STATUSES,
    PAGER_STATUSES,
    RUN_STATUSES,
    VERDICTS,
    AcceptResult,
    ApprovalRecord,
    DecisionRecord,
    Incident,
    PagerEvent,
    Run,
    Store,
    StoreError,
)

log = logging.getLogger("selfheal.store")

_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(value: datetime | None) -> str | None:
    """Fixed-width UTC text for any year 1-9999 (strftime's %Y drops the leading zeros of
    years below 1000 on glibc, and `dt` could not read those back)."""
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError("naive datetime")
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond:06d}Z"
    )


def dt(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, _FMT).replace(tzinfo=UTC)
    except ValueError:
        # rows written before 0.2 by strftime: a year below 1000 without its zeros
        head, sep, tail = value.partition("-")
        if sep and head.isdigit() and len(head) < 4:
            return datetime.strptime(f"{int(head):04d}-{tail}", _FMT).replace(tzinfo=UTC)
        raise


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)  # json.dumps with these options builds an encoder per call


def _check(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# Each migration is a list of statements; @ID@ is the engine's auto-increment key column.
MIGRATIONS: list[list[str]] = [
    [
        f"""CREATE TABLE incidents (
            id @ID@,
            fingerprint TEXT NOT NULL,
            source TEXT NOT NULL,
            name TEXT NOT NULL,
            labels TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_check(INCIDENT_STATUSES)})),
            count INTEGER NOT NULL,
            opened_at TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            starts_at TEXT,
            resolved_at TEXT,
            reopened_from INTEGER REFERENCES incidents (id),
            parent_id INTEGER REFERENCES incidents (id),
            fold_reason TEXT
        )""",
        # At most one open incident per fingerprint: dedup holds even under a racing writer.
        "CREATE UNIQUE INDEX incidents_open ON incidents (fingerprint) WHERE status = 'open'",
        "CREATE INDEX incidents_fingerprint ON incidents (fingerprint, id)",
        """CREATE TABLE alerts (
            id @ID@,
            received_at TEXT NOT NULL,
            accepted_at TEXT NOT NULL,
            source TEXT NOT NULL,
            status TEXT NOT NULL,
            name TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            labels TEXT NOT NULL,
            annotations TEXT NOT NULL,
            starts_at TEXT,
            ends_at TEXT,
            generator_url TEXT NOT NULL,
            raw TEXT NOT NULL,
            incident_id INTEGER REFERENCES incidents (id),
            decision TEXT NOT NULL
        )""",
        "CREATE INDEX alerts_incident ON alerts (incident_id, id)",
        f"""CREATE TABLE runs (
            id @ID@,
            incident_id INTEGER NOT NULL REFERENCES incidents (id),
            runbook TEXT NOT NULL,
            target TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_check(RUN_STATUSES)})),
            attempts INTEGER NOT NULL DEFAULT 0,
            private_data_dir TEXT,
            created_at TEXT NOT NULL,
            not_before TEXT,
            started_at TEXT,
            finished_at TEXT,
            rc INTEGER,
            worker_id TEXT,
            lease_expires_at TEXT,
            reason TEXT
        )""",
        "CREATE INDEX runs_status ON runs (status, id)",
        "CREATE INDEX runs_incident ON runs (incident_id, id)",
        """CREATE TABLE decisions (
            id @ID@,
            incident_id INTEGER NOT NULL REFERENCES incidents (id),
            mode TEXT NOT NULL,
            reasons TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        "CREATE INDEX decisions_incident ON decisions (incident_id, id)",
        f"""CREATE TABLE approvals (
            id @ID@,
            request_id TEXT NOT NULL,
            approver TEXT NOT NULL,
            role TEXT NOT NULL,
            verdict TEXT NOT NULL CHECK (verdict IN ({_check(VERDICTS)})),
            at TEXT NOT NULL,
            UNIQUE (request_id, approver)
        )""",
    ],
    # 2: the pager outbox (timeline events waiting for PagerDuty / Opsgenie)
    [
        f"""CREATE TABLE pager_outbox (
            id @ID@,
            incident_id INTEGER NOT NULL REFERENCES incidents (id),
            target TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_check(PAGER_STATUSES)})),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            delivered_at TEXT
        )""",
        "CREATE INDEX pager_outbox_queue ON pager_outbox (status, target, incident_id, id)",
    ],
    # 3: who sent each alert (the identity that requested its remediation), incidents set
    # aside when a pipeline step fails on them, the process of a run's current attempt (so a
    # restarted dispatcher can fence it), and signed deliveries already seen (replays)
    [
        "ALTER TABLE alerts ADD COLUMN sender TEXT",
        "ALTER TABLE incidents ADD COLUMN requester TEXT",
        "ALTER TABLE incidents ADD COLUMN quarantined_at TEXT",
        "ALTER TABLE incidents ADD COLUMN quarantine_reason TEXT",
        "ALTER TABLE runs ADD COLUMN process TEXT",
        """CREATE TABLE seen_deliveries (
            digest TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX seen_deliveries_expiry ON seen_deliveries (expires_at)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

_ALERT_KEYS = (
    "id",
    "received_at",
    "source",
    "status",
    "name",
    "fingerprint",
    "labels",
    "annotations",
    "starts_at",
    "ends_at",
    "generator_url",
    "raw",
    "decision",
    "sender",
)
_INCIDENT_COLS = (
    "id, fingerprint, source, name, labels, status, count, opened_at, last_seen, starts_at,"
    " resolved_at, reopened_from, parent_id, fold_reason, requester, quarantined_at,"
    " quarantine_reason"
)
_RUN_COLS = (
    "id, incident_id, runbook, target, status, attempts, private_data_dir, created_at,"
    " not_before, started_at, finished_at, rc, worker_id, lease_expires_at, reason, process"
)


_PAGER_COLS = (
    "id, incident_id, target, kind, payload, status, attempts, next_attempt_at, last_error,"
    " created_at, delivered_at"
)


def _pager_event(row: tuple) -> PagerEvent:
    return PagerEvent(
        id=row[0],
        incident_id=row[1],
        target=row[2],
        kind=row[3],
        payload=json.loads(row[4]),
        status=row[5],
        attempts=row[6],
        next_attempt_at=dt(row[7]),
        last_error=row[8],
        created_at=dt(row[9]),
        delivered_at=dt(row[10]),
    )


def _incident(row: tuple) -> Incident:
    return Incident(
        id=row[0],
        fingerprint=row[1],
        source=row[2],
        name=row[3],
        labels=json.loads(row[4]),
        status=row[5],
        count=row[6],
        opened_at=dt(row[7]),
        last_seen=dt(row[8]),
        starts_at=dt(row[9]),
        resolved_at=dt(row[10]),
        reopened_from=row[11],
        parent_id=row[12],
        fold_reason=row[13],
        requester=row[14],
        quarantined_at=dt(row[15]),
        quarantine_reason=row[16],
    )


def _readable(rows: list[tuple], parse, what: str) -> list:
    """The rows `parse` can read; one it cannot (written by hand, or by an older version) is
    logged and left out, so that it never makes a whole listing fail."""
    out = []
    for row in rows:
        try:
            out.append(parse(row))
        except (TypeError, ValueError) as exc:
            log.error("unreadable %s row left out", what, extra={"id": row[0], "error": str(exc)})
    return out


def _filter(incident_id: int | None, status: str | None) -> tuple[str, tuple]:
    """The WHERE clause (or none) and parameters of a listing by incident and status."""
    clauses, params = [], []
    if incident_id is not None:
        clauses.append("incident_id = ?")
        params.append(incident_id)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else "", tuple(params))


def _run(row: tuple) -> Run:
    return Run(
        id=row[0],
        incident_id=row[1],
        runbook=row[2],
        target=row[3],
        status=row[4],
        attempts=row[5],
        private_data_dir=row[6],
        created_at=dt(row[7]),
        not_before=dt(row[8]),
        started_at=dt(row[9]),
        finished_at=dt(row[10]),
        rc=row[11],
        worker_id=row[12],
        lease_expires_at=dt(row[13]),
        reason=row[14],
        process=json.loads(row[15]) if row[15] else None,
    )


@dataclass(slots=True)
class _Known:
    """One fingerprint's incidents as a transaction last saw them."""

    open_id: int | None  # its open incident
    last: tuple[int, str | None] | None  # (id, starts_at) of its newest incident, when none is open


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Stamps:
    """`ts()` memoised for one batch: a storm repeats the same few timestamps."""

    def __init__(self) -> None:
        self._seen: dict[datetime, str] = {}

    def __call__(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        text = self._seen.get(value)
        if text is None:
            text = self._seen[value] = ts(value)  # type: ignore[assignment]
        return text


class SQLStore(Store):
    """Store logic over one DB-API connection, serialised by a lock (thread-safe: every
    method holds ``self._lock`` for its whole transaction)."""

    ID_COLUMN = "INTEGER PRIMARY KEY"
    CLAIM_SELECT = (
        "SELECT id FROM runs WHERE status = 'queued' AND (not_before IS NULL OR not_before <= ?)"
        " ORDER BY id LIMIT 1"
    )

    def __init__(self, conn: Any):
        self._conn = conn
        self._lock = threading.RLock()
        self._migrate()

    # -- engine hooks
    def _sql(self, statement: str) -> str:
        return statement

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Any]:
        """A transaction (for a write: holding the engine's write lock); yields a cursor."""
        raise NotImplementedError

    def _translate_error(self, exc: Exception) -> StoreError | None:
        return None

    def _lock_keys(self, cur: Any, keys: Iterable[str]) -> None:
        """Serialise writers on these keys (fingerprints) until the transaction ends; a
        no-op where `_transaction` already holds the one database write lock (SQLite)."""

    def _migration_lock(self, cur: Any) -> None:
        """Serialise concurrent migrations (SQLite: the write lock already does)."""

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        with self._lock:
            try:
                with self._transaction(write) as cur:
                    yield cur
            except StoreError:
                raise
            except Exception as exc:
                mapped = self._translate_error(exc)
                if mapped is None:
                    raise
                raise mapped from exc

    def _x(self, cur: Any, statement: str, params: tuple = ()) -> Any:
        cur.execute(self._sql(statement), params)
        return cur

    def _read(self, statement: str, params: tuple = ()) -> list[tuple]:
        with self._tx(write=False) as cur:
            return self._x(cur, statement, params).fetchall()

    # -- schema
    def _migrate(self) -> None:
        with self._tx() as cur:
            self._migration_lock(cur)
            self._x(
                cur,
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER NOT NULL, applied_at TEXT NOT NULL)",
            )
            row = self._x(cur, "SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {current} is newer than this selfheal"
                    f" ({SCHEMA_VERSION}); upgrade selfheal"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1]:
                    self._x(cur, statement.replace("@ID@", self.ID_COLUMN))
                self._x(
                    cur,
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, ts(datetime.now(UTC))),
                )

    def schema_version(self) -> int:
        return self._read("SELECT MAX(version) FROM schema_version")[0][0]

    # -- intake and dedup
    def accept(self, alerts: Iterable[Alert], *, now: datetime | None = None) -> list[AcceptResult]:
        alerts = list(alerts)
        at = ts(_now(now))
        stamp = _Stamps()
        known: dict[str, _Known] = {}
        bumps: dict[int, int] = {}  # open incident -> firing duplicates in this batch
        rows = []
        outcomes = []
        with self._tx() as cur:
            self._lock_keys(cur, (alert.fingerprint for alert in alerts))
            self._open_incidents(cur, {alert.fingerprint for alert in alerts}, known)
            for alert in alerts:
                incident_id, decision = self._dedup(cur, alert, at, known, bumps)
                rows.append(
                    (
                        stamp(alert.received_at),
                        at,
                        alert.source,
                        alert.status,
                        alert.name,
                        alert.fingerprint,
                        _json(dict(alert.labels)),
                        _json(dict(alert.annotations)),
                        stamp(alert.starts_at),
                        stamp(alert.ends_at),
                        alert.generator_url,
                        _json(alert.raw),
                        incident_id,
                        decision,
                        alert.sender,
                    )
                )
                outcomes.append((incident_id, decision, alert.fingerprint))
            for chunk in _chunks(list(bumps.items()), 400):
                # one statement for the batch, however many duplicates of an incident it holds
                values = ", ".join(["(?, ?)"] * len(chunk))
                self._x(
                    cur,
                    f"WITH bump(id, n) AS (VALUES {values}) UPDATE incidents"
                    " SET count = count + (SELECT n FROM bump WHERE bump.id = incidents.id),"
                    " last_seen = ? WHERE id IN (SELECT id FROM bump)",
                    (*(v for pair in chunk for v in pair), at),
                )
            ids = self._insert_alerts(cur, rows)
        return [
            AcceptResult(alert_id, incident_id, decision, fp)
            for alert_id, (incident_id, decision, fp) in zip(ids, outcomes, strict=True)
        ]

    _INSERT_ALERT = (
        "INSERT INTO alerts (received_at, accepted_at, source, status, name, fingerprint,"
        " labels, annotations, starts_at, ends_at, generator_url, raw, incident_id, decision,"
        " sender) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def _insert_alerts(self, cur: Any, rows: list[tuple]) -> list[int]:
        """Insert the alert rows in order; their ids, in the same order. An engine may
        override this with a bulk insert (SQLite: `executemany`)."""
        sql = self._INSERT_ALERT + " RETURNING id"
        return [self._x(cur, sql, row).fetchone()[0] for row in rows]

    def _dedup(
        self, cur: Any, alert: Alert, at: str, known: dict[str, _Known], bumps: dict[int, int]
    ) -> tuple[int | None, str]:
        """The dedup decision for one alert, in batch order. `known` caches each
        fingerprint's incidents for the rest of the transaction (dropped after a write that
        changes them); firing duplicates only count into `bumps`, written once per batch."""
        fp = alert.fingerprint
        state = known.get(fp)
        if state is None:
            state = known[fp] = self._known(cur, fp)
        if state.open_id is not None:
            if alert.firing:
                bumps[state.open_id] = bumps.get(state.open_id, 0) + 1
                return state.open_id, "duplicate"
            if self._stale_resolve(cur, alert, state.open_id):
                return state.open_id, "stale"
            self._x(
                cur,
                "UPDATE incidents SET status = 'resolved', resolved_at = ?, last_seen = ?"
                " WHERE id = ?",
                (ts(alert.ends_at) or at, at, state.open_id),
            )
            del known[fp]
            return state.open_id, "resolved"
        last = state.last
        if not alert.firing:
            # A repeated resolved notification, or one for an alert never seen firing.
            return (last[0], "duplicate") if last else (None, "unmatched")
        if last is not None and alert.starts_at is not None and last[1] == ts(alert.starts_at):
            # A late copy of the alert instance that was already resolved (same start).
            return last[0], "duplicate"
        row = self._x(
            cur,
            "INSERT INTO incidents (fingerprint, source, name, labels, status, count, opened_at,"
            " last_seen, starts_at, reopened_from, requester)"
            " VALUES (?, ?, ?, ?, 'open', 1, ?, ?, ?, ?, ?) RETURNING id",
            (
                fp,
                alert.source,
                alert.name,
                _json(dict(alert.labels)),
                at,
                at,
                ts(alert.starts_at),
                last[0] if last else None,
                alert.sender,
            ),
        ).fetchone()
        del known[fp]
        return row[0], "reopened" if last else "new"

    def _stale_resolve(self, cur: Any, alert: Alert, incident_id: int) -> bool:
        """A resolved notification whose end lies before the open incident began belongs to
        an earlier episode of the alert (re-sent late, or replayed): it must not close this
        one. The episode began at the alert's own start, or else when selfheal opened it."""
        if alert.ends_at is None:
            return False
        row = self._x(
            cur, "SELECT starts_at, opened_at FROM incidents WHERE id = ?", (incident_id,)
        ).fetchone()
        began = dt(row[0] or row[1])
        return began is not None and alert.ends_at < began

    def _open_incidents(self, cur: Any, fingerprints: set[str], known: dict[str, _Known]) -> None:
        """Fill `known` with the open incidents of these fingerprints in a few statements (a
        statement per alert costs a GIL round trip each under a busy event loop)."""
        for chunk in _chunks(sorted(fingerprints), 500):
            marks = ", ".join(["?"] * len(chunk))
            for fp, incident_id in self._x(
                cur,
                f"SELECT fingerprint, id FROM incidents WHERE status = 'open'"
                f" AND fingerprint IN ({marks})",
                tuple(chunk),
            ).fetchall():
                known[fp] = _Known(incident_id, None)

    def _known(self, cur: Any, fp: str) -> _Known:
        open_row = self._x(
            cur, "SELECT id FROM incidents WHERE fingerprint = ? AND status = 'open'", (fp,)
        ).fetchone()
        if open_row is not None:
            return _Known(open_row[0], None)
        last = self._x(
            cur,
            "SELECT id, starts_at FROM incidents WHERE fingerprint = ? ORDER BY id DESC LIMIT 1",
            (fp,),
        ).fetchone()
        return _Known(None, tuple(last) if last else None)

    def get_incident(self, incident_id: int) -> Incident | None:
        rows = self._read(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = ?", (incident_id,))
        return _incident(rows[0]) if rows else None

    def open_incident(self, fingerprint: str) -> Incident | None:
        rows = self._read(
            f"SELECT {_INCIDENT_COLS} FROM incidents WHERE fingerprint = ? AND status = 'open'",
            (fingerprint,),
        )
        return _incident(rows[0]) if rows else None

    def list_incidents(self, *, status: str | None = None, limit: int = 100) -> list[Incident]:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self._read(
            f"SELECT {_INCIDENT_COLS} FROM incidents {where} ORDER BY id DESC LIMIT ?",
            (*params, int(limit)),
        )
        return _readable(rows, _incident, "incident")

    def alerts_of(self, incident_id: int) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT id, received_at, source, status, name, fingerprint, labels, annotations,"
            " starts_at, ends_at, generator_url, raw, decision, sender FROM alerts"
            " WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        keys = _ALERT_KEYS
        out = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            for key in ("labels", "annotations", "raw"):
                item[key] = json.loads(item[key])
            out.append(item)
        return out

    def fold(self, child_id: int, parent_id: int, reason: str) -> Incident:
        if child_id == parent_id:
            raise StoreError(f"cannot fold incident {child_id} into itself")
        with self._tx() as cur:
            for incident_id in (child_id, parent_id):
                if not self._x(
                    cur, "SELECT 1 FROM incidents WHERE id = ?", (incident_id,)
                ).fetchone():
                    raise StoreError(f"no incident {incident_id}")
            ancestor: int | None = parent_id
            seen = set()
            while ancestor is not None and ancestor not in seen:
                if ancestor == child_id:
                    raise StoreError(f"folding {child_id} into {parent_id} would make a cycle")
                seen.add(ancestor)
                ancestor = self._x(
                    cur, "SELECT parent_id FROM incidents WHERE id = ?", (ancestor,)
                ).fetchone()[0]
            self._x(
                cur,
                "UPDATE incidents SET parent_id = ?, fold_reason = ? WHERE id = ?",
                (parent_id, reason, child_id),
            )
            row = self._x(
                cur, f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = ?", (child_id,)
            ).fetchone()
        return _incident(row)

    def unfold(self, child_id: int, note: str) -> Incident | None:
        """Undo a fold (its root resolved or proved untrustworthy): the incident stands on its
        own again; None when it is not folded."""
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE incidents SET parent_id = NULL, fold_reason = ?"
                f" WHERE id = ? AND parent_id IS NOT NULL RETURNING {_INCIDENT_COLS}",
                (note, child_id),
            ).fetchone()
        return _incident(row) if row else None

    def children_of(self, parent_id: int) -> list[Incident]:
        rows = self._read(
            f"SELECT {_INCIDENT_COLS} FROM incidents WHERE parent_id = ? ORDER BY id",
            (parent_id,),
        )
        return [_incident(r) for r in rows]

    def quarantine(
        self, incident_id: int, reason: str, *, now: datetime | None = None
    ) -> Incident | None:
        """Set an incident aside: a pipeline step failed on it. It stays open and visible;
        the pipeline skips it until `release_quarantine`. None when there is no such incident."""
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE incidents SET quarantined_at = ?, quarantine_reason = ?"
                f" WHERE id = ? RETURNING {_INCIDENT_COLS}",
                (ts(_now(now)), reason[:1000], incident_id),
            ).fetchone()
        return _incident(row) if row else None

    def release_quarantine(self, incident_id: int) -> Incident | None:
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE incidents SET quarantined_at = NULL, quarantine_reason = NULL"
                f" WHERE id = ? AND quarantined_at IS NOT NULL RETURNING {_INCIDENT_COLS}",
                (incident_id,),
            ).fetchone()
        return _incident(row) if row else None

    def list_quarantined(self, *, limit: int = 100) -> list[Incident]:
        rows = self._read(
            f"SELECT {_INCIDENT_COLS} FROM incidents WHERE quarantined_at IS NOT NULL"
            " ORDER BY id DESC LIMIT ?",
            (int(limit),),
        )
        return [_incident(r) for r in rows]

    def incident_ids(self, *, status: str | None = None) -> list[int]:
        """Ids only (oldest first): recovery reads rows one at a time, so that one row it
        cannot read is set aside instead of stopping the start."""
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        return [r[0] for r in self._read(f"SELECT id FROM incidents {where} ORDER BY id", params)]

    # -- signed deliveries (replay protection)
    def remember_delivery(
        self, digest: str, source: str, expires_at: datetime, *, now: datetime | None = None
    ) -> bool:
        """Record a signed delivery; False when the same one was seen before (a replay).
        Entries past their expiry (the signature's tolerance) are dropped on the way."""
        at = ts(_now(now))
        with self._tx() as cur:
            self._x(cur, "DELETE FROM seen_deliveries WHERE expires_at <= ?", (at,))
            # one statement: two replicas taking the same delivery at once cannot both win
            row = self._x(
                cur,
                "INSERT INTO seen_deliveries (digest, source, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (digest) DO NOTHING RETURNING digest",
                (digest, source, ts(expires_at)),
            ).fetchone()
        return row is not None

    # -- runs
    def enqueue_run(
        self,
        incident_id: int,
        runbook: str,
        target: str,
        *,
        private_data_dir: str | None = None,
        not_before: datetime | None = None,
        now: datetime | None = None,
        decision: tuple[str, list[Any]] | None = None,
    ) -> Run:
        when = ts(_now(now))
        with self._tx() as cur:
            if not self._x(cur, "SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone():
                raise StoreError(f"no incident {incident_id}")
            row = self._x(
                cur,
                "INSERT INTO runs (incident_id, runbook, target, status, attempts,"
                " private_data_dir, created_at, not_before) VALUES (?, ?, ?, 'queued', 0, ?, ?, ?)"
                f" RETURNING {_RUN_COLS}",
                (incident_id, runbook, target, private_data_dir, when, ts(not_before)),
            ).fetchone()
            if decision is not None:
                # the decision that allowed the run, in the same transaction: no worker or
                # restart ever sees the run without it (its `selection` names the run)
                mode, reasons = decision
                reasons = [
                    {**r, "run_id": row[0]}
                    if isinstance(r, dict) and r.get("code") == "selection"
                    else r
                    for r in reasons
                ]
                self._x(
                    cur,
                    "INSERT INTO decisions (incident_id, mode, reasons, at) VALUES (?, ?, ?, ?)",
                    (incident_id, mode, _json(list(reasons)), when),
                )
        return _run(row)

    def claim_next_run(
        self, worker_id: str, lease_s: float, *, now: datetime | None = None
    ) -> Run | None:
        at = _now(now)
        with self._tx() as cur:
            row = self._x(cur, self.CLAIM_SELECT, (ts(at),)).fetchone()
            if row is None:
                return None
            row = self._x(
                cur,
                "UPDATE runs SET status = 'running', attempts = attempts + 1, worker_id = ?,"
                " started_at = ?, finished_at = NULL, rc = NULL, lease_expires_at = ?"
                f" WHERE id = ? AND status = 'queued' RETURNING {_RUN_COLS}",
                (worker_id, ts(at), ts(at + timedelta(seconds=lease_s)), row[0]),
            ).fetchone()
        return _run(row) if row else None

    def renew_lease(
        self,
        run_id: int,
        worker_id: str,
        lease_s: float,
        *,
        now: datetime | None = None,
        attempt: int | None = None,
    ) -> bool:
        """`attempt` fences the renewal to that attempt (a fencing token): an older attempt's
        worker cannot extend the lease of a newer one under the same worker id."""
        at = _now(now)
        fenced = "" if attempt is None else " AND attempts = ?"
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND status = 'running'"
                f" AND worker_id = ?{fenced} RETURNING id",
                (ts(at + timedelta(seconds=lease_s)), run_id, worker_id)
                + (() if attempt is None else (attempt,)),
            ).fetchone()
        return row is not None

    def set_run_process(
        self, run_id: int, worker_id: str, attempt: int, process: dict[str, Any] | None
    ) -> bool:
        """Record the process of the run's current attempt (None clears it). False when the
        run is no longer this worker's attempt (fenced: a newer attempt or a recovery)."""
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE runs SET process = ? WHERE id = ? AND status = 'running'"
                " AND worker_id = ? AND attempts = ? RETURNING id",
                (_json(process) if process is not None else None, run_id, worker_id, attempt),
            ).fetchone()
        return row is not None

    def set_private_data_dir(self, run_id: int, path: str) -> None:
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE runs SET private_data_dir = ? WHERE id = ? RETURNING id",
                (path, run_id),
            ).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id}")

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        rc: int | None = None,
        worker_id: str | None = None,
        reason: str | None = None,
        now: datetime | None = None,
        attempt: int | None = None,
    ) -> Run:
        if status not in FINAL_RUN_STATUSES:
            raise StoreError(f"a run finishes as one of {', '.join(FINAL_RUN_STATUSES)}")
        with self._tx() as cur:
            owner = "" if worker_id is None else " AND worker_id = ?"
            owner += "" if attempt is None else " AND attempts = ?"
            row = self._x(
                cur,
                "UPDATE runs SET status = ?, rc = ?, reason = ?, finished_at = ?,"
                f" lease_expires_at = NULL WHERE id = ? AND status = 'running'{owner}"
                f" RETURNING {_RUN_COLS}",
                (status, rc, reason, ts(_now(now)), run_id)
                + (() if worker_id is None else (worker_id,))
                + (() if attempt is None else (attempt,)),
            ).fetchone()
            if row is None:
                raise StoreError(
                    f"run {run_id} is not running"
                    + ("" if worker_id is None else f" under worker {worker_id!r}")
                )
        return _run(row)

    def recover_interrupted(
        self, now: datetime | None = None, *, worker_id: str | None = None
    ) -> list[Run]:
        at = ts(_now(now))
        mine = "" if worker_id is None else " OR worker_id = ?"
        with self._tx() as cur:
            rows = self._x(
                cur,
                "UPDATE runs SET status = 'interrupted', finished_at = ?, lease_expires_at = NULL,"
                " reason = CASE WHEN lease_expires_at <= ? THEN 'lease expired'"
                " ELSE 'worker restarted' END"
                f" WHERE status = 'running' AND (lease_expires_at <= ?{mine})"
                f" RETURNING {_RUN_COLS}",
                (at, at, at) + (() if worker_id is None else (worker_id,)),
            ).fetchall()
        return sorted((_run(r) for r in rows), key=lambda r: r.id)

    def retry_run(
        self, run_id: int, *, not_before: datetime | None = None, now: datetime | None = None
    ) -> Run:
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE runs SET status = 'queued', not_before = ?, worker_id = NULL,"
                " lease_expires_at = NULL WHERE id = ? AND status IN ('interrupted', 'failed')"
                f" RETURNING {_RUN_COLS}",
                (ts(not_before), run_id),
            ).fetchone()
            if row is None:
                raise StoreError(f"run {run_id} is not interrupted or failed")
        return _run(row)

    def cancel_pending_runs(
        self, incident_id: int, reason: str, *, now: datetime | None = None
    ) -> list[Run]:
        with self._tx() as cur:
            rows = self._x(
                cur,
                "UPDATE runs SET status = 'canceled', reason = ?, finished_at = ?"
                f" WHERE incident_id = ? AND status = 'queued' RETURNING {_RUN_COLS}",
                (reason, ts(_now(now)), incident_id),
            ).fetchall()
        return sorted((_run(r) for r in rows), key=lambda r: r.id)

    def cancel_run(self, run_id: int, reason: str, *, now: datetime | None = None) -> Run | None:
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE runs SET status = 'canceled', reason = ?, finished_at = ?"
                f" WHERE id = ? AND status = 'queued' RETURNING {_RUN_COLS}",
                (reason, ts(_now(now)), run_id),
            ).fetchone()
        return _run(row) if row else None

    def get_run(self, run_id: int) -> Run | None:
        rows = self._read(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def list_runs(
        self,
        *,
        incident_id: int | None = None,
        status: str | None = None,
        newest: int | None = None,
    ) -> list[Run]:
        where, params = _filter(incident_id, status)
        if newest is None:
            rows = self._read(f"SELECT {_RUN_COLS} FROM runs {where} ORDER BY id", params)
        else:
            rows = self._read(
                f"SELECT {_RUN_COLS} FROM runs {where} ORDER BY id DESC LIMIT ?",
                (*params, int(newest)),
            )
        return [_run(r) for r in rows]

    def count_runs(self, *, incident_id: int | None = None, status: str | None = None) -> int:
        where, params = _filter(incident_id, status)
        return int(self._read(f"SELECT count(*) FROM runs {where}", params)[0][0])

    # -- decisions and approvals
    def record_decision(
        self, incident_id: int, mode: str, reasons: list[Any], *, at: datetime | None = None
    ) -> DecisionRecord:
        when = ts(_now(at))
        with self._tx() as cur:
            if not self._x(cur, "SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone():
                raise StoreError(f"no incident {incident_id}")
            row = self._x(
                cur,
                "INSERT INTO decisions (incident_id, mode, reasons, at) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (incident_id, mode, _json(list(reasons)), when),
            ).fetchone()
        return DecisionRecord(row[0], incident_id, mode, list(reasons), dt(when))

    def list_decisions(self, incident_id: int) -> list[DecisionRecord]:
        rows = self._read(
            "SELECT id, incident_id, mode, reasons, at FROM decisions WHERE incident_id = ?"
            " ORDER BY id",
            (incident_id,),
        )
        return [DecisionRecord(r[0], r[1], r[2], json.loads(r[3]), dt(r[4])) for r in rows]

    def record_approval(
        self, request_id: str, approver: str, role: str, verdict: str, *, at: datetime | None = None
    ) -> ApprovalRecord:
        if verdict not in VERDICTS:
            raise StoreError(f"verdict must be one of {', '.join(VERDICTS)}")
        when = ts(_now(at))
        with self._tx() as cur:
            if self._x(
                cur,
                "SELECT 1 FROM approvals WHERE request_id = ? AND approver = ?",
                (request_id, approver),
            ).fetchone():
                raise StoreError(f"{approver!r} already voted on {request_id!r}")
            row = self._x(
                cur,
                "INSERT INTO approvals (request_id, approver, role, verdict, at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (request_id, approver, role, verdict, when),
            ).fetchone()
        return ApprovalRecord(row[0], request_id, approver, role, verdict, dt(when))

    def list_approvals(self, request_id: str) -> list[ApprovalRecord]:
        rows = self._read(
            "SELECT id, request_id, approver, role, verdict, at FROM approvals"
            " WHERE request_id = ? ORDER BY id",
            (request_id,),
        )
        return [ApprovalRecord(*r[:5], dt(r[5])) for r in rows]

    # -- pager outbox
    def enqueue_pager_event(
        self,
        incident_id: int,
        target: str,
        kind: str,
        payload: dict[str, Any],
        *,
        now: datetime | None = None,
    ) -> PagerEvent:
        at = ts(_now(now))
        with self._tx() as cur:
            row = self._x(
                cur,
                "INSERT INTO pager_outbox (incident_id, target, kind, payload, status, attempts,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)"
                f" RETURNING {_PAGER_COLS}",
                (incident_id, target, kind, _json(payload), at, at),
            ).fetchone()
        return _pager_event(row)

    def due_pager_events(
        self, target: str, *, now: datetime | None = None, limit: int = 100
    ) -> list[PagerEvent]:
        rows = self._read(
            f"SELECT {_PAGER_COLS} FROM pager_outbox o WHERE status = 'pending' AND target = ?"
            " AND next_attempt_at <= ? AND id = (SELECT MIN(id) FROM pager_outbox h"
            " WHERE h.incident_id = o.incident_id AND h.target = o.target"
            " AND h.status = 'pending') ORDER BY id LIMIT ?",
            (target, ts(_now(now)), int(limit)),
        )
        return [_pager_event(r) for r in rows]

    def claim_pager_event(
        self, event_id: int, until: datetime, *, now: datetime | None = None
    ) -> bool:
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE pager_outbox SET next_attempt_at = ? WHERE id = ? AND status = 'pending'"
                " AND next_attempt_at <= ? RETURNING id",
                (ts(until), event_id, ts(_now(now))),
            ).fetchone()
        return row is not None

    def settle_pager_event(
        self,
        event_id: int,
        status: str,
        *,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        now: datetime | None = None,
    ) -> PagerEvent:
        if status not in PAGER_STATUSES:
            raise StoreError(f"a pager event is one of {', '.join(PAGER_STATUSES)}")
        at = _now(now)
        due = ts(next_attempt_at or at)
        delivered = ts(at) if status == "delivered" else None
        with self._tx() as cur:
            row = self._x(
                cur,
                "UPDATE pager_outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?, delivered_at = ? WHERE id = ? AND status = 'pending'"
                f" RETURNING {_PAGER_COLS}",
                (status, error, due, delivered, event_id),
            ).fetchone()
            if row is None:
                raise StoreError(f"pager event {event_id} is not pending")
        return _pager_event(row)

    def list_pager_events(
        self, *, incident_id: int | None = None, status: str | None = None
    ) -> list[PagerEvent]:
        where, params = _filter(incident_id, status)
        rows = self._read(f"SELECT {_PAGER_COLS} FROM pager_outbox {where} ORDER BY id", params)
        return [_pager_event(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
