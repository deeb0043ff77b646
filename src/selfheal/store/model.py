"""What the durable store holds, and the interface every implementation provides."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from selfheal.alerts import Alert
from selfheal.errors import SelfhealError

#: per alert: a new incident, a repeat of an open one, the end of an open one, a new incident
#: for a fingerprint whose earlier incident was resolved, or a resolved notification that
#: matches no incident at all (kept in `alerts`, no incident made).
#: "stale": a resolved notification that ended before the open incident began (an earlier
#: episode's, re-sent or replayed): kept in `alerts`, the incident stays open.
DEDUP_DECISIONS = ("new", "duplicate", "resolved", "reopened", "unmatched", "stale")
INCIDENT_STATUSES = ("open", "resolved")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "canceled", "interrupted")
FINAL_RUN_STATUSES = ("succeeded", "failed", "canceled")
VERDICTS = ("approve", "deny")
PAGER_STATUSES = ("pending", "delivered", "dead")


class StoreError(SelfhealError):
    """A store operation that cannot be done (unknown id, wrong state, database busy)."""


@dataclass(frozen=True)
class AcceptResult:
    alert_id: int
    incident_id: int | None
    decision: str  # one of DEDUP_DECISIONS
    fingerprint: str


@dataclass(frozen=True)
class Incident:
    id: int
    fingerprint: str
    source: str
    name: str
    labels: Mapping[str, str]
    status: str  # open | resolved
    count: int  # firing notifications seen
    opened_at: datetime
    last_seen: datetime
    starts_at: datetime | None
    resolved_at: datetime | None
    reopened_from: int | None
    parent_id: int | None
    fold_reason: str | None
    requester: str | None = None  # the identity whose alert opened it (intake token, source)
    quarantined_at: datetime | None = None  # a pipeline step failed on it: set aside
    quarantine_reason: str | None = None


@dataclass(frozen=True)
class Run:
    id: int
    incident_id: int
    runbook: str
    target: str
    status: str  # one of RUN_STATUSES
    attempts: int
    private_data_dir: str | None
    created_at: datetime
    not_before: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    rc: int | None
    worker_id: str | None
    lease_expires_at: datetime | None
    reason: str | None
    # the current attempt's process, for fencing: {"host", "boot_id", "pid", "pgid",
    # "start_ticks", "private_data_dir"} (see selfheal.dispatcher.fence)
    process: dict[str, Any] | None = None


# A decision row that is a note on the incident (root-cause candidates from diagnosis), not a
# step of its pipeline: recovery and outcome classes look past it.
ROOT_CAUSE_MODE = "root_cause"


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    incident_id: int
    mode: str
    reasons: list[Any]
    at: datetime

    @property
    def is_pipeline_step(self) -> bool:
        return self.mode != ROOT_CAUSE_MODE


@dataclass(frozen=True)
class PagerEvent:
    """One pager event in the durable outbox (delivered in id order per incident)."""

    id: int
    incident_id: int
    target: str  # pagerduty | opsgenie
    kind: str  # trigger | acknowledge | resolve | change
    payload: dict[str, Any]
    status: str  # one of PAGER_STATUSES
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class ApprovalRecord:
    id: int
    request_id: str
    approver: str
    role: str
    verdict: str  # approve | deny
    at: datetime


class Store(abc.ABC):
    """The dispatcher's durable state. Every method is one transaction; a method that
    returns has committed (with the SQLite store: fsynced, ``synchronous=FULL``)."""

    # -- intake and dedup
    @abc.abstractmethod
    def accept(self, alerts: Iterable[Alert], *, now: datetime | None = None) -> list[AcceptResult]:
        """Store alerts and apply dedup, all in one transaction; one result per alert."""

    @abc.abstractmethod
    def get_incident(self, incident_id: int) -> Incident | None: ...

    @abc.abstractmethod
    def open_incident(self, fingerprint: str) -> Incident | None: ...

    @abc.abstractmethod
    def list_incidents(self, *, status: str | None = None, limit: int = 100) -> list[Incident]:
        """Newest first."""

    @abc.abstractmethod
    def alerts_of(self, incident_id: int) -> list[dict[str, Any]]:
        """The stored alerts of an incident, oldest first (raw JSON decoded)."""

    @abc.abstractmethod
    def fold(self, child_id: int, parent_id: int, reason: str) -> Incident:
        """Correlation: make ``child_id`` a symptom of ``parent_id`` (no cycles)."""

    @abc.abstractmethod
    def unfold(self, child_id: int, note: str) -> Incident | None:
        """Undo a fold; None when the incident is not folded."""

    @abc.abstractmethod
    def children_of(self, parent_id: int) -> list[Incident]:
        """Incidents folded directly into `parent_id`, oldest first."""

    @abc.abstractmethod
    def quarantine(
        self, incident_id: int, reason: str, *, now: datetime | None = None
    ) -> Incident | None:
        """Set an incident aside after a pipeline step failed on it."""

    @abc.abstractmethod
    def release_quarantine(self, incident_id: int) -> Incident | None: ...

    @abc.abstractmethod
    def list_quarantined(self, *, limit: int = 100) -> list[Incident]:
        """Quarantined incidents, newest first."""

    @abc.abstractmethod
    def incident_ids(self, *, status: str | None = None) -> list[int]:
        """Incident ids, oldest first."""

    @abc.abstractmethod
    def remember_delivery(
        self, digest: str, source: str, expires_at: datetime, *, now: datetime | None = None
    ) -> bool:
        """Record a signed delivery; False when it was seen before (a replay)."""

    # -- runs
    @abc.abstractmethod
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
        """Queue a run; with `decision` (mode, reasons), also record the decision that allowed
        it in the same transaction (its `selection` reason gains the run's id)."""

    @abc.abstractmethod
    def claim_next_run(
        self, worker_id: str, lease_s: float, *, now: datetime | None = None
    ) -> Run | None:
        """Atomically take the oldest due queued run (status running, attempts + 1)."""

    @abc.abstractmethod
    def renew_lease(
        self,
        run_id: int,
        worker_id: str,
        lease_s: float,
        *,
        now: datetime | None = None,
        attempt: int | None = None,
    ) -> bool:
        """Extend a running run's lease; False when the run is no longer this worker's (or,
        with `attempt`, no longer at that attempt)."""

    @abc.abstractmethod
    def set_run_process(
        self, run_id: int, worker_id: str, attempt: int, process: dict[str, Any] | None
    ) -> bool:
        """Record the current attempt's process; False when the attempt is not current."""

    @abc.abstractmethod
    def set_private_data_dir(self, run_id: int, path: str) -> None: ...

    @abc.abstractmethod
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
        """End a running run (succeeded | failed | canceled); with `worker_id` and `attempt`,
        only while the run is still at that worker and attempt (else StoreError)."""

    @abc.abstractmethod
    def recover_interrupted(
        self, now: datetime | None = None, *, worker_id: str | None = None
    ) -> list[Run]:
        """Mark running runs whose lease expired (and, with ``worker_id``, every running run
        of that worker: call it at startup) as interrupted; return them."""

    @abc.abstractmethod
    def retry_run(
        self, run_id: int, *, not_before: datetime | None = None, now: datetime | None = None
    ) -> Run:
        """Queue an interrupted or failed run again (attempts are kept)."""

    @abc.abstractmethod
    def cancel_pending_runs(
        self, incident_id: int, reason: str, *, now: datetime | None = None
    ) -> list[Run]:
        """Cancel the incident's queued runs (e.g. it resolved before they started)."""

    @abc.abstractmethod
    def cancel_run(self, run_id: int, reason: str, *, now: datetime | None = None) -> Run | None:
        """Cancel the run if it is still queued; None when it is not (claimed, finished)."""

    @abc.abstractmethod
    def get_run(self, run_id: int) -> Run | None: ...

    @abc.abstractmethod
    def list_runs(
        self,
        *,
        incident_id: int | None = None,
        status: str | None = None,
        newest: int | None = None,
    ) -> list[Run]:
        """Runs oldest first; with `newest`, only the newest that many, newest first."""

    @abc.abstractmethod
    def count_runs(self, *, incident_id: int | None = None, status: str | None = None) -> int: ...

    # -- decisions and approvals
    @abc.abstractmethod
    def record_decision(
        self, incident_id: int, mode: str, reasons: list[Any], *, at: datetime | None = None
    ) -> DecisionRecord: ...

    @abc.abstractmethod
    def list_decisions(self, incident_id: int) -> list[DecisionRecord]: ...

    @abc.abstractmethod
    def record_approval(
        self, request_id: str, approver: str, role: str, verdict: str, *, at: datetime | None = None
    ) -> ApprovalRecord:
        """One vote per approver per request; a second one raises StoreError."""

    @abc.abstractmethod
    def list_approvals(self, request_id: str) -> list[ApprovalRecord]: ...

    # -- pager outbox
    @abc.abstractmethod
    def enqueue_pager_event(
        self,
        incident_id: int,
        target: str,
        kind: str,
        payload: dict[str, Any],
        *,
        now: datetime | None = None,
    ) -> PagerEvent:
        """Add a pending event to the outbox (due at once)."""

    @abc.abstractmethod
    def due_pager_events(
        self, target: str, *, now: datetime | None = None, limit: int = 100
    ) -> list[PagerEvent]:
        """Per incident, its oldest pending event of `target`, when due: later events of an
        incident wait behind it."""

    @abc.abstractmethod
    def claim_pager_event(
        self, event_id: int, until: datetime, *, now: datetime | None = None
    ) -> bool:
        """Take a due pending event for one delivery attempt (it is not due for anyone else
        until `until`); False when another sender took it first."""

    @abc.abstractmethod
    def settle_pager_event(
        self,
        event_id: int,
        status: str,
        *,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        now: datetime | None = None,
    ) -> PagerEvent:
        """Record one delivery attempt of a pending event: delivered, dead, or pending again
        (due at `next_attempt_at`)."""

    @abc.abstractmethod
    def list_pager_events(
        self, *, incident_id: int | None = None, status: str | None = None
    ) -> list[PagerEvent]:
        """Oldest first."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
