"""Kill -9 trials against a real `selfheal serve`, and the invariants they must keep.

Shared by tests/integration/test_run_fencing.py, tests/integration/test_crash_trials.py and
benchmarks/crash_soak.py. The runbook (playbooks/dispatcher_counted_heal.yml) logs every
attempt ("start", "tick"s, "effect", "end", each with the attempt's token) and makes its
effect at most once per incident unless two attempts overlap. The invariants:

* no two attempts on one target overlap: once a later attempt logged a line, no earlier
  attempt on that target logs again (this covers two attempts of one run too);
* each remediation's effect happens exactly once (a run that succeeded made one effect
  file; no incident has more than one);
* every alert acknowledged with a 2xx is in the store;
* the audit trail verifies.

A trial: post a few alerts, SIGKILL the dispatcher process alone (its runs are left behind,
as under a supervisor that kills the main process) at a random moment (during intake, just
after the decisions, or while a run is executing), restart it with SIGHUP ignored (as
`nohup` does), and wait until every run settled.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from support import REPO
from unit.dispatcher.helpers import INVENTORY, Server, am_alert, am_body, free_port, policy_data
from unit.dispatcher.helpers import request as http

TOKEN = "crash-token-0123456789"
PLAYBOOK = REPO / "tests/integration/playbooks/dispatcher_counted_heal.yml"
TARGETS = ("web-01", "web-02")
# where the kill lands: during a burst's intake, just after the decisions, while a run
# executes, or while a run executes and again right after the restart (during the recovery)
PHASES = ("intake", "decision", "run", "recovery")


@dataclass
class Lab:
    """One dispatcher's directory: config, store, runs, the runbook's log and effects."""

    root: Path
    port: int
    instance: str
    server: Server
    acked: list[int] = field(default_factory=list)  # alert ids answered with a 2xx
    alerts_sent: int = 0

    @property
    def log(self) -> Path:
        return self.root / "heal.log"

    @property
    def effects(self) -> Path:
        return self.root / "effects"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.root / 'state/selfheal.db'}?mode=ro", uri=True)


def stable_port() -> int:
    """A free port below the ephemeral range: the dispatcher restarts many times on it, and
    no client's ephemeral port (a connection to the port while the server is down can even
    connect to itself) may take it in between."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def make_lab(
    root: Path,
    *,
    ticks: int = 10,
    spread: int = 1,
    window: float = 0.2,
    lease_s: float = 10,
    workers: int = 2,
    max_attempts: int = 20,
) -> Lab:
    port = stable_port()
    instance = f"crash-{os.getpid()}-{random.randrange(1 << 30):x}"
    inventory = {
        "all": {
            "vars": {
                "heal_log": str(root / "heal.log"),
                "heal_effects": str(root / "effects"),
                "heal_ticks": ticks,
                "heal_spread": spread,
                "heal_window": window,
            },
            "hosts": INVENTORY["all"]["hosts"],
        }
    }
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    many = {"count": 100000, "per": "1h"}
    policy = policy_data(str(PLAYBOOK), runs_per_target=many, runs_per_runbook=many)
    (root / "policy.yml").write_text(yaml.safe_dump(policy))
    config = {
        "listen": f"127.0.0.1:{port}",
        "store": "state/selfheal.db",
        "policy": "policy.yml",
        "inventory": "inventory.yml",
        "audit": "audit",
        "audit_key_file": "audit-keys.json",
        "workers": workers,
        "lease_s": lease_s,
        "poll_s": 0.1,
        "reevaluate_s": 0.3,
        "instance": instance,
        "retry": {"max_attempts": max_attempts, "base_s": 0.1, "cap_s": 0.5},
        "tokens": [{"name": "tester", "token": TOKEN}],
    }
    (root / "dispatcher.yml").write_text(yaml.safe_dump(config))
    server = Server(root / "dispatcher.yml", port, root / "serve.log", ignore_sighup=True)
    return Lab(root, port, instance, server)


def post(lab: Lab, body: dict) -> bool:
    """POST one Alertmanager body; records the acknowledged alert ids. False: not acked."""
    try:
        status, answer = http(lab.port, "POST", "/alerts/alertmanager", body, TOKEN, timeout=10)
    except OSError:
        return False
    if status // 100 != 2:
        return False
    lab.acked += [r["alert_id"] for r in answer["results"]]
    return True


def alert_body(trial: int, n: int, target: str) -> dict:
    labels = {"alertname": "ServiceDown", "service": "app", "host": target}
    labels["trial"] = f"{trial}-{n}"
    return am_body(am_alert(labels))


def log_lines(lab: Lab) -> list[list[str]]:
    if not lab.log.exists():
        return []
    return [line.split() for line in lab.log.read_text().splitlines() if line.strip()]


def started(lab: Lab) -> int:
    return sum(1 for parts in log_lines(lab) if parts and parts[0] == "start")


def settled(lab: Lab) -> bool:
    with contextlib.closing(lab.db()) as db:
        busy = db.execute(
            "SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'interrupted')"
        ).fetchone()[0]
        # every open incident has its run (a decision not made yet, or deferred for a slot,
        # has none)
        waiting = db.execute(
            "SELECT count(*) FROM incidents i WHERE status = 'open' AND NOT EXISTS"
            " (SELECT 1 FROM runs r WHERE r.incident_id = i.id)"
        ).fetchone()[0]
    return busy == 0 and waiting == 0


def wait_settled(lab: Lab, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            if settled(lab):
                return True
        time.sleep(0.2)
    return False


def overlaps(lines: list[list[str]]) -> list[str]:
    """Attempts on one target that overlap: an attempt logging after a later one started."""
    found = []
    first: dict[str, int] = {}  # token -> index of its first line
    latest: dict[str, tuple[int, str]] = {}  # target -> (first index, token) of the newest
    for i, parts in enumerate(lines):
        if len(parts) < 4:
            continue
        _, target, _, token = parts[:4]
        first.setdefault(token, i)
        newest = latest.get(target)
        if newest is None or first[token] > newest[0]:
            latest[target] = (first[token], token)
        elif newest[1] != token:
            found.append(f"{target}: attempt {token} logged {parts[0]!r} after {newest[1]} began")
    return found


def violations(lab: Lab, *, audit: bool = True) -> list[str]:
    """Every invariant broken so far (empty: all hold). Call when the lab is settled."""
    problems = overlaps(log_lines(lab))
    effects: dict[str, int] = {}
    if lab.effects.is_dir():
        for path in lab.effects.iterdir():
            if not path.name.startswith("."):
                incident = path.name.split("-", 1)[0]
                effects[incident] = effects.get(incident, 0) + 1
    with contextlib.closing(lab.db()) as db:
        runs = db.execute("SELECT id, incident_id, status, attempts FROM runs").fetchall()
        stored = {row[0] for row in db.execute("SELECT id FROM alerts")}
    for incident, n in sorted(effects.items()):
        if n > 1:
            problems.append(f"incident {incident}: effect made {n} times")
    for run_id, incident, status, attempts in runs:
        if status == "succeeded" and effects.get(str(incident), 0) != 1:
            problems.append(
                f"run {run_id} (incident {incident}) succeeded after {attempts} attempt(s)"
                f" but made the effect {effects.get(str(incident), 0)} times"
            )
        elif status != "succeeded":
            problems.append(f"run {run_id} (incident {incident}) ended {status}")
    lost = sorted(set(lab.acked) - stored)
    if lost:
        problems.append(f"{len(lost)} acknowledged alert(s) lost: {lost[:10]}")
    if audit:
        from selfheal.audit import Keyring, verify

        keyring = Keyring.load(lab.root / "audit-keys.json", create=False)
        report = verify(lab.root / "audit", keyring)
        if not report.ok:
            problems.append(f"audit trail does not verify: {report.problem}")
    return problems


def trial(lab: Lab, number: int, rng: random.Random, *, settle_s: float = 60) -> dict:
    """One kill -9 at a random moment; returns what happened. The server must be running;
    it is running again (restarted) when this returns."""
    phase = rng.choice(PHASES)
    count = rng.randint(1, 2)
    began = time.monotonic()
    bodies = [alert_body(number, n, rng.choice(TARGETS)) for n in range(count)]
    before = started(lab)
    unacked: list[dict] = []
    if phase == "intake":
        # the kill lands while the burst is in flight
        delay = rng.uniform(0.0, 0.05)
        results: list[tuple[dict, bool]] = []

        def send() -> None:
            for body in bodies:
                results.append((body, post(lab, body)))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(delay)
        lab.server.kill_dispatcher()
        sender.join(30)
        answered = {id(body) for body, ok in results if ok}
        unacked = [body for body in bodies if id(body) not in answered]
    else:
        for body in bodies:
            if not post(lab, body):
                unacked.append(body)
        if phase == "decision":
            delay = rng.uniform(0.0, 0.3)
            time.sleep(delay)
        else:  # mid-run: after an attempt of this trial started, a random time into it
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and started(lab) == before:
                time.sleep(0.02)
            delay = rng.uniform(0.0, 1.5)
            time.sleep(delay)
        lab.server.kill_dispatcher()
    lab.alerts_sent += count
    killed = time.monotonic()
    lab.server.start()
    if phase == "recovery":
        time.sleep(rng.uniform(0.0, 1.0))
        lab.server.kill_dispatcher()
        lab.server.start()
    restarted = time.monotonic()
    for body in unacked:  # the sender retries what was not acknowledged, as Alertmanager does
        for _ in range(5):
            if post(lab, body):
                break
            time.sleep(0.5)
    ok = wait_settled(lab, settle_s)
    return {
        "trial": number,
        "phase": phase,
        "alerts": count,
        "delay": round(delay, 3),
        "ok": ok,
        # seconds: until the kill, the restart, and until every run settled
        "kill_s": round(killed - began, 2),
        "restart_s": round(restarted - killed, 2),
        "settle_s": round(time.monotonic() - restarted, 2),
    }


def lab_processes(instance: str, config: Path | None = None) -> list[int]:
    """Processes whose environment names this dispatcher instance (its runs), or whose
    command line names the `config` (a dispatcher, or a forked copy of one), other than us."""
    needle = f"SELFHEAL_DISPATCHER={instance}\0".encode()
    command = f"\0{config}\0".encode() if config is not None else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                mine = needle in fh.read()
            if not mine and command is not None:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    mine = command in b"\0" + fh.read()
        except OSError:
            continue
        if mine:
            found.append(int(entry))
    return found


def reap(lab: Lab, *others: str) -> list[int]:
    """Kill the server's process group and every process of its runs (the groups the runs
    made, which the server's group does not hold), and of the `others` instances' runs.
    Returns what was still running."""
    instances = (lab.instance, *others)

    def running() -> list[int]:
        found = set(lab_processes(lab.instance, lab.server.config))
        for name in others:
            found |= set(lab_processes(name))
        if lab.server.proc is not None:
            found.discard(lab.server.proc.pid)
        return sorted(found)

    left = running()
    with contextlib.suppress(Exception):
        lab.server.kill()
    mine = os.getpgrp()
    for _ in range(3):
        pids = [*running(), *(p for name in instances for p in lab_processes(name))]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                group = os.getpgid(pid)
                if group != mine:
                    os.killpg(group, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return left
