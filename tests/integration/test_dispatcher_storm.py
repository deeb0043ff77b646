"""A storm against a real `selfheal serve`, SIGKILLed in the middle and restarted.

1,000 copies of one alert and 100 distinct alerts make exactly 101 incidents; no more runs
than the policy's budgets allow; every alert the client got a 2xx for is in the store after
the crash; the run the crash interrupted is recovered and finishes."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from support import REPO
from unit.dispatcher.helpers import (
    INVENTORY,
    Server,
    am_alert,
    am_body,
    free_port,
    policy_data,
    request,
)

from selfheal.audit import Keyring, iter_records, verify

pytestmark = pytest.mark.integration

TOKEN = "storm-token-0123456789"
PLAYBOOK = REPO / "tests/integration/playbooks/dispatcher_slow_heal.yml"


def _setup(tmp: Path) -> tuple[Path, int]:
    port = free_port()
    inventory = {
        "all": {
            "vars": {"heal_marker": str(tmp / "runs.log"), "heal_pause": 2},
            "hosts": INVENTORY["all"]["hosts"],
        }
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "policy.yml").write_text(yaml.safe_dump(policy_data(str(PLAYBOOK))))
    config = {
        "listen": f"127.0.0.1:{port}",
        "store": "state/selfheal.db",
        "policy": "policy.yml",
        "inventory": "inventory.yml",
        "audit": "audit",
        "audit_key_file": "audit-keys.json",
        "workers": 2,
        "lease_s": 10,
        "poll_s": 0.2,
        "reevaluate_s": 0.5,
        "instance": "storm",
        "retry": {"max_attempts": 3, "base_s": 0.2, "cap_s": 1},
        "tokens": [{"name": "tester", "token": TOKEN}],
    }
    (tmp / "dispatcher.yml").write_text(yaml.safe_dump(config))
    return tmp / "dispatcher.yml", port


def _db(tmp: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{tmp / 'state/selfheal.db'}?mode=ro", uri=True, timeout=10)


def test_storm_sigkill_restart(tmp_path: Path) -> None:
    config, port = _setup(tmp_path)
    server = Server(config, port, tmp_path / "serve.log")
    server.start()
    same = am_alert({"alertname": "ServiceDown", "service": "app", "host": "localhost"})
    bodies = []
    for i in range(1100):
        if i % 11 == 0:
            n = i // 11
            host = ("web-01", "web-02")[n % 2]
            labels = {"alertname": "ServiceDown", "service": "app", "host": host, "n": str(n)}
            bodies.append(am_body(am_alert(labels)))
        else:
            bodies.append(am_body(same))
    acked: dict[int, list[int]] = {}  # body index -> alert ids the server reported
    lock = threading.Lock()
    killed = threading.Event()

    def send(i: int) -> None:
        if killed.is_set():
            return
        try:
            status, body = request(port, "POST", "/alerts/alertmanager", bodies[i], TOKEN)
        except OSError:
            return
        if status == 202:
            with lock:
                acked[i] = [r["alert_id"] for r in body["results"]]

    def running() -> bool:
        with _db(tmp_path) as db:
            return (
                db.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0] > 0
            )

    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(send, i) for i in range(len(bodies))]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if len(acked) >= 400 and running():
                    break
                time.sleep(0.05)
            server.kill()  # mid-storm, with a run in flight
            killed.set()
            for f in futures:
                f.result()
        assert 0 < len(acked) < len(bodies), "the crash should land mid-storm"
        with _db(tmp_path) as db:
            stored = {row[0] for row in db.execute("SELECT id FROM alerts")}
            interrupted = [r[0] for r in db.execute("SELECT id FROM runs WHERE status = 'running'")]
        lost = [a for ids in acked.values() for a in ids if a not in stored]
        assert lost == [], f"{len(lost)} acknowledged alerts lost"
        assert interrupted, "a run should have been in flight"

        # restart; the senders retry what was not acknowledged (as Alertmanager would)
        server.start()
        for i in range(len(bodies)):
            if i not in acked:
                status, _ = request(port, "POST", "/alerts/alertmanager", bodies[i], TOKEN)
                assert status == 202

        def settled() -> bool:
            with _db(tmp_path) as db:
                busy = db.execute(
                    "SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'interrupted')"
                ).fetchone()[0]
                undecided = db.execute(
                    "SELECT count(*) FROM incidents i WHERE NOT EXISTS"
                    " (SELECT 1 FROM decisions d WHERE d.incident_id = i.id)"
                ).fetchone()[0]
            return busy == 0 and undecided == 0

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not settled():
            time.sleep(0.5)
        assert settled(), (tmp_path / "serve.log").read_text()[-3000:]
        with _db(tmp_path) as db:
            incidents = db.execute("SELECT count(*) FROM incidents").fetchone()[0]
            runs = db.execute("SELECT id, target, status, attempts FROM runs").fetchall()
            recovered = db.execute(
                f"SELECT status, attempts FROM runs WHERE id IN ({','.join('?' * len(interrupted))})",
                interrupted,
            ).fetchall()
        assert incidents == 101
        assert len(runs) <= 5  # runs_per_runbook 5/h
        per_target: dict[str, int] = {}
        for _, target, _, _ in runs:
            per_target[target] = per_target.get(target, 0) + 1
        assert all(n <= 3 for n in per_target.values()), per_target  # runs_per_target 3/h
        assert all(status == "succeeded" and attempts >= 2 for status, attempts in recovered)
    finally:
        server.stop()
    keyring = Keyring.load(tmp_path / "audit-keys.json", create=False)
    assert verify(tmp_path / "audit", keyring).ok
    actions = [r["action"] for r in iter_records(tmp_path / "audit")]
    assert "run.interrupted" in actions
