"""The run guard and the taking side of run fencing (selfheal.dispatcher.fence)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from unit.dispatcher.helpers import TOKEN, am_alert, am_body, wait_for

from selfheal.dispatcher import fence
from selfheal.store import SQLiteStore

# An attempt like Ansible's: the command forks a worker that calls setsid() (leaving the
# guard's process group, as Ansible's WorkerProcess does), and the worker starts a task.
FORKER = textwrap.dedent(
    """
    import os, sys, time
    out = sys.argv[1]
    pid = os.fork()
    if pid == 0:
        os.setsid()
        task = os.fork()
        if task == 0:
            time.sleep(120)
            os._exit(0)
        with open(out + ".tmp", "w") as fh:
            fh.write(f"{os.getpid()} {task}")
        os.rename(out + ".tmp", out)
        time.sleep(120)
        os._exit(0)
    time.sleep(120)
    """
)


def _guard(fence_dir: Path, command: list[str], token: str) -> subprocess.Popen:
    return subprocess.Popen(
        fence.guard_command(fence_dir, command),
        env={**os.environ, fence.ATTEMPT_ENV: token},
        start_new_session=True,  # as ansible-runner starts it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _running(pid: int) -> bool:
    fields = fence._stat(pid)
    return bool(fields) and fields[0] not in "ZX"


def _cleanup(guard: subprocess.Popen | None, pids: list[int]) -> None:
    if guard is not None:
        with contextlib.suppress(OSError):
            os.killpg(guard.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            guard.wait(10)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _children(out: Path) -> list[int]:
    return [int(p) for p in out.read_text().split()] if out.exists() else []


def test_guard_refuses_an_expired_lease(tmp_path: Path) -> None:
    private = fence.prepare(tmp_path, "run-1-1-", time.time() - 1)
    marker = tmp_path / "ran"
    guard = _guard(
        private / fence.FENCE_DIR,
        [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
        "t1",
    )
    assert guard.wait(60) == fence.EXIT_FENCED
    assert not marker.exists()
    [ident] = fence.identities(private / fence.FENCE_DIR)  # written before it looked
    assert ident["pid"] == guard.pid and ident["pgid"] == guard.pid and ident["token"] == "t1"


def test_guard_refuses_a_revoked_attempt(tmp_path: Path) -> None:
    private = fence.prepare(tmp_path, "run-1-1-", time.time() + 600)
    assert fence.revoke(private / fence.FENCE_DIR, "taken over")
    marker = tmp_path / "ran"
    guard = _guard(
        private / fence.FENCE_DIR, [sys.executable, "-c", f"open({str(marker)!r}, 'w')"], "t"
    )
    assert guard.wait(60) == fence.EXIT_FENCED
    assert not marker.exists()


def test_guard_runs_the_command_under_a_live_lease(tmp_path: Path) -> None:
    private = fence.prepare(tmp_path, "run-1-1-", time.time() + 600)
    guard = _guard(private / fence.FENCE_DIR, [sys.executable, "-c", "raise SystemExit(3)"], "t")
    assert guard.wait(60) == 3
    exited = private / fence.FENCE_DIR / f"{fence.EXITED_PREFIX}{guard.pid}"
    assert exited.read_text().strip() == "3"


def test_guard_kills_the_whole_attempt_when_its_lease_is_not_renewed(tmp_path: Path) -> None:
    fence_dir = fence.prepare(tmp_path, "run-1-1-", time.time() + 600) / fence.FENCE_DIR
    out = tmp_path / "pids"
    guard = None
    try:
        guard = _guard(fence_dir, [sys.executable, "-c", FORKER, str(out)], "tok-lease")
        wait_for(out.exists, timeout=30)
        worker, task = _children(out)
        assert os.getpgid(worker) != guard.pid  # out of the guard's group, like Ansible's
        assert guard.poll() is None  # the lease holds: it runs
        fence.write_lease(fence_dir, time.time() - 1)  # no renewal: the lease ran out
        assert guard.wait(60) == fence.EXIT_FENCED
        wait_for(lambda: not _running(worker) and not _running(task), timeout=30)
        assert "fenced (lease expired)" in (fence_dir / "guard.log").read_text()
    finally:
        _cleanup(guard, _children(out))


def test_taker_stops_a_running_attempt_on_this_host(tmp_path: Path) -> None:
    private = fence.prepare(tmp_path, "run-1-1-", time.time() + 600)
    fence_dir = private / fence.FENCE_DIR
    out = tmp_path / "pids"
    guard = None
    try:
        guard = _guard(fence_dir, [sys.executable, "-c", FORKER, str(out)], "tok-taker")
        wait_for(out.exists, timeout=30)
        worker, task = _children(out)
        # what the store holds before the guard's own record: the private data dir
        process = {**fence.host(), "private_data_dir": str(private), "token": "tok-taker"}
        assert fence.stop_attempt(process, "taken over") == "stopped"
        assert guard.wait(10) is not None
        assert not _running(worker) and not _running(task)
        assert fence.revoked(fence_dir)
    finally:
        _cleanup(guard, _children(out))


def test_taker_leaves_what_a_finished_playbook_started(tmp_path: Path) -> None:
    """A playbook that ended on its own: what it left running is its effect, not an attempt."""
    private = fence.prepare(tmp_path, "run-1-1-", time.time() + 600)
    daemon = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, fence.ATTEMPT_ENV: "tok-done"},
        start_new_session=True,
    )
    try:
        guard = _guard(private / fence.FENCE_DIR, [sys.executable, "-c", "pass"], "tok-done")
        assert guard.wait(60) == 0
        process = {**fence.host(), "private_data_dir": str(private), "token": "tok-done"}
        assert fence.stop_attempt(process, "taken over") == "stopped"
        assert daemon.poll() is None
    finally:
        daemon.kill()
        daemon.wait(10)


def test_taker_cannot_reach_another_host() -> None:
    here = fence.host()
    assert fence.stop_attempt({"host": here["host"] + "-other", "pgid": 1}, "x") == "elsewhere"
    # the same host booted since: nothing of the attempt runs
    rebooted = {"host": here["host"], "boot_id": "not-this-boot", "pgid": 12345}
    assert fence.stop_attempt(rebooted, "x") == "stopped"


def test_a_reused_pid_is_not_the_attempts_group() -> None:
    me = fence.identity()
    assert os.getpid() in fence.attempt_members({**me, "pgid": os.getpgrp(), "start_ticks": None})
    group = {"pgid": os.getpgrp(), "start_ticks": fence.start_ticks(os.getpgrp())}
    assert os.getpid() in fence.attempt_members(group)
    if group["start_ticks"] is not None:  # the leader's pid now names another process
        stale = {**group, "start_ticks": group["start_ticks"] + 1}
        assert fence.attempt_members(stale) == []


def test_recovery_waits_out_an_attempt_on_another_host(
    make_dispatcher, env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its guard there kills it when the lease runs out: the retry waits for lease + grace."""
    d, client = make_dispatcher(workers=0)
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    wait_for(lambda: d.store.list_runs(status="queued"))
    d.stop()
    with SQLiteStore(env["tmp"] / "state/selfheal.db") as store:
        run = store.claim_next_run("replica/w0", 0.2)
        assert run is not None
        elsewhere = {"host": "another-host", "boot_id": "b", "pid": 7, "pgid": 7}
        assert store.set_run_process(run.id, "replica/w0", 1, {**elsewhere, "token": "t"})
        wait_for(lambda: time.time() > run.lease_expires_at.timestamp())
    monkeypatch.setattr(fence, "TAKEOVER_GRACE_S", 3600.0)
    d2, _ = make_dispatcher(workers=0)
    assert [r.id for r in d2.store.list_runs(status="interrupted")] == [run.id]
    assert d2.store.list_runs(status="queued") == []  # not retried while it may still run
    monkeypatch.setattr(fence, "TAKEOVER_GRACE_S", 0.0)
    wait_for(lambda: d2.store.list_runs(status="queued"), timeout=30)  # the next tick


def test_sweep_kills_what_left_a_canceled_attempts_group(tmp_path: Path) -> None:
    """ansible-runner's cancel kills the guard's group; Ansible's workers left it."""
    out = tmp_path / "pids"
    leader = subprocess.Popen(
        [sys.executable, "-c", FORKER, str(out)],
        env={**os.environ, fence.ATTEMPT_ENV: "tok-sweep"},
        start_new_session=True,
    )
    try:
        wait_for(out.exists, timeout=30)
        worker, task = _children(out)
        os.killpg(leader.pid, signal.SIGKILL)  # what ansible-runner's cancel does
        leader.wait(10)
        assert _running(worker) and _running(task)
        assert fence.sweep("tok-sweep")
        assert not _running(worker) and not _running(task)
    finally:
        _cleanup(None, [leader.pid, *_children(out)])


def test_an_attempt_that_is_no_longer_current_spawns_nothing(make_dispatcher, env) -> None:
    d, client = make_dispatcher(workers=0)
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    wait_for(lambda: d.store.list_runs(status="queued"))
    run = d.store.claim_next_run("test/w0", 600)
    assert run is not None
    d.store.recover_interrupted(worker_id="test/w0")  # taken over before the spawn
    d._execute(run, "test/w0")
    [private] = (env["tmp"] / "state/runs").glob(f"run-{run.id}-1-*")
    assert fence.revoked(private / fence.FENCE_DIR)
    assert fence.identities(private / fence.FENCE_DIR) == []  # no guard ever started
    assert not env["marker"].exists()
    after = d.store.get_run(run.id)
    assert after is not None and after.attempts == 1 and after.status != "failed"


def test_a_child_that_fails_before_its_exec_never_goes_on_as_the_dispatcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pexpect forks, then sets up the pty before its exec; when the dispatcher was killed
    meanwhile the pty hung up and that raises in the child, which would unwind into the
    dispatcher's code and carry on as a second dispatcher (holding its port and store)."""
    import types

    import ansible_runner

    from selfheal.dispatcher.execute import execute

    children: list[int] = []

    def run(**_kwargs):
        pid = os.fork()
        if pid == 0:
            raise OSError(5, "Input/output error")  # as the child's pty setup does
        children.append(pid)
        return types.SimpleNamespace(events=[], status="failed", rc=1, stats={})

    monkeypatch.setattr(ansible_runner, "run", run)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost: {ansible_connection: local}\n")
    me = os.getpid()
    try:
        result = execute(tmp_path / "none.yml", inventory, extravars={}, base_dir=tmp_path / "runs")
    finally:
        if os.getpid() != me:  # got out of execute(): the test's own net
            os._exit(99)
    assert result.status == "failed"
    [child] = children
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 127  # it ended there, in execute()
