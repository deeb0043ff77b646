"""The service_restart role on a real supervisord: heal when down, leave alone when
healthy (idempotence), change nothing in check mode, refuse non-compliant hosts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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


# --- service_restart_manager: process (a bare process, no service manager) ---------------

PROCESS_PLAYBOOK = """\
- name: Heal a bare process with the service_restart role
  hosts: localhost
  gather_facts: false
  roles:
    - role: selfheal.core.service_restart
      vars:
        service_restart_name: pyweb
        service_restart_manager: process
        service_restart_pidfile: "{{ pidfile }}"
        service_restart_process_match: "{{ match }}"
        service_restart_command: "{{ command }}"
        service_restart_process_log: "{{ log }}"
        service_restart_process_write_pidfile: "{{ write_pidfile }}"
        service_restart_process_stop_timeout: 2
        service_restart_state_dir: "{{ state_dir }}"
        service_restart_health_checks:
          - {name: pyweb, kind: http, url: "http://127.0.0.1:{{ port }}/", timeout: 1}
        service_restart_verify_attempts: 20
"""


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class BareProcess:
    """A web server the test starts itself (no supervisor), and every copy the role starts."""

    def __init__(self, tmp_path: Path):
        self.port = _free_port()
        self.www = tmp_path / "pyweb"
        self.www.mkdir()
        (self.www / "index.html").write_text("ok\n")
        self.pidfile = tmp_path / "pyweb.pid"
        self.log = tmp_path / "pyweb.log"
        self.command = [
            shutil.which("python3") or "python3", "-m", "http.server", str(self.port),
            "--bind", "127.0.0.1", "--directory", str(self.www),
        ]  # fmt: skip
        self.match = rf"http\.server {self.port} "
        self.state_dir = tmp_path / "restarts"
        self.playbook = tmp_path / "process.yml"
        self.playbook.write_text(PROCESS_PLAYBOOK)
        self.seen: set[int] = set()
        self.first = subprocess.Popen(
            self.command,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pidfile.write_text(f"{self.first.pid}\n")
        self.seen.add(self.first.pid)
        assert _wait(lambda: _serving(self.port)), "the test's process did not come up"

    def pid(self) -> int:
        pid = int(self.pidfile.read_text().strip())
        self.seen.add(pid)
        return pid

    def crash(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        if pid == self.first.pid:
            self.first.wait(timeout=10)
        assert _wait(lambda: not _pid_alive(pid))
        assert _wait(lambda: not _serving(self.port))

    def vars(self, **extra) -> dict:
        return {
            "pidfile": str(self.pidfile), "match": self.match, "command": self.command,
            "log": str(self.log), "write_pidfile": True, "port": self.port,
            "state_dir": str(self.state_dir), **extra,
        }  # fmt: skip

    def stop(self) -> None:
        # Only processes this test started or saw the role start for it, checked by command line.
        for pid in self.seen:
            if _pid_alive(pid) and self.match.replace("\\", "") in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        if self.first.poll() is None:
            self.first.wait(timeout=10)


@pytest.fixture
def bare(tmp_path: Path):
    proc = BareProcess(tmp_path)
    yield proc
    proc.stop()


def test_process_crashed_is_restarted_detached_and_verified(bare: BareProcess) -> None:
    bare.crash()
    old = bare.pid()
    result = run_playbook(bare.playbook, extra_vars=bare.vars())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=1" in _recap(result.stdout)
    new = bare.pid()
    assert new != old and _pid_alive(new)
    # Detached: another session than the playbook's, and a process group of its own.
    assert os.getsid(new) != os.getsid(0)
    assert os.getpgid(new) == new
    assert _serving(bare.port)
    assert "GET / HTTP" in bare.log.read_text()  # its output went to the log


def test_healthy_process_is_left_alone_and_second_run_changes_nothing(bare: BareProcess) -> None:
    bare.crash()
    first = run_playbook(bare.playbook, extra_vars=bare.vars())
    pid = bare.pid()
    second = run_playbook(bare.playbook, extra_vars=bare.vars())
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
    assert "changed=1" in _recap(first.stdout)
    assert "changed=0" in _recap(second.stdout)
    assert bare.pid() == pid and _pid_alive(pid)


def test_process_check_mode_starts_nothing(bare: BareProcess) -> None:
    bare.crash()
    old = bare.pid()
    result = run_playbook(bare.playbook, extra_vars=bare.vars(), check=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=1" in _recap(result.stdout)
    assert "would restart" in result.stdout
    assert bare.pid() == old
    assert not _serving(bare.port)
    assert not bare.state_dir.exists()


def test_hung_process_found_by_command_line_is_replaced(bare: BareProcess) -> None:
    """No pidfile: the process is found by its command line; stopped (SIGSTOP) it holds its
    port but answers nothing, so the checks fail and the role kills and restarts it."""
    hung = bare.first.pid
    bare.pidfile.unlink()
    os.kill(hung, signal.SIGSTOP)
    assert _wait(lambda: not _serving(bare.port))
    result = run_playbook(
        bare.playbook, extra_vars=bare.vars(pidfile="", write_pidfile=False), timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=1" in _recap(result.stdout)
    bare.first.wait(timeout=10)  # the hung one was killed (after the stop timeout)
    assert _serving(bare.port)
    assert not bare.pidfile.exists()  # write_pidfile false: no pidfile written
    bare.seen.update(
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and bare.match.replace("\\", "") in _cmdline(int(p))
    )


def test_process_without_a_command_is_refused(bare: BareProcess) -> None:
    bare.crash()
    result = run_playbook(bare.playbook, extra_vars=bare.vars(command=[]))
    assert result.returncode != 0
    assert "needs service_restart_pidfile or service_restart_process_match" in result.stdout
    assert not _serving(bare.port)
