"""The self-healing demo on embedded defaults: break a real service and watch it heal.

One run, on this machine only (loopback), with nothing to configure:
  1. a private supervisord runs the demo web service (`selfheal.health.demo`) on 127.0.0.1;
  2. steady state: its /readyz answers ok;
  3. fault: the service is killed with SIGKILL (supervisord is told not to restart it, so the
     crash stays a crash until something heals it);
  4. detect: a prober sees /livez fail twice in a row;
  5. decide: the policy engine decides on the embedded default policy, with reasons;
  6. heal: ansible-runner runs `playbooks/heal_service.yml` (the `service_restart` role
     checks health, restarts the program, waits for readiness), with the audit callback on;
  7. verify: /readyz is ok again; the audit trail is verified;
  8. the timeline, MTTD and MTTR are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from selfheal import runner
from selfheal.audit import AuditTrail, Keyring, verify
from selfheal.errors import SelfhealError
from selfheal.lab.heal_loop import LoopReport
from selfheal.policy import Decision, MemoryState, Request, evaluate, load_policy
from selfheal.policy.inventory import inventory_from_data
from selfheal.supervisor import Program, Supervisor

SERVICE = "web"
HOST = "demo-web"
PROBE_INTERVAL = 0.25  # seconds between detector probes
FAILS_TO_DETECT = 2  # consecutive failed probes before the fault counts as detected
DEMO_POLICY = Path(__file__).with_name("demo_policy.yml")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "selfheal" / "demo"


@dataclass
class Step:
    at: float  # seconds since the demo started
    phase: str
    detail: str


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    echo: Callable[[str], None] = print

    def mark(self, phase: str, detail: str) -> float:
        now = time.monotonic() - self.started
        self.steps.append(Step(round(now, 3), phase, detail))
        self.echo(f"  {now:7.2f}s  {phase:<10} {detail}")
        return now


@dataclass
class DemoReport:
    healed: bool
    mttd_s: float | None
    mttr_s: float | None
    timeline: list[Step]
    state_dir: Path
    run_dir: Path | None = None
    audit: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "healed": self.healed,
            "mttd_s": self.mttd_s,
            "mttr_s": self.mttr_s,
            "timeline": [step.__dict__ for step in self.timeline],
            "state_dir": str(self.state_dir),
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "audit": self.audit,
            "decision": self.decision,
        }


def free_port(preferred: int = 18080) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise SelfhealError("no free TCP port on 127.0.0.1")


def probe(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    """(ok, reason) for one GET of a selfheal.health endpoint."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
            status = body.get("status")
            return status == "ok", f"HTTP {response.status}, status {status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(reason)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _program_environment() -> str:
    # A checkout run (PYTHONPATH=src) must reach the same package in the service.
    # supervisord runs programs from its own working directory, so make the entries absolute.
    entries = [
        str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    return f'PYTHONPATH="{os.pathsep.join(entries)}"' if entries else ""


def write_inventory(path: Path, supervisor: Supervisor, port: int) -> None:
    """The demo's one host: this machine, over a local connection, with its service."""
    readiness = {
        "name": "web-ready",
        "kind": "http",
        "url": f"http://127.0.0.1:{port}/readyz",
        "json_path": "status",
        "json_expect": "ok",
        "timeout": 2,
    }
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # Compliance tags the policy and the role require before acting.
        "env": "demo",
        "owner": "sre",
        "selfheal_managed": True,
        "health_checks": [readiness],
        "selfheal_services": {
            SERVICE: {
                "manager": "supervisord",
                "supervisor_config": str(supervisor.config),
                "health_checks": [readiness],
            }
        },
    }
    inventory = {"all": {"children": {"demo": {"hosts": {HOST: host}}}}}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))


def decide(inventory: Path) -> Decision:
    """The policy's decision on the alert the detector raised, on the embedded policy."""
    policy = load_policy(DEMO_POLICY)
    known = inventory_from_data(policy, yaml.safe_load(inventory.read_text()))
    alert_labels = {"alertname": "ServiceDown", "service": SERVICE, "instance": HOST}
    request = Request(labels=alert_labels, target=HOST, inventory=known, requester="demo")
    return evaluate(policy, request, MemoryState(), datetime.now(UTC))


def _runner_env() -> dict[str, str]:
    # ansible-runner starts ansible-playbook from PATH: prefer the one beside this Python.
    bindir = str(Path(sys.executable).parent)
    return {"PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}


def run_demo(
    state_dir: Path | None = None,
    port: int | None = None,
    keep: bool = False,
    echo: Callable[[str], None] = print,
    heal_timeout: int = 180,
) -> DemoReport:
    state_dir = Path(state_dir or default_state_dir())
    if not Supervisor.available():
        raise SelfhealError(
            "the demo runs its service under supervisord, which is not installed "
            "(Debian package `supervisor`; `make setup` installs it)"
        )
    supervisor = Supervisor(state_dir / "supervisor")
    supervisor.stop()  # a previous `--keep` run, by the PID it recorded
    for leftover in ("supervisor", "runs", "inventory.yml", "audit", "audit.spool"):
        target = state_dir / leftover
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (state_dir / "runs").mkdir(parents=True)

    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    command = (
        f"{sys.executable} -m selfheal.health.demo --host 127.0.0.1 --port {port} --name {SERVICE}"
    )
    supervisor.write_config([Program(SERVICE, command, environment=_program_environment())])
    inventory = state_dir / "inventory.yml"
    write_inventory(inventory, supervisor, port)

    timeline = Timeline(echo=echo)
    echo(f"selfheal demo: state in {state_dir}")
    key_file = state_dir / "audit-keys.json"
    keyring = Keyring.load(key_file, notice=lambda _msg: None)
    trail_dir = state_dir / "audit"
    trail = AuditTrail(trail_dir, keyring)
    incident = f"demo-{int(time.time())}"

    def record(action: str, **fields: Any) -> None:
        trail.append(
            {"action": action, "actor": "selfheal-demo", "incident_id": incident, **fields}
        )

    healed = False
    mttd = mttr = None
    result = None
    decision_dict = None
    audit = None
    try:
        supervisor.start()
        # RUNNING, not just answering: a program killed while still STARTING is retried by
        # supervisord itself, and the demo would heal nothing.
        if not wait_for(lambda: supervisor.is_running(SERVICE) and probe(f"{base}/readyz")[0], 20):
            raise SelfhealError(f"the demo service did not become ready on {base}")
        timeline.mark(
            "steady", f"{SERVICE} ready at {base}/readyz (supervisord pid {supervisor.pid()})"
        )

        pid = supervisor.program_pid(SERVICE)
        if pid is None:
            raise SelfhealError("supervisord reports no PID for the demo service")
        os.kill(pid, signal.SIGKILL)
        fault_at = timeline.mark("fault", f"SIGKILL {SERVICE} (pid {pid})")
        record("chaos.fault", target=HOST, data={"fault": "kill", "service": SERVICE, "pid": pid})

        failures, reason = 0, ""
        deadline = time.monotonic() + 30
        while failures < FAILS_TO_DETECT and time.monotonic() < deadline:
            ok, reason = probe(f"{base}/livez", timeout=0.5)
            failures = 0 if ok else failures + 1
            if failures < FAILS_TO_DETECT:
                time.sleep(PROBE_INTERVAL)
        if failures < FAILS_TO_DETECT:
            raise SelfhealError("the fault was not detected within 30 s")
        detected_at = timeline.mark("detect", f"/livez failed {failures}x in a row: {reason}")
        mttd = round(detected_at - fault_at, 3)
        record("incident.detected", target=HOST, data={"probe": "/livez", "reason": reason})

        decision = decide(inventory)
        decision_dict = decision.to_dict()
        because = "; ".join(r.message for r in decision.reasons if r.effect != "info") or "-"
        timeline.mark(
            "decide",
            f"{decision.mode}: runbook {decision.runbook} on {decision.target} ({because})",
        )
        record(
            "policy.decision",
            target=decision.target,
            decision=decision.mode,
            reasons=[f"{r.code}: {r.message}" for r in decision.reasons],
            data={"runbook": decision.runbook, "request_id": decision.request_id},
        )
        if decision.mode != "auto":
            timeline.mark("escalate", "policy did not allow automation; a human is needed")
            return DemoReport(False, mttd, None, timeline.steps, state_dir, decision=decision_dict)

        result = runner.run_playbook(
            "heal_service.yml",
            inventory,
            extravars={"target": HOST, "service": SERVICE},
            envvars={
                **_runner_env(),
                # Every task of the run lands in the same trail, with the incident context.
                "ANSIBLE_CALLBACKS_ENABLED": "selfheal.core.audit",
                "SELFHEAL_AUDIT_TRAIL": str(trail_dir),
                "SELFHEAL_AUDIT_KEY_FILE": str(key_file),
                "SELFHEAL_INCIDENT_ID": incident,
                "SELFHEAL_RUNBOOK": str(decision.runbook),
                "SELFHEAL_DECISION": decision.mode,
                "SELFHEAL_DISPATCHER": "selfheal demo",
            },
            timeout=heal_timeout,
            base_dir=state_dir / "runs",
        )
        changed = ", ".join(result.changed_hosts()) or "none"
        timeline.mark(
            "heal",
            f"heal_service.yml {result.status} (rc {result.rc}, changed: {changed})",
        )
        if not result.ok:
            timeline.mark("escalate", "healing failed: " + "; ".join(result.failed_tasks))
        else:
            ok = wait_for(lambda: probe(f"{base}/readyz")[0], timeout=30, interval=0.1)
            verified_at = timeline.mark(
                "verify", "steady state again: /readyz ok" if ok else "still not ready after 30 s"
            )
            healed = ok
            mttr = round(verified_at - fault_at, 3) if ok else None
            record("incident.verified", target=HOST, outcome="healed" if ok else "not_healed")
        trail.close()
        report = verify(trail_dir, keyring)
        audit = {"trail": str(trail_dir), **report.to_dict()}
        timeline.mark(
            "audit",
            f"{report.records} records, chain and seals intact"
            if report.ok
            else f"TRAIL BROKEN: {report.problem}",
        )
    finally:
        trail.close()
        if keep:
            echo(f"selfheal demo: --keep: supervisord still runs (config {supervisor.config})")
        else:
            supervisor.stop()

    return DemoReport(
        healed=healed,
        mttd_s=mttd,
        mttr_s=mttr,
        timeline=timeline.steps,
        state_dir=state_dir,
        run_dir=result.private_data_dir if result else None,
        decision=decision_dict,
        audit=audit,
    )


def run_lab_demo(
    state_dir: Path | None = None, hosts: int = 3, echo: Callable[[str], None] = print
) -> tuple[LoopReport, Path]:
    """The demo on the lab: every component real, the alert path included.

    Brings up the lab (network-namespace hosts with sshd and supervisord), Prometheus and
    Alertmanager, and `selfheal serve` on the lab's policy; kills the web service on lab2 and
    follows it to a verified heal. The lab is left running for exploration.
    """
    from selfheal.lab import dispatcher, heal_loop, monitoring
    from selfheal.lab.lab import Lab
    from selfheal.lab.plan import LabSpec, default_state_dir

    spec = LabSpec(state_dir=Path(state_dir or default_state_dir()), hosts=hosts)
    existing = Lab.existing(spec.state_dir)
    lab = existing if existing is not None else Lab(spec)
    echo(f"selfheal demo: lab in {lab.spec.state_dir}")
    for line in (
        [f"{r.name}: {', '.join(r.actions) or 'already up'}" for r in lab.up()]
        + monitoring.start(lab)
        + dispatcher.start(lab)
    ):
        echo(f"  {line}")
    echo("watching: Prometheus scrapes every 2 s, ServiceDown fires after 4 s down, Alertmanager")
    echo("waits 1 s, then the dispatcher decides and runs heal_service.yml over SSH")
    report = heal_loop.kill_and_watch(lab, host_index=min(2, lab.spec.hosts), echo=echo)
    return report, lab.spec.state_dir
