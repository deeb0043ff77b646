"""`selfheal demo` end to end on this machine: a real supervisord, a real service killed with
SIGKILL, a real ansible-runner run of heal_service.yml, and the service ready again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("supervisord") is None, reason="supervisord is not installed"),
]


def _selfheal(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=dict(os.environ),
        check=False,
    )


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_demo_heals_the_killed_service_and_cleans_up(tmp_path: Path) -> None:
    run = _selfheal("demo", "--local", "--json", "--state-dir", str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["healed"] is True
    phases = [step["phase"] for step in report["timeline"]]
    assert phases[:2] == ["steady", "fault"]
    assert phases.index("detect") < phases.index("heal") < phases.index("verify")
    assert 0 < report["mttd_s"] < report["mttr_s"] < 120
    # The policy decided, on the embedded policy, and said why.
    assert report["decision"]["mode"] == "auto"
    assert report["decision"]["runbook"] == "restart_service"
    assert {"route", "compliance", "risk_tier"} <= {
        r["code"] for r in report["decision"]["reasons"]
    }
    # The heal run changed exactly the demo host, and its artifacts are kept.
    heal = next(step for step in report["timeline"] if step["phase"] == "heal")
    assert "successful" in heal["detail"] and "changed: demo-web" in heal["detail"]
    assert Path(report["run_dir"], "artifacts").is_dir()
    # Everything is on the record, and the record is intact (checked again by the CLI).
    assert report["audit"]["ok"] is True
    trail, keys = tmp_path / "audit", tmp_path / "audit-keys.json"
    verified = _selfheal("audit", "verify", str(trail), "--key-file", str(keys))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = _selfheal("audit", "show", str(trail), "--json")
    actions = [json.loads(line)["action"] for line in shown.stdout.splitlines() if line.strip()]
    for action in ("chaos.fault", "incident.detected", "policy.decision", "incident.verified"):
        assert action in actions, actions
    assert "task" in actions  # the heal run's tasks, written by the audit callback
    # Without --keep, the private supervisord (and with it the service) is gone.
    pidfile = tmp_path / "supervisor" / "supervisord.pid"
    if pidfile.exists():
        assert not _alive(int(pidfile.read_text()))


def test_demo_keep_leaves_the_service_running_until_the_next_run_stops_it(tmp_path: Path) -> None:
    run = _selfheal("demo", "--local", "--json", "--keep", "--state-dir", str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    pid = int((tmp_path / "supervisor" / "supervisord.pid").read_text())
    try:
        assert _alive(pid)
    finally:
        from selfheal.supervisor import Supervisor

        Supervisor(tmp_path / "supervisor").stop()
    assert not _alive(pid)


def test_demo_help() -> None:
    run = _selfheal("demo", "--help")
    assert run.returncode == 0
    assert "--keep" in run.stdout and "--local" in run.stdout and "MTTD" in run.stdout
