"""The dispatcher's durable state: alerts, incidents (dedup, correlation), runs, decisions
and approvals. `Store` is the interface; `SQLiteStore` the embedded implementation.

    from selfheal.store import SQLiteStore

    with SQLiteStore("state/selfheal.db") as store:
        results = store.accept(alerts)     # committed and fsynced when it returns

See docs/alerts.md for the guarantees.
"""

from selfheal.store.model import (
    DEDUP_DECISIONS,
    RUN_STATUSES,
    AcceptResult,
    ApprovalRecord,
    DecisionRecord,
    Incident,
    Run,
    Store,
    StoreError,
)
from selfheal.store.sql import SCHEMA_VERSION
from selfheal.store.sqlite import SQLiteStore

__all__ = [
    "DEDUP_DECISIONS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "AcceptResult",
    "ApprovalRecord",
    "DecisionRecord",
    "Incident",
    "Run",
    "SQLiteStore",
    "Store",
    "StoreError",
]
