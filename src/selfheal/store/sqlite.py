"""The embedded store: one SQLite file in WAL mode, ``synchronous=FULL``.

Durability: every write transaction is fsynced before the method returns, so an alert that
`accept()` reported is on disk even if the process is SIGKILLed right after. Concurrency:
several processes may open the same file; writes take the write lock up front
(``BEGIN IMMEDIATE``) and wait up to ``busy_timeout_s`` for it. Threads: one `SQLiteStore`
may be shared by threads (one connection, every method under a lock), or each thread may
open its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfheal.store.model import StoreError
from selfheal.store.sql import SQLStore


class SQLiteStore(SQLStore):
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._max_variables = min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 30000)
            super().__init__(conn)
        except BaseException:
            conn.close()
            raise

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Any]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def _insert_alerts(self, cur: Any, rows: list[tuple]) -> list[int]:
        # Multi-row INSERTs instead of a statement per row: sqlite3 releases the GIL around
        # every statement, and getting it back from a busy event loop takes a switch
        # interval. The write lock is held since BEGIN IMMEDIATE and `alerts.id` is the
        # rowid, so the new ids are consecutive after the previous maximum; checked.
        if not rows:
            return []
        before = cur.execute("SELECT COALESCE(MAX(id), 0) FROM alerts").fetchone()[0]
        per_statement = max(1, self._max_variables // len(rows[0]))
        head, _, one = self._INSERT_ALERT.partition("VALUES ")
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cur.execute(
                head + "VALUES " + ", ".join([one] * len(chunk)),
                [value for row in chunk for value in row],
            )
        last = cur.execute("SELECT last_insert_rowid()").fetchone()[0]
        if last - before != len(rows):
            raise StoreError(f"{self.path}: alert ids are not consecutive; nothing was stored")
        return list(range(before + 1, last + 1))

    def _translate_error(self, exc: Exception) -> StoreError | None:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreError(f"{self.path}: database busy ({exc})")
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreError(f"{self.path}: constraint failed ({exc})")
        return None

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: "ok" when the file is sound."""
        return self._read("PRAGMA integrity_check")[0][0]
