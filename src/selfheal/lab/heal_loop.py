"""The whole loop on the lab, for real: kill the web service on one host and follow it
through Prometheus → Alertmanager → `selfheal serve` → heal_service.yml over SSH → steady state.

Used by `selfheal demo`, the end-to-end test and the MTTR benchmark, so all three measure
the same path. Times are taken from the moment the fault is injected:
  MTTD = fault → the dispatcher holds the incident (alert received and committed);
  MTTR = fault → the host's /readyz answers ok again after the heal run.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from selfheal.audit import Keyring, verify
from selfheal.lab import dispatcher
from selfheal.lab.lab import Lab, LabError, http_ok

SERVICE = "web"


@dataclass
class LoopReport:
    host: str
    healed: bool = False
    mttd_s: float | None = None
    mttr_s: float | None = None
    incident: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    missed: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, ValueError):
            value = None
        if value:
            return value
        time.sleep(interval)
    return None


def _open_incident_for(lab: Lab, host: str, after_id: int) -> dict | None:
    for incident in dispatcher.api(lab, "/incidents?status=open")["incidents"]:
        labels = incident.get("labels") or {}
        if (
            incident["id"] > after_id
            and labels.get("host") == host
            and labels.get("service") == SERVICE
        ):
            return incident
    return None


def _finished_run(lab: Lab, incident_id: int) -> dict | None:
    detail = dispatcher.api(lab, f"/incidents/{incident_id}")
    runs = detail.get("runs") or []
    done = [r for r in runs if r["status"] in ("succeeded", "failed", "canceled", "interrupted")]
    if done:
        return {"detail": detail, "run": done[-1]}
    if detail.get("decisions") and detail["decisions"][-1]["mode"] != "auto" and not runs:
        return {"detail": detail, "run": None}  # the policy said no: nothing will run
    return None


def kill_and_watch(
    lab: Lab,
    host_index: int = 2,
    echo: Callable[[str], None] = print,
    detect_timeout: float = 90.0,
    heal_timeout: float = 180.0,
) -> LoopReport:
    """Kill the web service on lab host `host_index` and follow the automation to the end."""
    host = lab.spec.host(host_index)
    report = LoopReport(host=host.name)
    started = time.monotonic()

    def mark(phase: str, detail: str) -> float:
        at = time.monotonic() - started
        report.steps.append({"at": round(at, 3), "phase": phase, "detail": detail})
        echo(f"  {at:7.2f}s  {phase:<10} {detail}")
        return at

    if not all(http_ok(h.url("/readyz")) for h in lab.spec.all_hosts()):
        raise LabError(
            "the lab is not in steady state (some /readyz fails); see `selfheal lab status`"
        )
    known = dispatcher.api(lab, "/incidents?limit=1000")["incidents"]
    last_id = max((i["id"] for i in known), default=0)
    mark("steady", f"{len(lab.spec.all_hosts())} hosts ready; dispatcher {dispatcher.url(lab)}")

    supervisor = lab.supervisor(host)
    pid = supervisor.program_pid(SERVICE)
    if pid is None:
        raise LabError(f"{host.name}: supervisord reports no PID for {SERVICE}")
    os.kill(pid, signal.SIGKILL)
    fault_at = mark("fault", f"SIGKILL {SERVICE} on {host.name} (pid {pid})")

    incident = _poll(lambda: _open_incident_for(lab, host.name, last_id), detect_timeout)
    if incident is None:
        report.missed = f"no incident for {host.name} within {detect_timeout:.0f} s"
        mark("missed", report.missed)
        return report
    detected_at = mark("detect", f"incident {incident['id']}: {incident['name']} on {host.name}")
    report.mttd_s = round(detected_at - fault_at, 3)

    finished = _poll(lambda: _finished_run(lab, incident["id"]), heal_timeout, 0.5)
    if finished is None:
        report.missed = f"no finished heal run within {heal_timeout:.0f} s"
        mark("missed", report.missed)
        return report
    detail, run = finished["detail"], finished["run"]
    report.incident = detail
    decision = detail["decisions"][-1] if detail.get("decisions") else {}
    mark("decide", f"{decision.get('mode', '?')} ({len(decision.get('reasons') or [])} reasons)")
    if run is None or run["status"] != "succeeded":
        report.missed = f"heal run {run['status'] if run else 'never started'}"
        mark("missed", report.missed)
        return report
    mark("heal", f"{run['runbook']} on {run['target']} {run['status']} (attempt {run['attempts']})")

    if not _poll(lambda: http_ok(host.url("/readyz")), 30):
        report.missed = f"{host.name} /readyz still failing after the heal"
        mark("missed", report.missed)
        return report
    verified_at = mark("verify", f"{host.name} /readyz ok: steady state again")
    report.mttr_s = round(verified_at - fault_at, 3)
    report.healed = True

    trail, keys = dispatcher.audit_paths(lab)
    result = verify(trail, Keyring.load(keys, create=False))
    report.audit = {"trail": str(trail), "key_file": str(keys), **result.to_dict()}
    mark(
        "audit",
        f"{result.records} records, chain and seals intact"
        if result.ok
        else f"BROKEN: {result.problem}",
    )
    return report
