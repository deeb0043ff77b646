"""Drift on lab hosts: playbooks/reconcile.yml reports a hand-made change per host and
resource (before/after) and restores it; during an active deny window of the policy it
reports and does not restore; `reconcile_mode: warn` only reports.

Runs on its own lab (own state dir, namespace prefix, bridge and subnet), which needs root
and `ip netns`; otherwise the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, run_playbook

pytestmark = pytest.mark.integration

TAG = (os.getpid() + 7) % 1000
POLICY = """\
version: 1
risk_tiers: {low: {mode: auto}}
runbooks: {reconcile: {playbook: reconcile.yml, risk: low}}
routes: []
windows:
  - name: christmas
    kind: deny
    dates: ["12-25"]
    timezone: America/New_York
"""
DESIRED = "listen = 8080\nworkers = 4\n"
OPEN = "2026-12-20T12:00:00Z"
FROZEN = "2026-12-25T17:00:00Z"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (the lab makes network namespaces)"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=30, check=False)
    if probe.returncode != 0:
        return "ip netns does not work here"
    for tool in ("supervisord", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        return "sshd is not installed (openssh-server)"
    return None


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", "lab", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def lab(tmp_path: Path):
    reason = _why_not()
    if reason:
        pytest.skip(f"lab drift test skipped: {reason}")
    state = tmp_path / "lab"
    opts = ["--mode", "netns", "--state-dir", str(state), "--hosts", "2"]
    opts += ["--netns-prefix", f"shgo{TAG}-", "--bridge", f"shgo{TAG}"]
    opts += ["--subnet", f"10.79.{TAG % 250}.0/24"]
    up = _lab("up", "--json", *opts)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield json.loads(up.stdout)["inventory"]
    finally:
        down = _lab("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stdout + down.stderr


def _reconcile(inventory: str, tmp_path: Path, at: str, mode: str = "enforce") -> dict:
    extra = {
        "reconcile_hosts": "lab",
        "reconcile_mode": mode,
        "reconcile_at": at,
        "reconcile_policy": str(tmp_path / "policy.yml"),
        "reconcile_report_dir": str(tmp_path),
        "desired_state_directories": [{"path": f"{tmp_path}/hosts/{{{{ inventory_hostname }}}}"}],
        "desired_state_files": [
            {
                "path": f"{tmp_path}/hosts/{{{{ inventory_hostname }}}}/app.conf",
                "content": DESIRED,
                "mode": "0644",
            }
        ],
    }
    result = run_playbook(
        REPO / "playbooks/reconcile.yml",
        "-i",
        inventory,
        extra_vars=extra,
        env={"ANSIBLE_SSH_ARGS": "-o ControlMaster=no", "ANSIBLE_TIMEOUT": "20"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "drift-report.json").read_text())
    report["_text"] = (tmp_path / "drift-report.txt").read_text()
    return report


@pytest.mark.timeout(900)
def test_reconcile_reports_and_restores_drift_unless_frozen(lab, tmp_path: Path) -> None:
    (tmp_path / "policy.yml").write_text(POLICY)
    managed = tmp_path / "hosts" / "lab1" / "app.conf"

    first = _reconcile(lab, tmp_path, OPEN)  # a new fleet: everything is drift
    assert {h: r["action"] for h, r in first.items() if h != "_text"} == {
        "lab1": "restore",
        "lab2": "restore",
    }
    assert managed.read_text() == DESIRED
    clean = _reconcile(lab, tmp_path, OPEN)
    assert clean["lab1"] == {"drift": [], "action": "none", "why": "no drift"}

    managed.write_text("listen = 9999\n")  # a change by hand on lab1
    fixed = _reconcile(lab, tmp_path, OPEN)
    assert fixed["lab1"]["action"] == "restore"
    (drift,) = fixed["lab1"]["drift"]
    assert drift == {"resource": str(managed), "before": "listen = 9999\n", "after": DESIRED}
    assert fixed["lab2"]["drift"] == []
    assert "-- " + str(managed) in fixed["_text"] and "listen = 9999" in fixed["_text"]
    assert managed.read_text() == DESIRED

    managed.write_text("listen = 7777\n")
    frozen = _reconcile(lab, tmp_path, FROZEN)  # 25 December in New York: deny window open
    assert frozen["lab1"]["action"] == "blocked"
    assert "christmas" in frozen["lab1"]["why"]
    assert frozen["lab1"]["drift"][0]["before"] == "listen = 7777\n"
    assert managed.read_text() == "listen = 7777\n", "restored during a freeze"

    warned = _reconcile(lab, tmp_path, OPEN, mode="warn")
    assert warned["lab1"]["action"] == "report"
    assert managed.read_text() == "listen = 7777\n", "restored in warn mode"
