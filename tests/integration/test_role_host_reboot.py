"""playbooks/heal_reboot.yml with the host_reboot role, in check mode and through its guards
only -- this machine is never rebooted: the local-connection guard, the policy gate (blast
radius, approval), the per-group lock (held, stale), the need test, compliance."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from support import REPO, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "playbooks/heal_reboot.yml"


@pytest.fixture
def env(tmp_path: Path) -> dict:
    policy = {
        "version": 1,
        "compliance": {"required_tags": ["selfheal_managed"], "tag_vars": ["selfheal_managed"]},
        "services": {
            "demo": {"hosts": ["localhost"], "owner": "sre", "max_unhealthy": 1},
            "tight": {"hosts": ["localhost"], "owner": "sre", "max_unhealthy": 0},
        },
        "runbooks": {"reboot_host": {"playbook": "heal_reboot.yml", "risk": "high"}},
        "risk_tiers": {"high": {"mode": "approval", "approval": {"users": ["alice"]}}},
    }
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump(policy))
    return {
        "SELFHEAL_POLICY": str(path),
        "SELFHEAL_STATE": str(tmp_path / "state.db"),
        "locks": str(tmp_path / "locks"),
    }


def _run(env: dict, check: bool = True, **extra):
    extra_vars = {
        "target": "localhost",
        "force": True,
        "selfheal_decision": "approved",
        "selfheal_reboot": {"service": "demo", "group": "local"},
        "host_reboot_lock_dir": env["locks"],
        **extra,
    }
    policy_env = {k: v for k, v in env.items() if k.startswith("SELFHEAL_")}
    return run_playbook(PLAYBOOK, extra_vars=extra_vars, check=check, env=policy_env)


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def test_check_mode_reports_the_reboot_and_takes_no_lock(env) -> None:
    result = _run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" not in _recap(result.stdout)
    assert "Reboot the host" in result.stdout
    assert not Path(env["locks"]).exists()


def test_nothing_needed_means_nothing_done(env, tmp_path: Path) -> None:
    result = _run(env, force=False, host_reboot_required_file=str(tmp_path / "no-such-marker"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in _recap(result.stdout)


def test_a_reboot_required_marker_means_needed(env, tmp_path: Path) -> None:
    marker = tmp_path / "reboot-required"
    marker.write_text("")
    result = _run(env, force=False, host_reboot_required_file=str(marker))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" not in _recap(result.stdout)


def test_never_reboots_the_controller(env) -> None:
    result = _run(env, check=False)
    assert result.returncode != 0
    assert "refusing to reboot localhost: it is reached over a local connection" in result.stdout
    assert not Path(env["locks"]).exists()


def test_a_lock_held_by_another_host_refuses(env) -> None:
    locks = Path(env["locks"])
    locks.mkdir()
    (locks / "local.lock").write_text(json.dumps({"host": "web-02", "since": int(time.time())}))
    result = _run(env)
    assert result.returncode != 0
    assert "the reboot lock of group local is held by web-02" in result.stdout
    assert "one host of a group at a time" in result.stdout


def test_a_stale_lock_is_taken_over(env) -> None:
    locks = Path(env["locks"])
    locks.mkdir()
    stale = {"host": "web-02", "since": int(time.time()) - 7200}
    (locks / "local.lock").write_text(json.dumps(stale))
    result = _run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((locks / "local.lock").read_text()) == stale  # check mode writes nothing


def test_the_policy_blast_radius_refuses(env) -> None:
    result = _run(env, selfheal_reboot={"service": "tight", "group": "local"})
    assert result.returncode != 0
    assert "the policy decision is deny" in result.stdout
    assert "blast_radius" in result.stdout


def test_approval_is_required(env) -> None:
    result = _run(env, selfheal_decision="auto")
    assert result.returncode != 0
    assert "the policy decision is approval" in result.stdout


def test_refuses_a_host_without_the_compliance_tags(env) -> None:
    result = _run(env, host_reboot_required_tags={"env": "production"})
    assert result.returncode != 0
    assert "not cleared for automated remediation" in result.stdout
