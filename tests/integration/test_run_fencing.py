"""Runs are fenced: a run's attempt never outlives the dispatcher that owns it.

A dispatcher started with SIGHUP ignored (as `nohup` and many supervisors start it) is
killed with SIGKILL while a run executes and started again: the attempt it left behind must
be stopped before the run is retried, so the two attempts never overlap and the effect
happens once. And a dispatcher that is merely slow (stopped for longer than its lease) loses
its attempt: the attempt's guard kills it when the lease is not renewed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from integration.crash_harness import (
    TARGETS,
    alert_body,
    lab_processes,
    log_lines,
    make_lab,
    post,
    reap,
    started,
    violations,
    wait_settled,
)
from unit.dispatcher.helpers import Server, free_port

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_killed_dispatcher_does_not_leave_its_run_running(tmp_path: Path) -> None:
    # each attempt ticks for 6 s: the orphan of the killed dispatcher (if it survives) is
    # still at work when the restarted one retries the run
    lab = make_lab(tmp_path, ticks=60, window=0.5, lease_s=30, workers=1)
    try:
        lab.server.start()
        assert post(lab, alert_body(0, 0, TARGETS[0]))
        assert _wait(lambda: started(lab) == 1, 30), (tmp_path / "serve.log").read_text()[-2000:]
        time.sleep(1.0)
        lab.server.kill_dispatcher()
        lab.server.start()
        assert wait_settled(lab, 60), (tmp_path / "serve.log").read_text()[-3000:]
        assert violations(lab) == []
        starts = [p for p in log_lines(lab) if p[0] == "start"]
        assert len(starts) == 2  # the interrupted attempt and its retry
    finally:
        left = reap(lab)
    assert left == [], "the dispatcher or its runs were still running"


def test_stopped_dispatcher_loses_its_attempt(tmp_path: Path) -> None:
    """SIGSTOP for longer than the lease: the guard kills the attempt on its own."""
    lab = make_lab(tmp_path, ticks=80, window=0.2, lease_s=3, workers=1)
    try:
        lab.server.start()
        assert post(lab, alert_body(0, 0, TARGETS[0]))
        assert _wait(lambda: started(lab) == 1, 30), (tmp_path / "serve.log").read_text()[-2000:]
        assert lab.server.proc is not None
        os.kill(lab.server.proc.pid, signal.SIGSTOP)
        try:
            # the attempt is killed once its lease (3 s, renewed every second) runs out
            assert _wait(
                lambda: not [p for p in lab_processes(lab.instance) if p != lab.server.proc.pid],
                30,
            ), "the attempt outlived its lease"
            # cut short: the attempt would tick for 8 s, then end
            assert [p for p in log_lines(lab) if p[0] in ("effect", "end")] == []
        finally:
            os.kill(lab.server.proc.pid, signal.SIGCONT)
        assert wait_settled(lab, 60), (tmp_path / "serve.log").read_text()[-3000:]
        assert violations(lab) == []
        assert sum(1 for p in log_lines(lab) if p[0] == "start") == 2
    finally:
        left = reap(lab)
    assert left == [], "the dispatcher or its runs were still running"


def test_a_replica_takes_over_from_a_stopped_one(tmp_path: Path) -> None:
    """Two dispatchers on one store: the one running the run is stopped for longer than its
    lease; the other recovers the run, finds the attempt fenced (its guard killed it, or the
    taker does), and runs it again; the stopped one, continued, changes nothing."""
    lab = make_lab(tmp_path, ticks=80, window=0.2, lease_s=3, workers=1)
    config = yaml.safe_load(lab.server.config.read_text())
    port = free_port()
    replica = {**config, "listen": f"127.0.0.1:{port}", "instance": f"{lab.instance}-b"}
    (tmp_path / "replica.yml").write_text(yaml.safe_dump(replica))
    other = Server(tmp_path / "replica.yml", port, tmp_path / "replica.log", ignore_sighup=True)
    stopped = False
    try:
        lab.server.start()
        assert post(lab, alert_body(0, 0, TARGETS[0]))
        assert _wait(lambda: started(lab) == 1, 30), (tmp_path / "serve.log").read_text()[-2000:]
        assert lab.server.proc is not None
        os.kill(lab.server.proc.pid, signal.SIGSTOP)
        stopped = True
        other.start()
        assert wait_settled(lab, 60), (tmp_path / "replica.log").read_text()[-3000:]
        os.kill(lab.server.proc.pid, signal.SIGCONT)
        stopped = False
        # the continued dispatcher finds its attempt gone and its lease lost
        assert _wait(lambda: "lease lost" in (tmp_path / "serve.log").read_text(), 30)
        assert violations(lab) == []
        assert sum(1 for p in log_lines(lab) if p[0] == "start") == 2
        with contextlib.closing(lab.db()) as db:
            [(status, worker, attempts)] = db.execute(
                "SELECT status, worker_id, attempts FROM runs"
            ).fetchall()
        assert (status, attempts) == ("succeeded", 2)
        assert worker.startswith(f"{lab.instance}-b/")
    finally:
        if stopped and lab.server.proc is not None:
            os.kill(lab.server.proc.pid, signal.SIGCONT)
        with contextlib.suppress(Exception):
            other.kill()
        left = reap(lab, replica["instance"])
    assert left == [], "the dispatchers or their runs were still running"
