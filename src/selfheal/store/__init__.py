"""The dispatcher's durable state: alerts, incidents (dedup, correlation), runs, decisions
and approvals. `Store` is the interface; `SQLiteStore` the embedded implementation,
`PostgresStore` the shared one (`open_store(location)` picks by the location).

    from selfheal.store import SQLiteStore

    with SQLiteStore("state/selfheal.db") as store:
        results = store.accept(alerts)     # committed and fsynced when it returns

See docs/alerts.md for the guarantees.
"""

from selfheal.store.model import (
    DEDUP_DECISIONS,
    ROOT_CAUSE_MODE,
    RUN_STATUSES,
    AcceptResult,
    ApprovalRecord,
    DecisionRecord,
    Incident,
    Run,
    Store,
    StoreError,
)
from selfheal.store.postgres import PostgresStore
from selfheal.store.sql import SCHEMA_VERSION
from selfheal.store.sqlite import SQLiteStore


def open_store(location: str) -> Store:
    """``postgresql://...`` (or ``postgres://``) opens a `PostgresStore`; anything else is
    the path of a SQLite file."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresStore(location)
    return SQLiteStore(location)


__all__ = [
    "DEDUP_DECISIONS",
    "ROOT_CAUSE_MODE",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "AcceptResult",
    "ApprovalRecord",
    "DecisionRecord",
    "Incident",
    "PostgresStore",
    "Run",
    "SQLiteStore",
    "Store",
    "StoreError",
    "open_store",
]
