"""The memory_relief role on localhost under a private supervisord: the biggest allowed
program is restarted (and verified), other programs and programs not on the allow-list are
never touched, check mode and a second run change nothing."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from support import REPO, run_playbook

from selfheal.supervisor import Program, Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("supervisord") is None, reason="supervisord is not installed"),
]

PLAYBOOK = REPO / "tests/integration/playbooks/role_memory_relief.yml"
# Holds 80 MiB (touched, so resident) while the flag file exists at start, else next to nothing.
HOG = "import os, sys, time\nhold = b'x' * (80 << 20) if os.path.exists(sys.argv[1]) else b''\ntime.sleep(3600)\n"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def programs(tmp_path: Path):
    flag = tmp_path / "hog.flag"
    flag.write_text("")
    (tmp_path / "hog.py").write_text(HOG)
    sup = Supervisor(tmp_path / "sv")
    sup.write_config(
        [
            Program("hog", f"{sys.executable} {tmp_path / 'hog.py'} {flag}"),
            Program("big", f"{sys.executable} {tmp_path / 'hog.py'} {flag}"),
            Program("small", f"{sys.executable} -c 'import time; time.sleep(3600)'"),
        ]
    )
    sup.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [sup.program_pid(n) for n in ("hog", "big", "small")]
        if all(pids) and _rss_mb(pids[0]) > 70 and _rss_mb(pids[1]) > 70:
            break
        time.sleep(0.3)
    flag.unlink()  # restarted programs come back small
    yield sup
    sup.stop()


def _service(sup: Supervisor, name: str) -> dict:
    return {
        "name": name,
        "manager": "supervisord",
        "supervisor_config": str(sup.config),
        "health_checks": [
            {"name": name, "kind": "command", "read_only": True,
             "argv": ["supervisorctl", "-c", str(sup.config), "status", name]}
        ],
    }  # fmt: skip


def _vars(sup: Supervisor, allowed=("hog", "small"), **extra) -> dict:
    return {
        "memory_relief_services": [_service(sup, n) for n in allowed],
        "memory_relief_min_available_percent": 0,
        "memory_relief_min_rss_mb": 50,
        "memory_relief_force": True,
        **extra,
    }


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def _pids(sup: Supervisor) -> dict[str, int | None]:
    return {n: sup.program_pid(n) for n in ("hog", "big", "small")}


def test_restarts_the_top_allowed_offender_once(programs: Supervisor) -> None:
    before = _pids(programs)
    dry = run_playbook(PLAYBOOK, extra_vars=_vars(programs), check=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "changed=0" not in _recap(dry.stdout)
    assert _pids(programs) == before

    first = run_playbook(PLAYBOOK, extra_vars=_vars(programs))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=1" in _recap(first.stdout)
    after = _pids(programs)
    assert after["hog"] != before["hog"] and programs.is_running("hog")
    assert after["small"] == before["small"]
    assert after["big"] == before["big"]  # as big, but not on the allow-list

    second = run_playbook(PLAYBOOK, extra_vars=_vars(programs))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in _recap(second.stdout)
    assert _pids(programs) == after


def test_no_pressure_means_nothing_is_done(programs: Supervisor) -> None:
    before = _pids(programs)
    result = run_playbook(PLAYBOOK, extra_vars=_vars(programs, memory_relief_force=False))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in _recap(result.stdout)
    assert _pids(programs) == before


def test_refuses_a_host_without_the_compliance_tags(programs: Supervisor) -> None:
    before = _pids(programs)
    extra = _vars(programs, memory_relief_required_tags={"env": "production"})
    result = run_playbook(PLAYBOOK, extra_vars=extra)
    assert result.returncode != 0
    assert "not cleared for automated remediation" in result.stdout
    assert _pids(programs) == before
