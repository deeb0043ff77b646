"""The dispatcher's engine: group-committed intake, the decision pipeline, the worker pool.

Threads (all daemons, all stopped by `stop()`):

* ``intake``: takes what concurrent requests submitted, commits it with **one**
  `store.accept()` (group commit), then wakes every request; a request answers 2xx only
  after that commit.
* ``pipeline``: for each new or reopened incident: label safety, `policy.evaluate`,
  correlation through the service dependency graph, decision recorded (store and audit
  trail), then a queued run, a pending approval, or an escalation. A resolved alert cancels
  the incident's queued runs. Also the periodic chores: re-evaluating deferred incidents,
  approval timeouts, runs whose lease expired.
* ``worker-N``: claim a run with a lease, renew it while the playbook runs, verify, then
  retry with backoff or escalate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from selfheal.alerts import Alert
from selfheal.dispatcher import fence
from selfheal.dispatcher.awx import AWXClient, awx_executor
from selfheal.dispatcher.config import DispatcherConfig
from selfheal.dispatcher.execute import execute, resolve_playbook, verify_playbook
from selfheal.dispatcher.metrics import Metrics
from selfheal.dispatcher.outbox import PagerOutbox, PagerTimeline, client_for
from selfheal.dispatcher.safety import label_problems, safe_name
from selfheal.dispatcher.tracing import Tracer
from selfheal.errors import ConfigError, SelfhealError
from selfheal.policy import (
    Decision,
    Request,
    SQLiteState,
    approval_status,
    approve,
    begin_run,
    compile_policy,
    evaluate,
    finish_run,
    load_policy,
    locate,
    open_approval,
    record_decision,
)
from selfheal.policy.inventory import inventory_from_data
from selfheal.store import AcceptResult, Incident, Run, StoreError, open_store

log = logging.getLogger("selfheal.dispatcher")

MAX_BATCH = 5000  # alerts per group-committed transaction
MAX_REEVALUATIONS = 50  # deferred incidents evaluated again per pipeline tick
MAX_STEP_RETRIES = 3  # a step failing on the store is tried again this often, then quarantined
PIPELINE_STUCK_S = 60.0  # readiness fails when the pipeline made no step for this long
# Refusals that end when a slot frees or the service is back under its max_unhealthy: the
# incident waits and is evaluated again instead of being denied for good.
TRANSIENT_DENIALS = frozenset({"concurrency", "blast_radius", "storm_cooldown"})
STORM_DENIALS = frozenset({"blast_radius", "storm_cooldown"})
REQUEST_PREFIX = "incident-"
_SENTINEL = object()


def request_id_of(incident_id: int) -> str:
    return f"{REQUEST_PREFIX}{incident_id}"


def incident_of(request_id: str) -> int | None:
    tail = request_id.removeprefix(REQUEST_PREFIX)
    if tail == request_id or not tail.isdigit() or len(tail) > 18:
        return None
    return int(tail)


def policy_digest(path: Path) -> str:
    """sha256 of the policy file as read (audited on reload)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "-"


def _settle_all(settle: list[tuple[Callable[..., None], Any, Any]]) -> None:
    for done, results, error in settle:
        try:
            done(results, error)
        except Exception:  # one waiter's failure must not leave the others waiting
            log.exception("intake callback failed")


def _selection_in(records) -> dict[str, Any] | None:
    """What the newest decision among `records` selected (runbook, route, service, target...)."""
    for record in reversed(records):
        for reason in record.reasons:
            if isinstance(reason, dict) and reason.get("code") == "selection":
                return {k: v for k, v in reason.items() if k not in ("code", "message", "effect")}
    return None


def _reason(code: str, message: str, effect: str = "info", **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "effect": effect, **extra}


@dataclass
class _Submission:
    alerts: list[Alert]
    done: Callable[[list[AcceptResult] | None, BaseException | None], None]


@dataclass
class _Handoff:
    """Submissions handed to the intake thread together. `deliver(fn)` runs `fn` where the
    submitters wait (the event loop): one wake-up per handoff and commit, not per request.
    Without it the `done` callbacks run on the intake thread."""

    subs: list[_Submission]
    deliver: Callable[[Callable[[], None]], None] | None = None


class _LoopIntake:
    """The event loop's side of the group commit: the requests that arrive during one loop
    iteration go to the intake thread as one handoff; when their transaction committed,
    one thread-safe callback settles all their futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handoff: Callable[[_Handoff], None]):
        self._loop = loop
        self._handoff = handoff
        self._pending: list[_Submission] = []

    def submit(self, alerts: list[Alert]) -> asyncio.Future:
        future = self._loop.create_future()

        def done(results, error) -> None:  # runs on the loop (see `_deliver`)
            if future.done():
                return  # the request went away (client disconnected, cancelled)
            if error is not None:
                future.set_exception(
                    error if isinstance(error, SelfhealError) else SelfhealError(str(error))
                )
            else:
                future.set_result(results)

        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(_Submission(alerts, done))
        return future

    def _flush(self) -> None:
        subs, self._pending = self._pending, []
        self._handoff(_Handoff(subs, self._deliver))

    def _deliver(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            self._loop.call_soon_threadsafe(fn)


@dataclass
class ApprovalOutcome:
    status: int  # HTTP status
    body: dict[str, Any]


class Dispatcher:
    def __init__(self, config: DispatcherConfig):
        config.validate()
        self.config = config
        self.policy_path = config.path(config.policy)
        self.policy = load_policy(self.policy_path)  # type: ignore[arg-type]
        self.inventory_path = config.path(config.inventory)
        assert self.inventory_path is not None
        try:
            data = yaml.safe_load(self.inventory_path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the inventory ({exc})", "inventory") from exc
        self.inventory = inventory_from_data(self.policy, data)
        self.store = open_store(config.store_location())
        self.state = SQLiteState(config.policy_state_path())
        self.runs_dir = config.runs_path()
        self.audit = None
        if config.audit:
            from selfheal.audit import AuditTrail, Keyring

            keyring = Keyring.load(config.path(config.audit_key_file), notice=log.warning)
            trail = config.path(config.audit)
            assert trail is not None
            # the callback's default spool: an event that cannot be written waits there
            self.audit = AuditTrail(trail, keyring, spool_dir=Path(f"{trail}.spool"))
        # The incident timeline goes to the pager through the store's outbox (outbox.py);
        # `pagerduty` is the writer's older name, whichever pager is configured.
        self.pagerduty: PagerTimeline | None = None
        self.pager_outbox: PagerOutbox | None = None
        if config.pager is not None:
            target = config.pager.target
            self.pager_outbox = PagerOutbox(
                self.store,
                client_for(config.pager),
                base_s=config.pager.base_s,
                cap_s=config.pager.cap_s,
                lease_s=max(60.0, 3 * config.pager.timeout_s),  # outlives one attempt
                count=lambda outcome: self.metrics.pager.inc(target=target, outcome=outcome),
            )
            self.pagerduty = PagerTimeline(self.store, target, self.pager_outbox.wake)
        self.metrics = Metrics(self._queue_depth, lambda: self._pipeline_q.qsize())
        self.awx = AWXClient(config.awx) if config.awx is not None else None
        self.tracer = Tracer(config.tracing, instance=config.instance)
        self.policy_digest = policy_digest(self.policy_path)  # type: ignore[arg-type]
        self.subscriptions: list[dict[str, Any]] = []  # SNS handshakes seen (newest last)
        self._intake_q: queue.Queue[Any] = queue.Queue()
        self._loop_intake: _LoopIntake | None = None
        self._pipeline_q: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deferred: dict[int, float] = {}
        self._approved_waiting: set[int] = set()  # approved, waiting for a slot
        # services that some other service depends on (correlation looks only at those)
        self._dependants = {dep for svc in self.policy.services for dep in self._dependencies(svc)}
        self._approvals: set[str] = set()  # pending approval request ids
        self._services: dict[int, str | None] = {}  # incident -> service, for correlation
        self._cancel: dict[int, threading.Event] = {}
        self._canceled_by: dict[int, str] = {}  # run id -> an operator's cancel note
        self._fencing: dict[int, Run] = {}  # interrupted runs whose attempt is not fenced yet
        self._work = threading.Condition()  # wakes idle workers when a run is queued
        self._queued_gen = 0  # bumped by every wake-up: a worker never misses one
        self._lock = threading.Lock()
        # Open incidents and the (service, host) each reports down: blast radius counts them
        # with the hosts in remediation, before any of them is decided.
        self._down: dict[int, tuple[str | None, str]] = {}
        # Incidents whose decision passed what a remediation needs (safe labels, a target in
        # the inventory): only those may stand as the root cause that folds others.
        self._trusted: set[int] = set()
        self._storms: dict[str, int] = {}  # service -> the incident that escalated its storm
        self._retries: list[tuple[float, tuple]] = []  # (due, a pipeline item to try again)
        self._pipeline_beat = time.monotonic()
        self._pipeline_error: str | None = None  # the last step failure not tied to an incident
        self.started = False

    # -- lifecycle --------------------------------------------------------------------------

    def worker_ids(self) -> list[str]:
        return [f"{self.config.instance}/w{i}" for i in range(self.config.workers)]

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._audit("dispatcher.start", outcome="ok", data={"workers": self.config.workers})
        self._recover(startup=True)
        self._resume_pipeline()
        self._spawn("intake", self._intake_loop)
        self._spawn("pipeline", self._pipeline_loop)
        if self.pager_outbox is not None:  # pending events of an earlier run go out first
            self._spawn("pager", self.pager_outbox.run, self._stop)
        for i, wid in enumerate(self.worker_ids()):
            self._spawn(f"worker-{i}", self._worker_loop, wid)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"selfheal-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._work:
            self._work.notify_all()
        self._intake_q.put(_SENTINEL)
        self._pipeline_q.put(_SENTINEL)
        for event in list(self._cancel.values()):
            event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self.tracer.close(max(0.1, deadline - time.monotonic()))
        if self.audit is not None:
            with contextlib.suppress(Exception):
                self.audit.close()
        with contextlib.suppress(Exception):
            self.state.close()
        with contextlib.suppress(Exception):
            self.store.close()

    def ready(self) -> bool:
        """Readiness: the store answers."""
        self.store.list_incidents(limit=1)
        return True

    def pipeline_ready(self) -> bool:
        """Readiness: the pipeline thread runs, makes steps, and its last step did not fail on
        something other than one incident (those are quarantined and do not count)."""
        if not self.started:
            return True
        thread = next((t for t in self._threads if t.name == "selfheal-pipeline"), None)
        if thread is None or not thread.is_alive():
            raise SelfhealError("the pipeline thread is not running")
        idle = time.monotonic() - self._pipeline_beat
        if idle > PIPELINE_STUCK_S:
            raise SelfhealError(f"the pipeline made no step for {idle:.0f} s")
        if self._pipeline_error is not None:
            raise SelfhealError(f"the pipeline is failing: {self._pipeline_error}")
        return True

    # -- intake (group commit) --------------------------------------------------------------

    def submit(self, alerts: list[Alert], done: Callable[..., None]) -> None:
        """Queue alerts for the next group commit; `done(results, error)` runs on the intake
        thread after the transaction committed (or failed)."""
        self._intake_q.put(_Handoff([_Submission(alerts, done)]))

    def submit_async(self, alerts: list[Alert]) -> asyncio.Future:
        """From the event loop: a future of the alerts' results, set once they committed
        (or failed with a `SelfhealError`). Requests of one loop iteration share a handoff."""
        loop = asyncio.get_running_loop()
        intake = self._loop_intake
        if intake is None or intake._loop is not loop:
            intake = self._loop_intake = _LoopIntake(loop, self._intake_q.put)
        return intake.submit(alerts)

    def accept_now(self, alerts: list[Alert]) -> list[AcceptResult]:
        """Synchronous accept through the same group commit (tests, tools)."""
        box: dict[str, Any] = {}
        event = threading.Event()

        def done(results, error):
            box["results"], box["error"] = results, error
            event.set()

        self.submit(alerts, done)
        event.wait()
        if box["error"] is not None:
            raise box["error"]
        return box["results"]

    def _intake_loop(self) -> None:
        while True:
            first = self._intake_q.get()
            if first is _SENTINEL:
                return
            handoffs = [first]
            count = sum(len(sub.alerts) for sub in first.subs)
            while count < MAX_BATCH:
                try:
                    item = self._intake_q.get_nowait()
                except queue.Empty:
                    break
                if item is _SENTINEL:
                    self._intake_q.put(_SENTINEL)
                    break
                handoffs.append(item)
                count += sum(len(sub.alerts) for sub in item.subs)
            outcomes = iter(self._commit([sub for h in handoffs for sub in h.subs]))
            for handoff in handoffs:
                settle = [(sub.done, *next(outcomes)) for sub in handoff.subs]
                if handoff.deliver is None:
                    _settle_all(settle)
                else:
                    handoff.deliver(lambda settle=settle: _settle_all(settle))

    def _commit(
        self, subs: list[_Submission]
    ) -> list[tuple[list[AcceptResult] | None, BaseException | None]]:
        """One transaction for all `subs`; each one's (results, error), in order."""
        alerts = [a for s in subs for a in s.alerts]
        try:
            results = self.store.accept(alerts)
        except Exception as exc:
            if len(subs) > 1:  # one bad submission must not fail its neighbours
                return [outcome for sub in subs for outcome in self._commit([sub])]
            log.error("accept failed", extra={"error": str(exc)})
            return [(None, exc)]
        self.metrics.accept_batch.observe(len(alerts))
        # counted per batch: a lock round per alert costs more than the insert itself
        for source, n in Counter(alert.source for alert in alerts).items():
            self.metrics.alerts.inc(n, source=source)
        for decision, n in Counter(result.decision for result in results).items():
            self.metrics.dedup.inc(n, decision=decision)
        self._pipeline_q.put(("accepted", alerts, results))
        outcomes: list[tuple[list[AcceptResult] | None, BaseException | None]] = []
        offset = 0
        for sub in subs:
            n = len(sub.alerts)
            outcomes.append((results[offset : offset + n], None))
            offset += n
        return outcomes

    # -- pipeline ---------------------------------------------------------------------------

    def _pipeline_loop(self) -> None:
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                item = self._pipeline_q.get(timeout=0.5)
            except queue.Empty:
                item = None
            if item is _SENTINEL:
                return
            try:
                if item is not None:
                    self._handle(item)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + 1.0
                    self._tick()
                self._pipeline_error = None
            except Exception as exc:  # not tied to one incident (those are quarantined)
                log.exception("pipeline step failed")
                self._pipeline_error = f"{type(exc).__name__}: {exc}"[:300]
                time.sleep(0.5)
            self._pipeline_beat = time.monotonic()

    def _step(self, incident_id: int | None, what: str, item: tuple, tries: int, fn, *args) -> None:
        """One pipeline step for one incident. A step that fails on the store is tried
        again a few times; any other failure, or one that keeps failing, quarantines the
        incident: one bad incident never stops the decisions of the others."""
        try:
            fn(*args)
        except Exception as exc:
            if incident_id is None:
                raise
            if isinstance(exc, StoreError) and tries + 1 < MAX_STEP_RETRIES:
                log.warning(
                    "pipeline step failed on the store; tried again shortly",
                    extra={"incident_id": incident_id, "step": what, "error": str(exc)},
                )
                self._pipeline_error = f"{what} of incident {incident_id}: {exc}"[:300]
                due = time.monotonic() + 0.5 * 2**tries
                self._retries.append((due, ("retry", item, tries + 1)))
                return
            self._quarantine(incident_id, what, exc)

    def _quarantine(self, incident_id: int, what: str, exc: BaseException) -> None:
        """Set an incident aside: recorded in the store (visible in the API and console),
        audited and escalated; the pipeline goes on with every other incident."""
        reason = f"{what} failed: {type(exc).__name__}: {exc}"[:500]
        log.error(
            "incident quarantined", exc_info=exc, extra={"incident_id": incident_id, "why": reason}
        )
        for forget in (self._deferred, self._services, self._down):
            forget.pop(incident_id, None)
        self._approved_waiting.discard(incident_id)
        self._trusted.discard(incident_id)
        incident = None
        try:
            incident = self.store.quarantine(incident_id, reason)
        except Exception as store_exc:  # the row itself may be what cannot be read back
            log.error(
                "quarantine not read back",
                extra={"incident_id": incident_id, "error": str(store_exc)},
            )
        try:
            self.store.record_decision(
                incident_id, "quarantined", [_reason("quarantined", reason, "manual")]
            )
        except Exception as store_exc:
            log.error(
                "quarantine not recorded",
                extra={"incident_id": incident_id, "error": str(store_exc)},
            )
        self.metrics.decisions.inc(mode="quarantined", reason="quarantined")
        self._audit(
            "incident.quarantined",
            incident_id=incident_id,
            outcome="quarantined",
            reasons=[reason],
        )
        if incident is not None:
            with contextlib.suppress(Exception):
                self._escalate(incident, "quarantined", reason)

    def release_quarantine(self, incident_id: int, who: str) -> Incident | None:
        """An operator fixed what failed: the incident goes through the pipeline again."""
        incident = self.store.release_quarantine(incident_id)
        if incident is None:
            return None
        self._audit(
            "incident.released",
            incident_id=incident_id,
            actor={"user": who},
            outcome="released",
        )
        self._pipeline_q.put(("redecide", incident_id))
        return incident

    def _handle(self, item: tuple) -> None:
        tries = 0
        if item[0] == "retry":
            _, item, tries = item
        kind = item[0]
        if kind == "accepted":
            _, alerts, results = item
            self._note_down(alerts, results)
            for alert, result in zip(alerts, results, strict=True):
                one = ("accepted", [alert], [result])
                self._step(
                    result.incident_id, "decision", one, tries, self._accepted, alert, result
                )
        elif kind == "approved":
            self._step(item[1], "approval", item, tries, self._approved, item[1], item[2])
        elif kind == "redecide":
            self._step(item[1], "decision", item, tries, self.decide, item[1])
        elif kind == "reevaluate":
            self._step(item[1], "reevaluation", item, tries, self._reevaluate, item[1])
        elif kind == "approval_closed":
            self._step(item[1], "approval", item, tries, self._approval_closed, *item[1:])
        elif kind == "call":  # work that must not interleave with a decision (reload)
            item[1]()
        elif kind == "slot_freed":  # deferred incidents may run now: evaluate them at once
            for incident_id in self._deferred:
                self._deferred[incident_id] = 0.0
            self._reevaluate_due()

    def _note_down(self, alerts: list[Alert], results: list[AcceptResult]) -> None:
        """Every incident of a batch counts as a host down before any of them is decided:
        a mass outage arriving in one notification is seen whole by blast radius."""
        for alert, result in zip(alerts, results, strict=True):
            if result.decision in ("new", "reopened") and result.incident_id is not None:
                self._locate(result.incident_id, alert.labels)

    def _locate(self, incident_id: int, labels) -> None:
        try:
            request = Request(labels=dict(labels), inventory=self.inventory)
            service, target = locate(self.policy, request)
        except Exception:  # the decision itself will say what is wrong with these labels
            return
        if target is not None:
            self._down[incident_id] = (service, target)

    def _down_hosts(self) -> frozenset[str]:
        return frozenset(target for _, target in self._down.values())

    @staticmethod
    def _requester(incident: Incident) -> str:
        """Who asks for this remediation: the identity that delivered the alert that opened
        the incident (its intake token, or the source for signed and open sources)."""
        return incident.requester or f"source:{incident.source}"

    def _accepted(self, alert: Alert, result: AcceptResult) -> None:
        if result.decision in ("new", "reopened") and result.incident_id is not None:
            if alert.starts_at is not None:
                self.metrics.mttd.observe(
                    max(0.0, (alert.received_at - alert.starts_at).total_seconds())
                )
            self._trace_intake(alert, result)
            decision = self.tracer.start(result.incident_id, result.fingerprint, "decision")
            with self.tracer.span(decision):
                decision.attributes["selfheal.mode"] = str(self.decide(result.incident_id))
        elif result.decision == "resolved" and result.incident_id is not None:
            self._resolved(result.incident_id)
        elif result.decision == "stale" and result.incident_id is not None:
            ended = alert.ends_at.isoformat() if alert.ends_at else "-"
            log.warning(
                "resolved notification of an earlier episode ignored",
                extra={"incident_id": result.incident_id, "ends_at": ended},
            )
            self._audit(
                "alert.stale_resolve",
                incident_id=result.incident_id,
                outcome="ignored",
                reasons=[f"endsAt {ended} is before the open incident began"],
                data={"alert_id": result.alert_id, "sender": alert.sender},
            )

    def _resolved(self, incident_id: int) -> None:
        canceled = self.store.cancel_pending_runs(incident_id, "incident resolved before the run")
        for run in canceled:
            self.metrics.runs.inc(outcome="canceled")
            self._release(run, ok=None)
        self._deferred.pop(incident_id, None)
        self._approved_waiting.discard(incident_id)
        service = self._services.pop(incident_id, None)
        self._down.pop(incident_id, None)
        self._trusted.discard(incident_id)
        if service is not None and not any(s == service for s, _ in self._down.values()):
            self._storm_over(service)
        self._unfold_children(incident_id)
        incident = self.store.get_incident(incident_id)
        if incident is not None and incident.resolved_at is not None:
            self.metrics.mttr.observe(
                max(0.0, (incident.resolved_at - incident.opened_at).total_seconds())
            )
        self._audit(
            "incident.resolved",
            incident_id=incident_id,
            outcome="resolved",
            data={"canceled_runs": [r.id for r in canceled]},
        )
        pd = self.pagerduty
        if incident is not None and pd is not None:
            self._pd(lambda: pd.resolve(incident, "incident resolved"))

    def _unfold_children(self, root_id: int) -> None:
        """The root resolved: incidents folded into it that still fire stand on their own
        again and are decided afresh (the root's fix did not fix them)."""
        for child in self.store.children_of(root_id):
            if child.status != "open":
                continue
            note = f"root incident {root_id} resolved while this one still fires: unfolded"
            if self.store.unfold(child.id, note) is None:
                continue
            self.store.record_decision(child.id, "unfolded", [_reason("unfolded", note)])
            self._audit(
                "incident.unfolded", incident_id=child.id, outcome="unfolded", reasons=[note]
            )
            self._pipeline_q.put(("redecide", child.id))

    def decide(self, incident_id: int, *, reevaluation: bool = False) -> str | None:
        """Run one incident through safety, policy and correlation; returns the mode."""
        incident = self.store.get_incident(incident_id)
        if (
            incident is None
            or incident.status != "open"
            or incident.parent_id is not None
            or incident.quarantined_at is not None
        ):
            return None
        now = datetime.now(UTC)
        labels = dict(incident.labels)
        problems = label_problems(labels)
        if problems:
            self._down.pop(incident.id, None)  # labels that are not data name no host
            reasons = [_reason(code, message, "deny") for code, message in problems]
            self._record(incident, "deny", reasons, {"labels": "refused", "trusted": False})
            self._escalate(incident, "unsafe_label", "alert labels refused: " + problems[0][1])
            return "deny"
        if incident.id not in self._down:
            self._locate(incident.id, labels)
        request = Request(
            labels=labels,
            inventory=self.inventory,
            request_id=request_id_of(incident.id),
            requester=self._requester(incident),
            down=self._down_hosts(),
        )
        decision = evaluate(self.policy, request, self.state, now)
        record_decision(self.state, decision)
        reasons = [r.to_dict() for r in decision.reasons]
        # What a remediation would need: a target of the inventory the policy accepts.
        trusted = decision.target is not None and decision.target in self.inventory
        trusted = trusted and not any(
            r.code == "inventory" and r.effect == "deny" for r in decision.reasons
        )
        context = {
            "runbook": decision.runbook,
            "route": decision.route,
            "service": decision.service,
            "target": decision.target,
            "trusted": trusted,
        }
        self._services[incident.id] = decision.service
        if trusted:
            self._trusted.add(incident.id)
        # Correlation once, at the first decision (a root arriving later adopts this one).
        root = None if reevaluation else self._correlate(incident, decision.service)
        if root is not None:
            message = (
                f"service {decision.service!r} depends on {self._services.get(root.id)!r},"
                f" whose incident {root.id} is open: folded into it, not remediated"
            )
            self.store.fold(incident.id, root.id, message)
            self._record(incident, "folded", [_reason("correlated", message)], context)
            return "folded"
        if not reevaluation and trusted:
            self._adopt_dependants(incident, decision.service)
        mode = decision.mode
        denies = [r for r in decision.reasons if r.effect == "deny"]
        storm = [r for r in denies if r.code in STORM_DENIALS]
        if decision.service is not None and any(
            r.code == "blast_radius" and r.effect == "info" for r in decision.reasons
        ):  # within max_unhealthy and past the cooldown
            self._storm_over(decision.service)
        if mode == "auto":
            return self._auto(incident, decision, reasons, context, now, reevaluation)
        if mode == "approval":
            open_approval(self.state, decision, now)
            self._approvals.add(decision.request_id)
            self._record(
                incident, "approval", reasons, {**context, "request_id": decision.request_id}
            )
            self._page_approval(incident, decision)
            return "approval"
        if mode == "deny" and denies and all(r.code in TRANSIENT_DENIALS for r in denies):
            # A transient refusal: try again when a slot frees or the storm is over.
            if storm:
                self._storm(incident, decision, storm[0].message)
            self._defer(incident, reasons, context, reevaluation)
            return "deferred"
        self._deferred.pop(incident.id, None)
        self._record(incident, mode, reasons, context)
        why = next((r.message for r in decision.reasons if r.effect == mode), mode)
        self._escalate(incident, mode, why, decision)
        return mode

    def _storm(self, incident: Incident, decision: Decision, why: str) -> None:
        """Blast radius held automation for a service: escalated once per storm (not once per
        host), with the incidents held, evaluated again until the service is under its
        limit and its storm cooldown passed."""
        service = decision.service or "-"
        if service in self._storms:
            return
        self._storms[service] = incident.id
        self._audit(
            "storm.start",
            incident_id=incident.id,
            target=service,
            outcome="held",
            reasons=[why],
        )
        self._escalate(
            incident, "storm", f"automation held for service {service!r}: {why}", decision
        )

    def _storm_over(self, service: str) -> None:
        first = self._storms.pop(service, None)
        if first is not None:
            self._audit(
                "storm.end",
                incident_id=first,
                target=service,
                outcome="resumed",
                reasons=[f"service {service!r} is back under its max_unhealthy"],
            )
            log.info("storm over: automation resumes", extra={"service": service})

    def _defer(self, incident: Incident, reasons: list, context: dict, quiet: bool) -> None:
        self._deferred[incident.id] = time.monotonic() + self.config.reevaluate_s
        if not quiet:
            reasons = [
                *reasons,
                _reason("deferred", "no remediation slot free: evaluated again shortly"),
            ]
            self._record(incident, "deny", reasons, context)

    def _auto(
        self,
        incident: Incident,
        decision: Decision,
        reasons: list,
        context: dict,
        now: datetime,
        reevaluation: bool = False,
    ) -> str:
        runbook = self.policy.runbooks[decision.runbook]  # type: ignore[index]
        problem = None
        on_awx = self._awx_backend(runbook.name) is not None
        if not runbook.playbook and not on_awx:
            problem = (
                f"runbook {runbook.name!r} is a job template ({runbook.job_template}):"
                " the dispatcher runs playbooks only"
            )
        elif decision.target is None or decision.target not in self.inventory:
            problem = f"target {decision.target!r} is not a host of the inventory"
        elif not safe_name(decision.target) or not safe_name(decision.service or "none"):
            problem = "target or service name is not a plain name"
        elif not on_awx:
            try:
                resolve_playbook(runbook.playbook, self._policy_dir())
            except FileNotFoundError as exc:
                problem = str(exc)
        if problem:
            reasons = [*reasons, _reason("not_runnable", problem, "manual")]
            self._record(incident, "manual", reasons, context)
            self._escalate(incident, "manual", problem, decision)
            return "manual"
        if self.store.list_runs(incident_id=incident.id):
            return "auto"  # already enqueued (a restart replaying the pipeline)
        if not begin_run(self.state, decision, now):  # another dispatcher took the slot
            self._defer(incident, reasons, context, reevaluation)
            return "deferred"
        self.metrics.heal_cost.inc(decision.cost, runbook=runbook.name)
        self._deferred.pop(incident.id, None)
        self._enqueue(incident, "auto", reasons, context, decision)
        return "auto"

    @staticmethod
    def _recorded(reasons: list, context: dict) -> list:
        """What a decision row holds: its reasons and what it selected."""
        return [*reasons, _reason("selection", "what the decision selected", **context)]

    def _enqueue(self, incident: Incident, mode: str, reasons: list, context: dict, decision):
        """Queue the run and record the decision that allowed it in one transaction, then
        wake a worker: a worker never claims a run whose decision is not stored yet (it
        reads the service from it), and a crash cannot leave one without the other."""
        run = self.store.enqueue_run(
            incident.id,
            decision.runbook,
            decision.target,
            decision=(mode, self._recorded(reasons, context)),
        )
        self._wake()
        self._record(incident, mode, reasons, {**context, "run_id": run.id}, stored=True)
        return run

    def _record(
        self, incident: Incident, mode: str, reasons: list, context: dict, *, stored: bool = False
    ) -> None:
        if not stored:
            self.store.record_decision(incident.id, mode, self._recorded(reasons, context))
        codes = {r["code"] for r in reasons} or {"none"}
        for code in codes:
            self.metrics.decisions.inc(mode=mode, reason=code)
        self._audit(
            "dispatcher.decision",
            incident_id=incident.id,
            target=context.get("target") or "-",
            decision=mode,
            reasons=[f"{r['code']}: {r['message']}" for r in reasons],
            data={k: v for k, v in context.items() if v is not None},
        )
        log.info(
            "decision",
            extra={"incident_id": incident.id, "mode": mode, "codes": sorted(codes)},
        )

    def _dependencies(self, service: str) -> set[str]:
        """Every service `service` depends on, directly or through others."""
        deps: set[str] = set()
        todo = list(self.policy.services[service].dependencies)
        while todo:
            name = todo.pop()
            if name not in deps and name in self.policy.services:
                deps.add(name)
                todo.extend(self.policy.services[name].dependencies)
        return deps

    def _adopt_dependants(self, root: Incident, service: str | None) -> None:
        """The root cause arrived after its symptoms: fold the open incidents of services
        that depend on `service` (opened within the window, nothing run yet) into `root`,
        and cancel their queued runs."""
        if not service or service not in self._dependants or root.id not in self._trusted:
            return
        window = timedelta(seconds=self.config.correlation_window_s)
        for other in self.store.list_incidents(status="open", limit=1000):
            other_service = self._services.get(other.id)
            if (
                other.id == root.id
                or other.parent_id is not None
                or other_service not in self.policy.services
                or abs(other.opened_at - root.opened_at) > window
                or service not in self._dependencies(other_service)  # type: ignore[arg-type]
            ):
                continue
            runs = self.store.list_runs(incident_id=other.id)
            if any(r.status not in ("queued", "canceled") for r in runs):
                continue  # already acting on it: let that finish
            message = (
                f"service {other_service!r} depends on {service!r}, whose incident {root.id}"
                " opened after it: folded into it, queued runs canceled"
            )
            try:
                self.store.fold(other.id, root.id, message)
            except StoreError:
                continue
            for run in self.store.cancel_pending_runs(other.id, "folded into a root incident"):
                self.metrics.runs.inc(outcome="canceled")
                self._release(run, ok=None)
            self._deferred.pop(other.id, None)
            self._withdraw_approval(other.id, f"folded into incident {root.id}")
            context = self._selection(other.id) or {}
            self._record(other, "folded", [_reason("correlated", message)], context)

    def _withdraw_approval(self, incident_id: int, why: str) -> None:
        """A folded incident is not remediated: its pending approval request is closed, so
        a later vote cannot start a run for it."""
        request_id = request_id_of(incident_id)
        self._approvals.discard(request_id)
        self._approved_waiting.discard(incident_id)

        def withdraw(record: dict[str, Any] | None) -> dict[str, Any] | None:
            if record is not None and record.get("status") == "pending":
                record["status"] = "withdrawn"
                record["closed_by"] = why
            return record

        self.state.update_approval(request_id, withdraw)

    def _correlate(self, incident: Incident, service: str | None) -> Incident | None:
        if not service or service not in self.policy.services:
            return None
        deps = self._dependencies(service)
        if not deps:
            return None
        window = timedelta(seconds=self.config.correlation_window_s)
        for other in self.store.list_incidents(status="open", limit=1000):
            if (
                other.id == incident.id
                or other.id not in self._trusted  # it passed what a remediation needs
                or abs(other.opened_at - incident.opened_at) > window
            ):
                continue
            other_service = self._services.get(other.id)
            if other_service in deps:
                root = other
                seen = {root.id}
                while root.parent_id is not None and root.parent_id not in seen:
                    parent = self.store.get_incident(root.parent_id)
                    if parent is None:
                        break
                    seen.add(parent.id)
                    root = parent
                self._services.setdefault(root.id, other_service)
                return root
        return None

    def _reevaluate_due(self) -> None:
        now = time.monotonic()
        due_now = [i for i, due in self._deferred.items() if due <= now]
        for incident_id in due_now[:MAX_REEVALUATIONS]:  # the rest wait for the next tick
            if incident_id in self._deferred:
                self._deferred.pop(incident_id, None)
                self._handle(("reevaluate", incident_id))

    def _reevaluate(self, incident_id: int) -> None:
        if incident_id in self._approved_waiting:
            self._approved(incident_id, "earlier")
        else:
            self.decide(incident_id, reevaluation=True)

    def _tick(self) -> None:
        now = time.monotonic()
        due, self._retries = (
            [item for at, item in self._retries if at <= now],
            [(at, item) for at, item in self._retries if at > now],
        )
        for item in due:
            self._handle(item)
        self._reevaluate_due()
        for request_id in list(self._approvals):
            status = approval_status(self.state, request_id)
            if status.status == "pending":
                continue
            self._approvals.discard(request_id)
            incident_id = incident_of(request_id)
            if incident_id is not None:
                self._handle(("approval_closed", incident_id, status.status))
        self._recover(startup=False)

    def _approval_closed(self, incident_id: int, status: str) -> None:
        """The approval's deadline passed: its declared timeout outcome applies."""
        if status == "approved":
            self._approved(incident_id, "timeout")
        elif status in ("denied", "manual"):
            incident = self.store.get_incident(incident_id)
            if incident is not None:
                self._record(
                    incident,
                    "denied" if status == "denied" else "manual",
                    [_reason("approval_timeout", "approval timed out", "deny")],
                    self._selection(incident_id) or {},
                )
                self._escalate(incident, "approval_timeout", "approval timed out")

    def _resume_pipeline(self) -> None:
        """After a restart: incidents accepted but never decided, deferred ones, pending
        approvals, and queued runs of incidents that resolved meanwhile. Rows are read one
        at a time: one that cannot be read is quarantined, and the start goes on."""
        for incident_id in self.store.incident_ids(status="open"):
            try:
                self._resume_incident(incident_id)
            except Exception as exc:
                self._quarantine(incident_id, "recovery", exc)
        for run in self.store.list_runs(status="queued"):
            try:
                incident = self.store.get_incident(run.incident_id)
                if incident is not None and incident.status == "resolved":
                    self.store.cancel_pending_runs(incident.id, "incident resolved before the run")
            except Exception as exc:
                self._quarantine(run.incident_id, "recovery", exc)

    def _resume_incident(self, incident_id: int) -> None:
        incident = self.store.get_incident(incident_id)
        if incident is None or incident.quarantined_at is not None:
            return
        self._locate(incident.id, incident.labels)
        # root-cause candidates are notes on the incident, not a step of its pipeline
        decisions = [d for d in self.store.list_decisions(incident.id) if d.is_pipeline_step]
        if not decisions or decisions[-1].mode == "unfolded":
            self._pipeline_q.put(("redecide", incident.id))
            return
        last = decisions[-1]
        codes = {r.get("code") for r in last.reasons if isinstance(r, dict)}
        if "deferred" in codes and not self.store.list_runs(incident_id=incident.id):
            self._deferred[incident.id] = 0.0
            if last.mode == "approved":
                self._approved_waiting.add(incident.id)
        elif last.mode == "approval":
            self._approvals.add(request_id_of(incident.id))
        selection = _selection_in(decisions)  # read above: no second query at start-up
        if selection:
            self._services[incident.id] = selection.get("service")
            if selection.get("trusted"):
                self._trusted.add(incident.id)

    def _selection(self, incident_id: int) -> dict[str, Any] | None:
        return _selection_in(self.store.list_decisions(incident_id))

    # -- approvals --------------------------------------------------------------------------

    def vote(
        self, request_id: str, verdict: str, who: str, roles: frozenset[str]
    ) -> ApprovalOutcome:
        """An approver's verdict from the API (identity and roles come from the token)."""
        incident_id = incident_of(request_id)
        record = self.state.load_approval(request_id) if incident_id is not None else None
        if record is None:
            return ApprovalOutcome(404, {"error": f"no approval {request_id!r}"})
        if verdict == "approve":
            result = approve(self.state, request_id, who, roles)
            body = result.to_dict()
            codes = {r.code for r in result.reasons}
            if not result.accepted:
                status = 403 if codes & {"not_approver", "self_approval"} else 409
                return ApprovalOutcome(status, body)
            self._record_vote(request_id, who, roles, "approve")
            self._audit(
                "approval.vote",
                incident_id=incident_id,
                actor={"user": who},
                outcome="approve",
                data={"request_id": request_id, "status": result.status},
            )
            if result.status == "approved":
                self._approvals.discard(request_id)
                self._pipeline_q.put(("approved", incident_id, who))
            return ApprovalOutcome(200, body)
        # deny: one listed approver's "no" closes the request
        if record.get("status") != "pending":
            return ApprovalOutcome(409, {"error": f"approval already {record.get('status')}"})
        if who not in record.get("users", []) and not roles & set(record.get("groups", [])):
            return ApprovalOutcome(403, {"error": f"{who!r} is not an approver of {request_id!r}"})

        def change(rec: dict[str, Any] | None) -> dict[str, Any] | None:
            if rec is not None and rec.get("status") == "pending":
                rec["status"] = "denied"
                rec["closed_by"] = f"deny by {who}"
            return rec

        updated = self.state.update_approval(request_id, change)
        if not updated or updated.get("status") != "denied":
            return ApprovalOutcome(409, {"error": "approval closed meanwhile"})
        self._record_vote(request_id, who, roles, "deny")
        self._approvals.discard(request_id)
        incident = self.store.get_incident(incident_id)  # type: ignore[arg-type]
        if incident is not None:
            self._record(
                incident,
                "denied",
                [_reason("approval_denied", f"denied by {who}", "deny")],
                self._selection(incident.id) or {},
            )
        self._audit(
            "approval.denied",
            incident_id=incident_id,
            actor={"user": who},
            outcome="denied",
            data={"request_id": request_id},
        )
        return ApprovalOutcome(200, {"request_id": request_id, "status": "denied"})

    def _record_vote(self, request_id: str, who: str, roles: frozenset[str], verdict: str) -> None:
        """The vote's copy in the store (the policy state already counted it). A request id
        is asked again when its incident is decided afresh (unfolded): an earlier round's
        vote by the same person is already there, and the new one must still count."""
        try:
            self.store.record_approval(request_id, who, ",".join(sorted(roles)) or "-", verdict)
        except StoreError as exc:
            log.warning(
                "vote not copied to the store",
                extra={"request_id": request_id, "approver": who, "error": str(exc)},
            )

    def pending_approvals(self) -> list[dict[str, Any]]:
        out = []
        for request_id in sorted(self._approvals):
            record = self.state.load_approval(request_id)
            if record is not None and record.get("status") == "pending":
                out.append(record)
        return out

    def _approved(self, incident_id: int, who: str) -> None:
        """An approval reached quorum (or timed out as approved): ask the policy again, so
        that a freeze, a budget or an inventory change since the request still stops it."""
        incident = self.store.get_incident(incident_id)
        selection = self._selection(incident_id)
        if (
            incident is None
            or selection is None
            or incident.status != "open"
            or incident.parent_id is not None  # folded meanwhile: its root is remediated
            or incident.quarantined_at is not None
        ):
            self._approved_waiting.discard(incident_id)
            return
        retry = incident_id in self._approved_waiting
        now = datetime.now(UTC)
        request = Request(
            labels=dict(incident.labels),
            inventory=self.inventory,
            request_id=request_id_of(incident_id),
            requester=self._requester(incident),
            down=self._down_hosts(),
        )
        decision = evaluate(self.policy, request, self.state, now)
        context = {k: selection.get(k) for k in ("runbook", "route", "service", "target")}
        reasons = [_reason("approved", f"approved ({who})")]
        reasons += [r.to_dict() for r in decision.reasons]
        blocking = [r for r in decision.reasons if r.effect in ("deny", "manual")]
        if blocking and all(r.code in TRANSIENT_DENIALS for r in blocking):
            self._approved_waiting.add(incident_id)
            self._deferred[incident_id] = time.monotonic() + self.config.reevaluate_s
            if not retry:
                reasons.append(_reason("deferred", "approved; waiting for a free slot"))
                self._record(incident, "approved", reasons, context)
            return
        self._approved_waiting.discard(incident_id)
        if blocking or decision.target != selection.get("target"):
            mode = "denied" if any(r.effect == "deny" for r in blocking) else "manual"
            self._record(incident, mode, reasons, context)
            why = blocking[0].message if blocking else "the target changed since the request"
            self._escalate(incident, "approved_but_refused", why, decision)
            return
        if self.store.list_runs(incident_id=incident_id):
            return
        if not begin_run(self.state, decision, now):
            self._approved_waiting.add(incident_id)
            self._deferred[incident_id] = time.monotonic() + self.config.reevaluate_s
            return
        self.metrics.heal_cost.inc(decision.cost, runbook=decision.runbook)
        run = self._enqueue(incident, "approved", reasons, context, decision)
        self._page_ack(incident, run)

    # -- escalation -------------------------------------------------------------------------

    def _escalate(
        self, incident: Incident, why: str, summary: str, decision: Decision | None = None
    ) -> None:
        self.metrics.escalations.inc(why=why)
        targets = [step.get("target") for step in (decision.escalation if decision else ())]
        self._audit(
            "dispatcher.escalate",
            incident_id=incident.id,
            outcome="escalated",
            reasons=[summary],
            data={"why": why, "to": targets},
        )
        log.warning(
            "escalation", extra={"incident_id": incident.id, "why": why, "summary": summary}
        )
        if self.pagerduty is None:
            return
        self.store.record_decision(incident.id, "escalated", [_reason(why, summary)])
        pd = self.pagerduty
        self._pd(
            lambda: pd.trigger(
                incident,
                f"[selfheal] {incident.name}: {summary}",
                component=(decision.target if decision else None),
                group=(decision.service if decision else None),
                details={"incident_id": incident.id, "why": why, "escalate_to": targets},
            )
        )

    def _pd(self, call: Callable[[], Any]) -> None:
        """Add a pager event to the outbox; a store failure must not stop the pipeline."""
        try:
            call()
        except StoreError as exc:
            log.error("pager outbox write failed", extra={"error": str(exc)})

    def _page_approval(self, incident: Incident, decision: Decision) -> None:
        """An approver must act: page (acknowledged when the approved run is queued)."""
        pd = self.pagerduty
        if pd is not None:
            self._pd(
                lambda: pd.trigger(
                    incident,
                    f"[selfheal] {incident.name}: approval needed for {decision.runbook}"
                    f" on {decision.target}",
                    severity="warning",
                    component=decision.target,
                    group=decision.service,
                    details={"request_id": decision.request_id, "runbook": decision.runbook},
                )
            )

    def _page_ack(self, incident: Incident, run: Run) -> None:
        pd = self.pagerduty
        if pd is not None:
            note = f"approved: selfheal queued {run.runbook} on {run.target} (run {run.id})"
            self._pd(lambda: pd.acknowledge(incident, note))

    # -- workers ----------------------------------------------------------------------------

    def _queue_depth(self) -> int:
        return self.store.count_runs(status="queued")

    def _recover(self, startup: bool) -> None:
        """Runs whose worker is gone (its lease expired; at startup, every run of this
        instance) become interrupted, and are retried once their attempt is fenced: no
        process of it is left, nor can start (see `_fenced`). Until then they wait, looked at
        again at every tick."""
        runs: list[Run] = []
        if startup:
            for wid in self.worker_ids():
                runs += self.store.recover_interrupted(worker_id=wid)
        runs += self.store.recover_interrupted()
        for run in runs:
            self.metrics.runs.inc(outcome="interrupted")
            self._audit(
                "run.interrupted",
                incident_id=run.incident_id,
                target=run.target,
                outcome="interrupted",
                data={"run_id": run.id, "attempts": run.attempts, "reason": run.reason},
            )
            self._fencing[run.id] = run
        if startup:  # interrupted before a crash, and neither retried nor given up since
            for run in self.store.list_runs(status="interrupted"):
                if run.id in self._fencing or run.attempts >= self.config.retry.max_attempts:
                    continue
                incident = self.store.get_incident(run.incident_id)
                if incident is not None and incident.status == "open":
                    self._fencing[run.id] = run
        for run_id in sorted(self._fencing):
            run = self._fencing[run_id]
            current = self.store.get_run(run_id)
            if current is None or current.status != "interrupted":
                del self._fencing[run_id]  # another dispatcher took care of it
                continue
            if not self._fenced(run):
                continue
            del self._fencing[run_id]
            incident = self.store.get_incident(run.incident_id)
            if incident is not None and incident.status == "resolved":
                self._release(run, ok=None)  # over: its slot must not wait for lock_ttl
                continue
            if run.attempts < self.config.retry.max_attempts:
                try:
                    self.store.retry_run(run.id)
                except StoreError as exc:  # retried by another dispatcher meanwhile
                    log.info("interrupted run not retried", extra={"error": str(exc)})
                    continue
                log.info("retrying interrupted run", extra={"run_id": run.id})
            else:
                self._release(run, ok=False)
                if incident is not None:
                    self._escalate(
                        incident, "interrupted", f"run {run.id} interrupted {run.attempts} times"
                    )

    def _fenced(self, run: Run) -> bool:
        """True when no process of the run's interrupted attempt is left and none can start.

        The attempt's process is recorded before it is spawned (its private data dir) and
        again once its guard runs (pid, process group, start time). On this host: revoke the
        attempt, stop the guards' process groups and wait until they are empty. On another
        host: wait until the attempt's lease ran out plus `fence.TAKEOVER_GRACE_S`; that
        host's guard has killed the attempt by then (or the attempt is gone with its host)."""
        process = run.process
        if not process:
            return True  # nothing was spawned: the record comes first, and it is fenced
        why = f"run {run.id} attempt {run.attempts} taken over by {self.config.instance}"
        verdict = fence.stop_attempt(process, why)
        if verdict == "stopped":
            return True
        if verdict == "alive":
            log.error(
                "the interrupted attempt will not die; the run waits",
                extra={"run_id": run.id, "pgid": process.get("pgid")},
            )
            return False
        # another host: its lease ran out at the latest when the run was interrupted for an
        # expired lease, else (its instance restarted elsewhere) one lease later
        since = run.finished_at or datetime.now(UTC)
        lease = 0.0 if run.reason == "lease expired" else self.config.lease_s
        return datetime.now(UTC) >= since + timedelta(seconds=lease + fence.TAKEOVER_GRACE_S)

    def _wake(self) -> None:
        with self._work:
            self._queued_gen += 1
            self._work.notify()

    def _worker_loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            seen = self._queued_gen
            try:
                run = self.store.claim_next_run(worker_id, self.config.lease_s)
            except StoreError as exc:
                log.warning("claim failed", extra={"error": str(exc)})
                run = None
            if run is None:
                with self._work:
                    # a run queued while this worker was claiming: claim again at once
                    # instead of sleeping through the missed notification for poll_s
                    if self._queued_gen == seen:
                        self._work.wait(self.config.poll_s)
                continue
            try:
                self._execute(run, worker_id)
            except Exception:
                log.exception("run failed unexpectedly", extra={"run_id": run.id})
                with contextlib.suppress(StoreError):
                    self.store.finish_run(
                        run.id,
                        "failed",
                        worker_id=worker_id,
                        attempt=run.attempts,
                        reason="dispatcher error",
                    )
                    self._after_failure(run, "dispatcher error")

    def _policy_dir(self) -> Path | None:
        return self.policy_path.parent if self.policy_path else None

    def _execute(self, run: Run, worker_id: str) -> None:
        incident = self.store.get_incident(run.incident_id)
        if incident is None or incident.status != "open":
            self.store.finish_run(
                run.id,
                "canceled",
                worker_id=worker_id,
                attempt=run.attempts,
                reason="incident resolved",
            )
            self.metrics.runs.inc(outcome="canceled")
            self._release(run, ok=None)
            return
        selection = self._selection(run.incident_id) or {}
        runbook = self.policy.runbooks.get(run.runbook)
        service = selection.get("service") or ""
        backend = self._awx_backend(run.runbook)
        if runbook is None or (not runbook.playbook and backend is None):
            self.store.finish_run(
                run.id, "failed", worker_id=worker_id, attempt=run.attempts, reason="no playbook"
            )
            self._after_failure(run, "runbook has no playbook")
            return
        if backend is not None and self.awx is not None:
            run_playbook = awx_executor(self.awx, backend, self._awx_waiting(run))
            playbook = None
        else:
            run_playbook = execute
            playbook = resolve_playbook(runbook.playbook, self._policy_dir())  # type: ignore[arg-type]
        private: Path | None = None
        token = ""
        if playbook is not None:
            prepared = self._prepare_attempt(run, worker_id)
            if prepared is None:
                return
            private, token = prepared
        fence_dir = private / fence.FENCE_DIR if private is not None else None
        span = self.tracer.start(
            incident.id,
            incident.fingerprint,
            "run",
            **{
                "selfheal.run_id": run.id,
                "selfheal.runbook": run.runbook,
                "selfheal.target": run.target,
                "selfheal.attempt": run.attempts,
                "selfheal.backend": "awx" if playbook is None else "ansible-runner",
            },
        )
        cancel = threading.Event()
        self._cancel[run.id] = cancel
        # canceled between its claim and now, or claimed while stop() was telling the runs
        # it knew to cancel (stop() sets the flag first, so one of the two sees the other)
        if run.id in self._canceled_by or self._stop.is_set():
            cancel.set()
        lost = threading.Event()

        def heartbeat() -> None:
            # renews the lease; after each renewal, tells the attempt's guard the new deadline
            # (never later than the store's); records the guard once it runs
            interval = max(0.2, self.config.lease_s / 3)
            recorded = fence_dir is None
            renew_at = time.monotonic() + interval
            while True:
                step = max(0.0, renew_at - time.monotonic())
                if cancel.wait(step if recorded else min(step, 0.05)):
                    return
                if not recorded:
                    recorded = self._record_guard(run, worker_id, fence_dir, lost, cancel)
                if time.monotonic() < renew_at:
                    continue
                renew_at = time.monotonic() + interval
                at = time.time()
                try:
                    renewed = self.store.renew_lease(
                        run.id, worker_id, self.config.lease_s, attempt=run.attempts
                    )
                except StoreError:
                    continue
                if not renewed:
                    lost.set()
                    cancel.set()
                    return
                if fence_dir is not None:
                    with contextlib.suppress(OSError):
                        fence.write_lease(fence_dir, at + self.config.lease_s)

        beat = threading.Thread(target=heartbeat, name=f"selfheal-lease-{run.id}", daemon=True)
        beat.start()
        decision_mode = (
            "approved"
            if any(d.mode == "approved" for d in self.store.list_decisions(run.incident_id))
            else "auto"
        )
        env = {
            "SELFHEAL_INCIDENT_ID": str(run.incident_id),
            "SELFHEAL_RUNBOOK": run.runbook,
            "SELFHEAL_DECISION": decision_mode,
            "SELFHEAL_RUN_ID": str(run.id),
            "SELFHEAL_DISPATCHER": self.config.instance,
            "SELFHEAL_ACTOR": "selfheal-dispatcher",
            "TRACEPARENT": span.traceparent,  # W3C trace context of this run
        }
        if token:
            env[fence.ATTEMPT_ENV] = token  # marks every process of the attempt
        if self.audit is not None:
            enabled = [c for c in os.environ.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c]
            if "selfheal.core.audit" not in enabled:
                enabled.append("selfheal.core.audit")
            env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(enabled)
            env["SELFHEAL_AUDIT_TRAIL"] = str(self.audit.path)
            if self.config.audit_key_file:
                env["SELFHEAL_AUDIT_KEY_FILE"] = str(self.config.path(self.config.audit_key_file))
        extravars = {
            "target": run.target,
            "service": service,
            "incident_id": run.incident_id,
            "runbook": run.runbook,
            "selfheal_incident_id": str(run.incident_id),
            "selfheal_runbook": run.runbook,
            "selfheal_decision": decision_mode,
            "selfheal_traceparent": span.traceparent,
        }
        self._audit(
            "run.start",
            incident_id=run.incident_id,
            target=run.target,
            decision=decision_mode,
            outcome="started",
            data={"run_id": run.id, "runbook": run.runbook, "attempt": run.attempts},
        )
        timeout = max(1, int(runbook.timeout.total_seconds()))
        ok = False
        reason = ""
        rc: int | None = None
        due = max(run.created_at, run.not_before or run.created_at)
        self.metrics.start_delay.observe(max(0.0, (datetime.now(UTC) - due).total_seconds()))
        try:
            guarded = {} if private is None else {"private_dir": private, "fence_dir": fence_dir}
            result = run_playbook(
                playbook,
                self.inventory_path,  # type: ignore[arg-type]
                extravars=extravars,
                envvars=env,
                timeout=timeout,
                base_dir=self.runs_dir,
                prefix=f"run-{run.id}-{run.attempts}-",
                cancel=cancel.is_set,
                **guarded,
            )
            with contextlib.suppress(StoreError):
                self.store.set_private_data_dir(run.id, str(result.private_data_dir))
            rc = result.rc
            ok = result.ok
            reason = (
                result.status if ok else f"{result.status}: " + "; ".join(result.failed_tasks[:3])
            )
            if ok and runbook.verify and not cancel.is_set():
                with self.tracer.span(self.tracer.child(span, "verify")) as checked:
                    ok, reason = self._verify(run, runbook, service, env, fence_dir)
                    if not ok:
                        checked.fail(reason)
        finally:
            cancel.set()
            beat.join(5)
            self._cancel.pop(run.id, None)
            if not ok:
                span.fail(reason or "the run did not finish")
            self.tracer.end(span)
        canceled_by = self._canceled_by.pop(run.id, None)
        if lost.is_set():
            log.warning(
                "lease lost; the run belongs to another worker now", extra={"run_id": run.id}
            )
            return
        if canceled_by is not None and not ok:
            status, reason = "canceled", canceled_by  # an operator's call: over, no retry
        elif self._stop.is_set() and not ok:
            return  # shutting down: left running; recovered as interrupted at the next start
        else:
            status = "succeeded" if ok else "failed"
        try:
            self.store.finish_run(
                run.id,
                status,
                rc=rc,
                worker_id=worker_id,
                attempt=run.attempts,
                reason=reason[:500],
            )
        except StoreError as exc:
            log.warning("finish failed", extra={"run_id": run.id, "error": str(exc)})
            return
        self.metrics.runs.inc(outcome=status)
        if status != "failed":  # first: a waiting incident may take the slot
            self._release(run, ok=True if ok else None)
        self._audit(
            "run.finish",
            incident_id=run.incident_id,
            target=run.target,
            decision=decision_mode,
            outcome=status,
            data={"run_id": run.id, "runbook": run.runbook, "rc": rc, "reason": reason[:500]},
        )
        if status == "canceled":
            return
        if self.pagerduty is not None:
            pd = self.pagerduty
            self._pd(
                lambda: pd.change(
                    f"selfheal ran {run.runbook} on {run.target}: {status}",
                    {"incident_id": run.incident_id, "run_id": run.id, "attempt": run.attempts},
                )
            )
        if not ok:
            self._after_failure(run, reason)

    def _prepare_attempt(self, run: Run, worker_id: str) -> tuple[Path, str] | None:
        """The attempt's private data dir (with its fence and first lease) and token, recorded
        in the store *before* anything is spawned in it: a dispatcher that takes the run over
        finds it even when this one dies between the spawn and the guard's record. None
        when the attempt cannot be recorded (no longer ours: nothing may run)."""
        expires = run.lease_expires_at
        deadline = expires.timestamp() if expires else time.time() + self.config.lease_s
        private = fence.prepare(self.runs_dir, f"run-{run.id}-{run.attempts}-", deadline)
        process = {**fence.host(), "private_data_dir": str(private), "token": fence.new_token()}
        try:
            recorded = self.store.set_run_process(run.id, worker_id, run.attempts, process)
        except StoreError as exc:
            log.warning("cannot record the attempt", extra={"run_id": run.id, "error": str(exc)})
            recorded = False
        if recorded:
            return private, process["token"]
        fence.revoke(private / fence.FENCE_DIR, "the attempt could not be recorded")
        with contextlib.suppress(StoreError):  # still ours (the store failed): retry it
            self.store.finish_run(
                run.id,
                "failed",
                worker_id=worker_id,
                attempt=run.attempts,
                reason="the attempt could not be recorded",
            )
            self._after_failure(run, "the attempt could not be recorded")
        return None

    def _record_guard(
        self,
        run: Run,
        worker_id: str,
        fence_dir: Path | None,
        lost: threading.Event,
        cancel: threading.Event,
    ) -> bool:
        """Record the attempt's guard (pid, group, start time) once it wrote its identity.
        True when done (or there is nothing to record)."""
        if fence_dir is None:
            return True
        found = fence.identities(fence_dir)
        if not found:
            return False
        process = {**found[0], "private_data_dir": str(fence_dir.parent)}
        try:
            if not self.store.set_run_process(run.id, worker_id, run.attempts, process):
                lost.set()  # taken over meanwhile: stop the attempt
                cancel.set()
        except StoreError:
            return False
        return True

    def cancel_run(self, run_id: int, who: str, reason: str) -> tuple[int, str, Run | None]:
        """An operator stops a run: (HTTP status, what happened, the run).

        A queued run is canceled at once; a running one on this dispatcher is told to stop
        (ansible-runner's cancel) and ends as canceled. Either way the remediation is over:
        no retry, no escalation; the incident stays open for the operator.
        """
        run = self.store.get_run(run_id)
        if run is None:
            return 404, f"no run {run_id}", None
        note = f"canceled by {who}: {reason}"[:500]
        if run.status == "queued":
            canceled = self.store.cancel_run(run_id, note)
            if canceled is not None:
                self.metrics.runs.inc(outcome="canceled")
                self._release(canceled, ok=None)
                self._audit_cancel(canceled, who, reason, "canceled")
                return 200, "canceled", canceled
            run = self.store.get_run(run_id) or run  # claimed meanwhile
        if run.status != "running":
            return 409, f"run {run_id} is already {run.status}", run
        if run.worker_id not in self.worker_ids():
            return 409, f"run {run_id} runs on another dispatcher ({run.worker_id})", run
        self._canceled_by[run_id] = note
        event = self._cancel.get(run_id)
        if event is not None:
            event.set()
        elif (ended := self.store.get_run(run_id) or run).status != "running":
            self._canceled_by.pop(run_id, None)  # it ended meanwhile
            return 409, f"run {run_id} is already {ended.status}", ended
        self._audit_cancel(run, who, reason, "canceling")
        return 202, "canceling", run

    def _audit_cancel(self, run: Run, who: str, reason: str, outcome: str) -> None:
        self._audit(
            "run.cancel",
            incident_id=run.incident_id,
            target=run.target,
            actor={"user": who},
            outcome=outcome,
            data={"run_id": run.id, "runbook": run.runbook, "reason": reason[:500]},
        )

    def _verify(
        self, run: Run, runbook, service: str, env: dict, fence_dir: Path | None = None
    ) -> tuple[bool, str]:
        book = self.runs_dir / f"verify-{run.id}-{run.attempts}.yml"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        book.write_text(verify_playbook(list(runbook.verify)))
        try:
            result = execute(
                book,
                self.inventory_path,  # type: ignore[arg-type]
                extravars={"target": run.target, "service": service},
                envvars=env,
                timeout=max(1, int(runbook.timeout.total_seconds())),
                base_dir=self.runs_dir,
                prefix=f"verify-{run.id}-{run.attempts}-",
                fence_dir=fence_dir,  # under the run's lease too
            )
        finally:
            book.unlink(missing_ok=True)
        if result.ok:
            return True, "verified"
        return False, "verification failed: " + "; ".join(result.failed_tasks[:3])

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        retry = self.config.retry
        return random.uniform(0, min(retry.cap_s, retry.base_s * 2 ** max(0, attempt - 1)))

    def _after_failure(self, run: Run, reason: str) -> None:
        incident = self.store.get_incident(run.incident_id)
        if (
            incident is not None
            and incident.status == "open"
            and run.attempts < self.config.retry.max_attempts
        ):
            delay = self.backoff(run.attempts)
            self.store.retry_run(run.id, not_before=datetime.now(UTC) + timedelta(seconds=delay))
            log.info("retry scheduled", extra={"run_id": run.id, "delay_s": round(delay, 2)})
            return
        self._release(run, ok=False)
        if incident is not None and incident.status == "open":
            self._escalate(
                incident,
                "run_failed",
                f"{run.runbook} on {run.target} failed {run.attempts} time(s): {reason[:200]}",
            )

    def _release(self, run: Run, ok: bool | None) -> None:
        """The remediation is over: record the outcome in the policy state, free the slot."""
        decision = Decision(
            mode="auto",
            reasons=(),
            request_id=request_id_of(run.incident_id),
            at=datetime.now(UTC),
            runbook=run.runbook,
            target=run.target,
        )
        if ok is None:
            self.state.release(decision.request_id)
        else:
            finish_run(self.state, decision, ok, datetime.now(UTC))
        self._pipeline_q.put(("slot_freed",))

    # -- AWX backend, tracing, policy reload ------------------------------------------------

    def _awx_backend(self, runbook: str):
        """The runbook's AWX template when the config runs it on AWX, else None."""
        backend = self.config.runbooks.get(runbook)
        return backend if backend is not None and backend.is_awx else None

    def _awx_waiting(self, run: Run) -> Callable[[int, list[int]], None]:
        def waiting(job_id: int, approvals: list[int]) -> None:
            log.info(
                "awx workflow waiting for approval",
                extra={"run_id": run.id, "workflow_job": job_id, "approvals": approvals},
            )
            self._audit(
                "run.waiting_approval",
                incident_id=run.incident_id,
                target=run.target,
                outcome="waiting",
                data={"run_id": run.id, "workflow_job": job_id, "approvals": approvals},
            )

        return waiting

    def _trace_intake(self, alert: Alert, result: AcceptResult) -> None:
        """The incident's root span: from the alert's arrival to its commit."""
        span = self.tracer.start(
            result.incident_id,  # type: ignore[arg-type]
            result.fingerprint,
            "intake",
            root=True,
            start_ns=int(alert.received_at.timestamp() * 1e9),
            **{"selfheal.source": alert.source, "selfheal.dedup": result.decision},
        )
        self.tracer.end(span)

    def reload_policy(self, actor: str = "-") -> dict[str, Any]:
        """Load and validate the policy file again and swap it in between two decisions (a
        decision in flight finishes on the old one). On an error (`ConfigError`, naming the
        field) the old policy stays."""
        path = self.policy_path
        assert path is not None and self.inventory_path is not None
        try:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read policy: {exc.strerror or exc}", str(path)) from exc
            try:
                data = yaml.safe_load(raw)
                inventory_data = yaml.safe_load(self.inventory_path.read_text())
            except yaml.YAMLError as exc:
                raise ConfigError(f"not valid YAML: {exc}", str(path)) from exc
            except OSError as exc:
                raise ConfigError(f"cannot read the inventory ({exc})", "inventory") from exc
            policy = compile_policy(data, source=str(path))
            inventory = inventory_from_data(policy, inventory_data)
        except ConfigError as exc:
            self._audit(
                "policy.reload",
                actor={"user": actor},
                outcome="refused",
                reasons=[str(exc)],
                data={"path": str(path), "digest": self.policy_digest},
            )
            raise
        digest = hashlib.sha256(raw).hexdigest()
        old: dict[str, str] = {}
        swapped = threading.Event()

        def swap() -> None:
            old["digest"] = self.policy_digest
            self.policy, self.inventory, self.policy_digest = policy, inventory, digest
            self._dependants = {dep for svc in policy.services for dep in self._dependencies(svc)}
            swapped.set()

        pipeline = next((t for t in self._threads if t.name == "selfheal-pipeline"), None)
        if pipeline is not None and pipeline.is_alive() and not self._stop.is_set():
            self._pipeline_q.put(("call", swap))
            if not swapped.wait(30):
                raise SelfhealError("the pipeline is busy: the new policy applies after its step")
        else:
            swap()
        body = {"status": "reloaded", "old_digest": old["digest"], "new_digest": digest}
        body["changed"] = old["digest"] != digest
        self._audit("policy.reload", actor={"user": actor}, outcome="reloaded", data=body)
        log.info("policy reloaded", extra={k: v for k, v in body.items() if k != "status"})
        return body

    def reload_on_signal(self) -> None:
        """SIGHUP: reload, logging the outcome (there is nobody to answer)."""
        try:
            self.reload_policy("SIGHUP")
        except SelfhealError as exc:
            log.error("policy reload failed; the old policy stays", extra={"error": str(exc)})

    # -- audit ------------------------------------------------------------------------------

    def _audit(self, action: str, **fields: Any) -> None:
        if self.audit is None:
            return
        event = {"action": action, "actor": {"dispatcher": self.config.instance}, **fields}
        if "incident_id" in event:
            event["incident_id"] = str(event["incident_id"])
        if isinstance(event.get("actor"), dict) and "dispatcher" not in event["actor"]:
            event["actor"] = {**event["actor"], "dispatcher": self.config.instance}
        try:
            _, error = self.audit.append_or_spool(event)
        except Exception as exc:  # the audit trail must not stop the pipeline
            error = exc
        if error is not None:
            log.error("audit append failed (spooled)", extra={"error": str(error)})

    def record_subscription(self, kind: str, topic_arn: str, confirmed: bool, error: str) -> None:
        entry = {
            "kind": kind,
            "topic_arn": topic_arn,
            "confirmed": confirmed,
            "error": error or None,
            "at": datetime.now(UTC).isoformat(),
        }
        with self._lock:
            self.subscriptions = [*self.subscriptions[-99:], entry]
        self._audit(
            "sns.subscription",
            target=topic_arn,
            outcome="confirmed" if confirmed else "recorded",
            data={"kind": kind, "error": error or None},
        )
