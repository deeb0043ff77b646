"""The selfheal.core.audit callback and audit_event action in real ansible-playbook runs:
every task on every host recorded exactly once, even with 8 playbooks appending to one
trail at the same time; the trail verifies; secrets stay out; a broken trail never breaks
the play and its records are spooled and appended later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import REPO, run_playbook

from selfheal.audit import Keyring, iter_records, verify

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "tests/integration/playbooks/audit_tasks.yml"
HOSTS = ("h1", "h2")
TASKS = (
    "Say ok",
    "Change something",
    "Skip this",
    "Fail but carry on",
    "Loop over items",
    "Handle a secret",
    "Write a file with a diff",
    "Record an approval",
)
KEYS = "k1:" + "ab" * 32


def _inventory(tmp_path: Path) -> Path:
    lines = ["[audit_hosts]"]
    lines += [
        f"{h} ansible_connection=local ansible_python_interpreter={sys.executable}" for h in HOSTS
    ]
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(
    tmp_path: Path,
    trail: Path,
    run_id: str,
    extra_env: dict | None = None,
    event: bool = True,
):
    scratch = tmp_path / "scratch" / run_id
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        "ANSIBLE_CALLBACKS_ENABLED": "selfheal.core.audit",
        "SELFHEAL_AUDIT_TRAIL": str(trail),
        "SELFHEAL_AUDIT_KEYS": KEYS,
        "SELFHEAL_RUN_ID": run_id,
        "SELFHEAL_INCIDENT_ID": "INC-7",
        "SELFHEAL_DISPATCHER": "selfheal-dispatcher",
        "ANSIBLE_FORKS": "2",
        **(extra_env or {}),
    }
    return run_playbook(
        PLAYBOOK,
        "-i",
        str(_inventory(tmp_path)),
        "--diff",
        extra_vars={
            "audit_scratch": str(scratch),
            "selfheal_runbook": "restart-nginx",
            "selfheal_decision": "auto",
            "audit_event_enabled": event,
        },
        env=env,
    )


def _keyring() -> Keyring:
    return Keyring.from_env_value(KEYS)


def test_one_run_records_every_task_once(tmp_path):
    trail = tmp_path / "trail"
    proc = _run(tmp_path, trail, "run-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = verify(trail, _keyring())
    assert report.ok, report.problem
    records = list(iter_records(trail))
    actions = Counter(r["action"] for r in records)
    assert actions["play.start"] == 1 and actions["play.end"] == 1
    assert actions["playbook.end"] == 1
    assert actions["approval.granted"] == len(HOSTS)
    tasks = [r for r in records if r["action"] == "task"]
    assert Counter((r["target"], r["data"]["task"]) for r in tasks) == Counter(
        {(h, t): 1 for h in HOSTS for t in TASKS}
    )
    status = {(r["target"], r["data"]["task"]): r["outcome"] for r in tasks}
    assert status["h1", "Say ok"] == "ok"
    assert status["h1", "Change something"] == "changed"
    assert status["h1", "Skip this"] == "skipped"
    assert status["h1", "Fail but carry on"] == "failed"
    assert status["h2", "Write a file with a diff"] == "changed"
    for r in records:
        assert r["incident_id"] == "INC-7"
        assert r["run_id"] == "run-1"
        assert r["actor"]["dispatcher"] == "selfheal-dispatcher"
    task = next(r for r in tasks if r["data"]["task"] == "Say ok")
    assert task["decision"] == "auto" and task["data"]["runbook"] == "restart-nginx"
    diff = next(r for r in tasks if r["data"]["task"] == "Write a file with a diff")
    assert "diff" in diff["data"] and "listen=8080" in json.dumps(diff["data"]["diff"])
    secret = next(r for r in tasks if r["data"]["task"] == "Handle a secret")
    assert secret["data"]["no_log"] is True
    raw = b"".join(p.read_bytes() for p in sorted(trail.glob("audit-*.jsonl"))).decode()
    assert "Sup3rS3cretValue" not in raw and "abcdef123456" not in raw


def test_eight_concurrent_playbooks_one_trail(tmp_path):
    trail = tmp_path / "trail"
    runs = [f"run-{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        procs = list(pool.map(lambda r: _run(tmp_path, trail, r), runs))
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = verify(trail, _keyring())
    assert report.ok, report.problem
    records = list(iter_records(trail))
    tasks = Counter(
        (r["run_id"], r["target"], r["data"]["task"]) for r in records if r["action"] == "task"
    )
    assert tasks == Counter({(run, h, t): 1 for run in runs for h in HOSTS for t in TASKS})
    assert Counter(r["action"] for r in records)["playbook.end"] == 8
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))


def test_unwritable_trail_warns_spools_and_recovers(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the trail directory should be")
    spool = tmp_path / "spool"
    proc = _run(tmp_path, blocked, "run-spool", {"SELFHEAL_AUDIT_SPOOL": str(spool)}, event=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "selfheal.core.audit" in proc.stderr
    spooled = list(spool.glob("*.json"))
    task_events = len(HOSTS) * len(TASKS)
    assert len(spooled) >= task_events  # + play.start/end, playbook.end
    # the next run, with a writable trail and the same spool, appends them first
    trail = tmp_path / "trail"
    proc = _run(tmp_path, trail, "run-next", {"SELFHEAL_AUDIT_SPOOL": str(spool)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(spool.glob("*.json")) == []
    records = list(iter_records(trail))
    assert sum(r["run_id"] == "run-spool" and r["action"] == "task" for r in records) == (
        task_events
    )
    assert verify(trail, _keyring()).ok


def test_callback_disabled_without_the_package(tmp_path):
    """Without `selfheal` importable the callback warns, disables itself, the play runs."""
    trail = tmp_path / "trail"
    shadow = tmp_path / "shadow" / "selfheal"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('selfheal hidden for this test')\n")
    env = {"PYTHONPATH": str(shadow.parent)}
    proc = _run(tmp_path, trail, "run-nopkg", env)
    assert proc.returncode != 0 or "selfheal" in proc.stderr
    assert "not installed" in proc.stderr
    assert not trail.exists()


def test_cli_verify_and_show_on_a_real_run(tmp_path):
    trail = tmp_path / "trail"
    assert _run(tmp_path, trail, "run-cli").returncode == 0
    env = {**os.environ, "SELFHEAL_AUDIT_KEYS": KEYS}
    cli = [sys.executable, "-m", "selfheal.cli"]
    out = subprocess.run(
        [*cli, "audit", "verify", str(trail)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and "INTACT" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(
        [*cli, "audit", "show", str(trail), "--target", "h1", "--action", "task"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0
    assert out.stdout.count("\n") == len(TASKS) + 1
