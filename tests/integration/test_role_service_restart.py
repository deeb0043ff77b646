"""The service_restart role on a real supervisord: heal when down, leave alone when
healthy (idempotence), change nothing in check mode, refuse non-compliant hosts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from support import REPO, run_playbook

from selfheal.supervisor import Program, Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("supervisord") is None, reason="supervisord is not installed"),
]

PLAYBOOK = REPO / "tests/integration/playbooks/service_restart.yml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def supervisor(tmp_path: Path):
    port = _free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www/index.html").write_text("ok\n")
    sup = Supervisor(tmp_path)
    sup.port = port
    command = f"{shutil.which('python3')} -m http.server {port} --bind 127.0.0.1 --directory {tmp_path}/www"
    sup.write_config([Program("web", command)])
    sup.start()
    # RUNNING, not just serving: supervisord itself retries a program killed while STARTING.
    assert _wait(lambda: _serving(port) and sup.is_running("web")), "web did not come up"
    yield sup
    sup.stop()


def _crash(sup: Supervisor) -> None:
    """Kill the program the way a crash would (supervisorctl stop would be a clean stop)."""
    os.kill(sup.program_pid("web"), signal.SIGKILL)
    assert _wait(lambda: not _serving(sup.port))
    assert _wait(lambda: not sup.is_running("web"))


def _vars(sup: Supervisor, **extra) -> dict:
    return {"supervisor_config": str(sup.config), "web_port": sup.port, **extra}


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def test_heals_a_crashed_program_and_verifies(supervisor: Supervisor) -> None:
    _crash(supervisor)
    result = run_playbook(PLAYBOOK, extra_vars=_vars(supervisor))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=1" in _recap(result.stdout)
    assert _serving(supervisor.port)
    assert supervisor.is_running("web")


def test_healthy_service_is_left_alone(supervisor: Supervisor) -> None:
    pid_before = supervisor.program_pid("web")
    result = run_playbook(PLAYBOOK, extra_vars=_vars(supervisor))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in _recap(result.stdout)
    assert supervisor.program_pid("web") == pid_before


def test_second_run_changes_nothing(supervisor: Supervisor) -> None:
    _crash(supervisor)
    first = run_playbook(PLAYBOOK, extra_vars=_vars(supervisor))
    second = run_playbook(PLAYBOOK, extra_vars=_vars(supervisor))
    assert first.returncode == 0 and second.returncode == 0, second.stdout
    assert "changed=1" in _recap(first.stdout)
    assert "changed=0" in _recap(second.stdout)


def test_check_mode_changes_nothing(supervisor: Supervisor) -> None:
    _crash(supervisor)
    result = run_playbook(PLAYBOOK, extra_vars=_vars(supervisor), check=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=1" in _recap(result.stdout)  # it says what it would do...
    assert not _serving(supervisor.port)  # ...and does not do it
    assert not supervisor.is_running("web")


def test_refuses_a_host_without_the_compliance_tags(supervisor: Supervisor) -> None:
    _crash(supervisor)
    result = run_playbook(
        PLAYBOOK, extra_vars=_vars(supervisor, service_restart_required_tags={"env": "production"})
    )
    assert result.returncode != 0
    assert "not cleared for automated remediation" in result.stdout
    assert "env" in result.stdout
    assert not _serving(supervisor.port)


CRASHLOOP = REPO / "tests/integration/playbooks/role_service_restart_crashloop.yml"


def test_crash_loop_stops_restarting_and_escalates(supervisor: Supervisor, tmp_path: Path) -> None:
    state_dir = tmp_path / "restarts"
    extra = _vars(supervisor, state_dir=str(state_dir))
    for _ in range(2):  # two crashes, two heals: within the limit of 2 restarts in 600s
        _crash(supervisor)
        healed = run_playbook(CRASHLOOP, extra_vars=extra)
        assert healed.returncode == 0, healed.stdout + healed.stderr
        assert "changed=1" in _recap(healed.stdout)
    history = next(state_dir.iterdir())
    assert history.stat().st_mode & 0o777 == 0o600
    _crash(supervisor)
    third = run_playbook(CRASHLOOP, extra_vars=extra, env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert third.returncode != 0
    assert "crash loop: 2 restarts in 600s; escalating" in third.stdout
    assert '"reason": "crash_loop"' in third.stdout  # the run artifact (set_stats)
    assert not supervisor.is_running("web")  # not restarted a third time


def test_check_mode_does_not_count_a_restart(supervisor: Supervisor, tmp_path: Path) -> None:
    state_dir = tmp_path / "restarts"
    _crash(supervisor)
    result = run_playbook(
        CRASHLOOP, extra_vars=_vars(supervisor, state_dir=str(state_dir)), check=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not state_dir.exists()
