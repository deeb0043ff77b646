"""The selfheal.core.remediation_gate action plugin in a real ansible-playbook on localhost."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from support import REPO, ansible_bin, run_playbook

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which(ansible_bin("ansible-playbook")) is None, reason="no ansible-playbook"
    ),
]

PLAYBOOKS = REPO / "tests/integration/playbooks"

POLICY = {
    "version": 1,
    "compliance": {"required_tags": ["selfheal_managed"], "tag_vars": ["selfheal_managed"]},
    "services": {"demo": {"hosts": ["localhost"], "owner": "sre", "max_unhealthy": 1}},
    "runbooks": {
        "restart_service": {"playbook": "playbooks/service_restart.yml", "risk": "low"},
        "frozen_fix": {"playbook": "playbooks/fix.yml", "risk": "medium"},
        "rebuild": {
            "job_template": "Rebuild",
            "risk": "critical",
            "url": "https://runbooks.example.invalid/rebuild",
        },
        "pci_only": {"playbook": "playbooks/fix.yml", "risk": "low"},
    },
    "windows": [
        {
            "name": "always-frozen",
            "kind": "deny",
            "dates": ["01-01..12-31"],
            "runbooks": ["frozen_fix"],
        },
    ],
}


@pytest.fixture
def policy_env(tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump(POLICY))
    return {"SELFHEAL_POLICY": str(path), "SELFHEAL_STATE": str(tmp_path / "state.db")}


def test_gate_allows_refuses_and_branches(policy_env) -> None:
    result = run_playbook(PLAYBOOKS / "remediation_gate.yml", env=policy_env)
    assert result.returncode == 0, result.stdout + result.stderr
    recap = next(line for line in result.stdout.splitlines() if line.startswith("localhost"))
    assert "failed=0" in recap and "rescued=1" in recap


def test_refused_gate_stops_the_play(policy_env) -> None:
    result = run_playbook(
        PLAYBOOKS / "remediation_gate_refused.yml",
        extra_vars={"gate_runbook": "frozen_fix"},
        env=policy_env,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "RISKY STEP RAN" not in result.stdout
    assert "frozen_fix is deny for localhost" in result.stdout
    assert "freeze: deny window 'always-frozen' is active" in result.stdout


def test_allowed_gate_lets_the_step_run(policy_env) -> None:
    result = run_playbook(
        PLAYBOOKS / "remediation_gate_refused.yml",
        extra_vars={"gate_runbook": "restart_service"},
        env=policy_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RISKY STEP RAN" in result.stdout


def test_missing_compliance_tag_is_refused(policy_env, tmp_path) -> None:
    policy = json.loads(json.dumps(POLICY))
    policy["compliance"]["required_tags"].append("pci")
    path = tmp_path / "strict.yml"
    path.write_text(yaml.safe_dump(policy))
    result = run_playbook(
        PLAYBOOKS / "remediation_gate_refused.yml",
        extra_vars={"gate_runbook": "restart_service"},
        env={**policy_env, "SELFHEAL_POLICY": str(path)},
    )
    assert result.returncode == 2
    assert "compliance: target lacks required tags: pci" in result.stdout


def test_missing_policy_is_a_clear_failure(policy_env) -> None:
    result = run_playbook(
        PLAYBOOKS / "remediation_gate_refused.yml",
        extra_vars={"gate_runbook": "restart_service"},
        env={**policy_env, "SELFHEAL_POLICY": "/nonexistent/policy.yml"},
    )
    assert result.returncode == 2
    assert "cannot read policy" in result.stdout


def test_without_the_selfheal_package_the_failure_says_so(policy_env, tmp_path) -> None:
    # Shadow whatever selfheal is installed with one that cannot be imported.
    (tmp_path / "selfheal").mkdir()
    (tmp_path / "selfheal/__init__.py").write_text("raise ImportError('hidden by the test')\n")
    result = run_playbook(
        PLAYBOOKS / "remediation_gate_refused.yml",
        extra_vars={"gate_runbook": "restart_service"},
        env={**policy_env, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "needs the selfheal Python package on the controller" in result.stdout


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        ({}, {}, "local:"),  # the user running the play
        ({"awx_user_name": "carol"}, {}, "carol"),  # the AWX user who launched the job
        ({"awx_user_name": "carol"}, {"SELFHEAL_REQUESTER": "dave"}, "dave"),
    ],
)
def test_every_request_has_a_requester(policy_env, tmp_path, extra, env, expected) -> None:
    """A request without a requester could be approved by whoever raised it."""
    playbook = tmp_path / "ask.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Ask",
                            "selfheal.core.remediation_gate": {
                                "runbook": "restart_service",
                                "service": "demo",
                                "fail_on_deny": False,
                            },
                            "register": "gate",
                        },
                        {
                            "name": "Show",
                            "ansible.builtin.debug": {
                                "msg": "REQUESTER={{ gate.decision.requester }}"
                            },
                        },
                    ],
                }
            ]
        )
    )
    result = run_playbook(playbook, extra_vars=extra or None, env={**policy_env, **env})
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "REQUESTER=" in x)
    requester = line.split("REQUESTER=", 1)[1].strip().strip('"')
    if expected == "local:":
        assert requester.startswith("local:") and len(requester) > len("local:"), requester
    else:
        assert requester == expected
