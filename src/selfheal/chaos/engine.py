"""Run an experiment: steady state, method, detection, heal, expectations, rollbacks.

    before = probes hold?            no: "aborted", nothing is injected
    method: inject each fault        a failing step stops the method (and is rolled back)
    detection                        Alertmanager alert, or the first failing probe
    heal (when declared)             a playbook through selfheal.runner.run_playbook
    steady state again within T      probes polled until they all hold
    expectations                     healing runs from the audit trail, detection, recovery
    rollbacks (finally)              --rollback always | deviated | never; a failed method
                                     or an interrupted run always rolls back

Playbooks run in a worker thread, so SIGINT/SIGTERM reach this module's handler (and not
ansible-runner's, which would cancel a rollback half-way): a signal during an injection
lets it finish, then rolls back; during a wait it stops the wait at once; during the
rollback it is noted and ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfheal.chaos import audit as audit_mod
from selfheal.chaos.experiment import Experiment, Heal, Step
from selfheal.chaos.faults import FAULTS, playbooks_dir
from selfheal.chaos.inventory import LabInventory
from selfheal.chaos.probes import ProbeResult, alert_firing, run_probes

ROLLBACK_STRATEGIES = ("always", "deviated", "never")
PLAYBOOK_TIMEOUT = 300
ALERT_SLACK = 5.0  # seconds: a scrape between the fault and its timestamp may come first


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """SIGINT/SIGTERM become `Interrupted`, raised only where it is safe (see `checkpoint`)."""

    def __init__(self, log: Callable[[str], None] = lambda _m: None):
        self.received: int | None = None
        self.protected = False  # rolling back: note signals, never raise
        self.log = log
        self._old: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handler(self, signum: int, _frame) -> None:
        first = self.received is None
        self.received = self.received or signum
        name = signal.Signals(signum).name
        if self.protected:
            self.log(f"{name} received: rolling back, the rollback goes on")
        elif first:
            self.log(f"{name} received: stopping, then rolling back")

    def checkpoint(self) -> None:
        if self.received is not None and not self.protected:
            raise Interrupted(self.received)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.checkpoint()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run `fn` in a worker thread and wait (signals keep reaching the main thread)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="selfheal-chaos-playbook", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- running playbooks ----------------------------------------------------------------------
@dataclass
class PlaybookOutcome:
    status: str  # done | skipped | failed
    seconds: float
    injected_at: float | None = None
    reason: str = ""
    detail: str = ""
    tasks: dict[str, float] = field(default_factory=dict)  # heal runs: seconds per task

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}


class PlaybookExecutor:
    """Faults and heals as playbooks on the lab inventory, through selfheal.runner."""

    def __init__(
        self,
        inventory: LabInventory,
        base_dir: Path,
        envvars: dict[str, str] | None = None,
    ):
        self.inventory = inventory
        self.base_dir = base_dir
        self.envvars = envvars or {}

    def _run(self, playbook: Path, extravars: dict, timeout: float, envvars=None):
        from selfheal.runner import run_playbook

        self.base_dir.mkdir(parents=True, exist_ok=True)
        return in_thread(
            lambda: run_playbook(
                playbook,
                self.inventory.path,
                extravars=extravars,
                envvars={**self.envvars, **(envvars or {})},
                timeout=int(timeout),
                base_dir=self.base_dir,
            )
        )

    def fault(self, step: Step, phase: str) -> PlaybookOutcome:
        from selfheal.runner import task_results

        started = time.monotonic()
        extravars = {
            "target": step.target,
            "chaos_phase": phase,
            **step.fault.extravars(step.params),
        }
        if phase == "rollback":
            extravars.pop("chaos_fail_midway", None)
        playbook = playbooks_dir() / "chaos" / step.fault.playbook
        result = self._run(playbook, extravars, PLAYBOOK_TIMEOUT)
        seconds = time.monotonic() - started
        reports = task_results(result.private_data_dir, "Report the fault")
        report = next((r.get("msg") for r in reports if isinstance(r.get("msg"), dict)), {})
        if not result.ok:
            failed = "; ".join(result.failed_tasks) or f"ansible status {result.status}"
            if report.get("status") == "failed":
                failed += " (rolled back by the playbook)"
            return PlaybookOutcome("failed", seconds, _float(report.get("injected_at")), failed)
        status = "skipped" if report.get("status") == "skipped" else "done"
        return PlaybookOutcome(
            status,
            seconds,
            _float(report.get("injected_at")),
            str(report.get("reason") or ""),
            str(report.get("detail") or ""),
        )

    def heal(self, heal: Heal, extravars: dict, envvars: dict[str, str]) -> PlaybookOutcome:
        started = time.monotonic()
        playbook = playbooks_dir() / heal.playbook
        result = self._run(playbook, extravars, heal.timeout, envvars)
        seconds = time.monotonic() - started
        tasks = task_seconds(result.private_data_dir)
        if result.ok:
            return PlaybookOutcome("done", seconds, detail=f"{heal.playbook}: ok", tasks=tasks)
        failed = "; ".join(result.failed_tasks) or f"ansible status {result.status}"
        return PlaybookOutcome("failed", seconds, reason=failed, tasks=tasks)


def task_seconds(private_data_dir: Path) -> dict[str, float]:
    """Seconds per task of a finished run (from ansible-runner's job events), longest first."""
    import json

    totals: dict[str, float] = {}
    for path in (private_data_dir / "artifacts").glob("*/job_events/*.json"):
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
            name = str(data.get("task") or "?")
            totals[name] = totals.get(name, 0.0) + float(data.get("duration") or 0.0)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return {name: round(value, 3) for name, value in ranked if value >= 0.005}


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- the run --------------------------------------------------------------------------------
@dataclass
class Run:
    """The report of one experiment run (also what goes into the history)."""

    id: str
    experiment: str
    title: str
    inventory: str
    rollback_strategy: str
    started_at: float
    status: str = "running"  # passed | failed | aborted | interrupted
    steady_state_before: list[dict] = field(default_factory=list)
    method: list[dict] = field(default_factory=list)
    fault_at: float | None = None
    detection: dict = field(default_factory=dict)
    heal: dict | None = None
    steady_state_after: list[dict] = field(default_factory=list)
    recovered_at: float | None = None
    mttd: float | None = None
    mttr: float | None = None
    expectations: list[dict] = field(default_factory=list)
    automation: dict = field(default_factory=dict)
    rollbacks: list[dict] = field(default_factory=list)
    steady_state_after_rollback: list[dict] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    finished_at: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _results(results: list[ProbeResult]) -> list[dict]:
    return [r.to_dict() for r in results]


def _all_ok(results: list[ProbeResult]) -> bool:
    return all(r.ok for r in results)


class ExperimentRunner:
    def __init__(
        self,
        experiment: Experiment,
        inventory: LabInventory,
        executor: PlaybookExecutor,
        *,
        rollback: str = "always",
        audit: audit_mod.AuditSource | None = None,
        log: Callable[[str], None] = lambda _m: None,
        probe: Callable[[list, LabInventory], list[ProbeResult]] = run_probes,
        alerts: Callable[..., str | None] = alert_firing,
    ):
        if rollback not in ROLLBACK_STRATEGIES:
            raise ValueError(f"rollback must be one of {ROLLBACK_STRATEGIES}")
        self.exp = experiment
        self.inv = inventory
        self.executor = executor
        self.strategy = rollback
        self.audit = audit
        self.log = log
        self.probe = probe
        self.alerts = alerts
        self.guard = SignalGuard(log)

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> Run:
        exp = self.exp
        run = Run(
            id=uuid.uuid4().hex[:12],
            experiment=exp.name,
            title=exp.title,
            inventory=str(self.inv.path),
            rollback_strategy=self.strategy,
            started_at=time.time(),
        )
        attempted: list[Step] = []
        method_failed = False
        with self.guard:
            try:
                if not self._prepare(run):
                    return self._finish(run)
                before = self.probe(exp.probes, self.inv)
                run.steady_state_before = _results(before)
                self.log(f"steady state before: {'met' if _all_ok(before) else 'NOT met'}")
                if not _all_ok(before):
                    run.status = "aborted"
                    for r in before:
                        if not r.ok:
                            run.missed.append(f"steady state before: probe {r.name}: {r.detail}")
                    return self._finish(run)
                for i, step in enumerate(exp.method):
                    self.guard.checkpoint()
                    attempted.append(step)
                    self.log(f"method[{i}]: {step.label}: injecting")
                    try:
                        outcome = self.executor.fault(step, "inject")
                    except Exception as exc:  # could not even run it: a failed step
                        outcome = PlaybookOutcome(
                            "failed", 0.0, reason=f"{type(exc).__name__}: {exc}"
                        )
                    run.method.append(
                        {
                            "step": i,
                            "fault": step.fault.name,
                            "target": step.target,
                            "params": step.params,
                            **outcome.to_dict(),
                        }
                    )
                    self.log(
                        f"method[{i}]: {step.label}: {outcome.status}"
                        f"{': ' + outcome.reason if outcome.reason else ''}"
                    )
                    if outcome.status == "failed":
                        method_failed = True
                        run.missed.append(f"method[{i}] ({step.label}) failed: {outcome.reason}")
                        break
                    if outcome.status == "done" and run.fault_at is None:
                        run.fault_at = outcome.injected_at or time.time()
                    self.guard.checkpoint()
                    if step.pause_after:
                        self.guard.sleep(step.pause_after)
                if not method_failed:
                    self._observe(run)
            except Interrupted as exc:
                run.status = "interrupted"
                run.missed.append(f"interrupted by {exc} before the experiment finished")
            finally:
                self.guard.protected = True
                self._rollback(run, attempted, method_failed)
            return self._finish(run)

    def _prepare(self, run: Run) -> bool:
        """Faults with a prepare phase (expire_cert makes its demo certificate) run it first."""
        done = set()
        for step in self.exp.method:
            if not step.fault.prepare or (step.fault.name, step.target) in done:
                continue
            done.add((step.fault.name, step.target))
            self.log(f"prepare: {step.label}")
            outcome = self.executor.fault(step, "prepare")
            if outcome.status == "failed":
                run.status = "aborted"
                run.missed.append(f"prepare of {step.label} failed: {outcome.reason}")
                return False
            self.guard.checkpoint()
        return True

    # -- detection, heal, recovery ---------------------------------------------------------
    def _source(self) -> tuple[str, str | None]:
        det = self.exp.detection
        url = self.inv.monitoring_url("alertmanager")
        if det.source == "alertmanager" or (det.source == "auto" and url and det.alert):
            return "alertmanager", url
        return "probe", None

    def _observe(self, run: Run) -> None:
        exp = self.exp
        if run.fault_at is None:
            run.notes.append("every fault was skipped: nothing to observe")
            run.status = "skipped"
            return
        fault_at = run.fault_at
        source, url = self._source()
        det = exp.detection
        run.detection = {"source": source, "timeout": det.timeout, "interval": det.interval}
        if source == "alertmanager":
            run.detection["alert"] = det.alert
            if not url:
                run.notes.append("alertmanager detection asked for, but monitoring is not up")
        heal_now = exp.heal is not None and exp.heal.after == "fault"
        if heal_now:
            self._heal(run)
        detected_at, detail = self._detect(source, url, fault_at)
        if detected_at is not None:
            run.detection.update(detected_at=detected_at, detail=detail)
            run.mttd = round(detected_at - fault_at, 3)
            self.log(f"detected after {run.mttd:.2f}s ({source}): {detail}")
        else:
            run.detection["detail"] = f"not detected within {det.timeout:g}s"
            self.log(run.detection["detail"])
        if exp.heal is not None and not heal_now:
            if detected_at is not None:
                self._heal(run)
            else:
                run.heal = {"playbook": exp.heal.playbook, "status": "not run (no detection)"}
        self._await_steady_state(run, deviated=detected_at is not None)
        self._expectations(run)

    def _detect(self, source: str, url: str | None, fault_at: float) -> tuple[float | None, str]:
        det = self.exp.detection
        deadline = fault_at + det.timeout
        first_target = self.exp.method[0].target
        while True:
            self.guard.checkpoint()
            if source == "alertmanager":
                # An alert that was already firing before this fault is not its detection.
                since = fault_at - ALERT_SLACK
                found = self.alerts(url, det.alert, first_target, since=since) if url else None
                if found:
                    return time.time(), found
            else:
                results = self.probe(self.exp.probes, self.inv)
                failing = [r for r in results if not r.ok]
                if failing:
                    now = time.time()
                    return now, f"probe {failing[0].name}: {failing[0].detail}"
            if time.time() >= deadline:
                return None, ""
            self.guard.sleep(det.interval)

    def _heal(self, run: Run) -> None:
        heal = self.exp.heal
        assert heal is not None
        extravars = {
            **heal.vars,
            "selfheal_runbook": Path(heal.playbook).stem,
            "selfheal_decision": "chaos-experiment",
            "selfheal_actor": "selfheal-chaos",
            "selfheal_incident_id": f"chaos-{run.id}",
            "selfheal_reasons": [f"chaos experiment {self.exp.name}: {self.exp.title}"],
        }
        envvars: dict[str, str] = {}
        if isinstance(self.audit, audit_mod.TrailAudit):
            import os

            enabled = os.environ.get("ANSIBLE_CALLBACKS_ENABLED", "")
            callbacks = [c for c in enabled.split(",") if c] + ["selfheal.core.audit"]
            envvars = {
                "SELFHEAL_AUDIT_TRAIL": str(self.audit.path),
                "ANSIBLE_CALLBACKS_ENABLED": ",".join(dict.fromkeys(callbacks)),
            }
            if key_file := os.environ.get("SELFHEAL_AUDIT_KEY_FILE"):
                envvars["SELFHEAL_AUDIT_KEY_FILE"] = key_file
        started = time.time()
        self.log(f"heal: {heal.playbook} {heal.vars}")
        try:
            outcome = self.executor.heal(heal, extravars, envvars)
        except Exception as exc:  # a heal that cannot run is a heal that did not happen
            outcome = PlaybookOutcome("failed", 0.0, reason=f"{type(exc).__name__}: {exc}")
        run.heal = {
            "playbook": heal.playbook,
            "vars": heal.vars,
            "started_at": started,
            **outcome.to_dict(),
        }
        run.timings["heal_playbook"] = round(outcome.seconds, 3)
        self.log(f"heal: {outcome.status} in {outcome.seconds:.1f}s {outcome.reason}")

    def _await_steady_state(self, run: Run, deviated: bool) -> None:
        exp = self.exp
        assert run.fault_at is not None
        deadline = run.fault_at + exp.steady_state_within
        started = time.monotonic()
        while True:
            self.guard.checkpoint()
            results = self.probe(exp.probes, self.inv)
            if _all_ok(results):
                now = time.time()
                run.steady_state_after = _results(results)
                if deviated:
                    run.recovered_at = now
                    run.mttr = round(now - run.fault_at, 3)
                    self.log(f"steady state again after {run.mttr:.2f}s")
                break
            if time.time() >= deadline:
                run.steady_state_after = _results(results)
                break
            self.guard.sleep(exp.detection.interval)
        run.timings["verification"] = round(time.monotonic() - started, 3)

    def _expectations(self, run: Run) -> None:
        exp = self.exp
        assert run.fault_at is not None
        fault_at = run.fault_at
        ok = all(r["ok"] for r in run.steady_state_after)
        label = f"steady state again within {exp.steady_state_within:g}s"
        run.expectations.append({"expectation": label, "met": ok})
        if not ok:
            failing = [
                f"{r['name']} ({r['detail']})" for r in run.steady_state_after if not r["ok"]
            ]
            run.missed.append(f"{label}: still failing: {', '.join(failing)}")
        if exp.detection_within is not None:
            label = f"detection within {exp.detection_within:g}s"
            met = run.mttd is not None and run.mttd <= exp.detection_within
            run.expectations.append({"expectation": label, "met": met})
            if not met:
                got = f"{run.mttd:.2f}s" if run.mttd is not None else "never"
                run.missed.append(f"{label}: detected {got}")
        horizon = max([e.within for e in exp.healing] + [exp.steady_state_within])
        until = max(time.time(), fault_at + horizon)
        if self.audit is None:
            run.automation = {"source": None, "note": audit_mod.NO_TRAIL}
            for e in exp.healing:
                run.expectations.append(
                    {"expectation": e.label, "met": None, "note": audit_mod.NO_TRAIL}
                )
            if exp.healing:
                run.notes.append(f"healing expectations skipped: {audit_mod.NO_TRAIL}")
            return
        try:
            records = self.audit.records(fault_at - 1, until)
        except Exception as exc:
            run.automation = {"source": self.audit.description, "error": str(exc)}
            records = []
        ignore = {f.playbook for f in FAULTS.values()}
        run.automation = {
            "source": self.audit.description,
            "actions": audit_mod.summarize(records, ignore),
        }
        for e in exp.healing:
            window = [r for r in records if (audit_mod.record_time(r) or 0) <= fault_at + e.within]
            found = audit_mod.healing_run(window, e.runbook, e.host)
            entry: dict[str, Any] = {"expectation": e.label, "met": found is not None}
            if found:
                entry["seq"] = found.get("seq")
                entry["after"] = round((audit_mod.record_time(found) or fault_at) - fault_at, 3)
            else:
                run.missed.append(f"{e.label}: no successful run in the {self.audit.description}")
            run.expectations.append(entry)

    # -- rollbacks -------------------------------------------------------------------------
    def _rollback(self, run: Run, attempted: list[Step], method_failed: bool) -> None:
        interrupted = run.status == "interrupted"
        deviated = bool(run.missed) or method_failed or interrupted
        if self.strategy == "never" and not (method_failed or interrupted):
            run.notes.append("rollbacks not run (--rollback never)")
            return
        if self.strategy == "deviated" and not deviated:
            run.notes.append(
                "rollbacks not run: the experiment did not deviate (--rollback deviated)"
            )
            return
        if not attempted:
            return
        # The experiment's rollbacks for the steps that were attempted (a step that failed
        # half-way included), then the fault's own rollback for any step they do not cover.
        wanted = {(s.fault.name, s.target) for s in attempted}
        steps = [s for s in self.exp.rollbacks if (s.fault.name, s.target) in wanted]
        covered = {(s.fault.name, s.target) for s in steps}
        steps += [s for s in reversed(attempted) if (s.fault.name, s.target) not in covered]
        for step in steps:
            self.log(f"rollback: {step.label}")
            try:
                outcome = self.executor.fault(step, "rollback")
            except Exception as exc:  # keep rolling back the others
                outcome = PlaybookOutcome("failed", 0.0, reason=str(exc))
            run.rollbacks.append(
                {"fault": step.fault.name, "target": step.target, **outcome.to_dict()}
            )
            if outcome.status == "failed":
                run.missed.append(f"rollback of {step.label} failed: {outcome.reason}")
        # After the rollbacks the system should be back: give it a moment and look.
        deadline = time.monotonic() + 15
        while True:
            results = self.probe(self.exp.probes, self.inv)
            if _all_ok(results) or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        run.steady_state_after_rollback = _results(results)

    def _finish(self, run: Run) -> Run:
        run.finished_at = time.time()
        if run.status == "running":
            run.status = "failed" if run.missed else "passed"
        if run.fault_at and run.detection.get("detected_at"):
            run.timings["detection"] = round(run.detection["detected_at"] - run.fault_at, 3)
        with contextlib.suppress(Exception):
            run.timings["total"] = round(run.finished_at - run.started_at, 3)
        return run
