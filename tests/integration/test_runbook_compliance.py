"""Every runbook refuses a host that lacks its compliance tags, even when a human runs its
playbook by hand with ansible-playbook: the role's compliance check fails the run first,
with the documented message, and nothing is changed.

The roles come from the catalog (`selfheal.catalog.load_catalog`), so a new runbook is
covered the day it declares itself. The host is the controller (local connection) with no
`selfheal_managed` variable; it declares a generic service, certificate, service group and
the like, so that the playbook reaches its role. A role that cannot be reached that way
must be listed in UNREACHABLE with the reason."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO, ansible_bin

from selfheal.catalog import load_catalog

pytestmark = pytest.mark.integration

MESSAGE = "not cleared for automated remediation"
# role -> why its playbook cannot be run here without more than generic variables.
UNREACHABLE: dict[str, str] = {}

ENTRIES = load_catalog()

# What the host declares: enough for each playbook to hand its request to the role.
HOST_VARS = {
    "ansible_connection": "local",
    "ansible_python_interpreter": sys.executable,
    "env": "test",
    "selfheal_services": {
        "web": {"manager": "supervisord", "health_checks": []},
        "postgres": {"manager": "supervisord", "port": 5432},
    },
    "selfheal_certs": {
        "web": {"path": "/nonexistent/web.crt", "privatekey_path": "/nonexistent/web.key"}
    },
    "selfheal_capacity": {"web": {"command": ["true"]}},
    "selfheal_k8s": {"workloads": {"web": {"namespace": "shop"}}},
}
EXTRA_VARS = {
    "target": "localhost",
    "service": "web",
    "cert": "web",
    "primary": "localhost",
    "replica": "replica",
}


def _inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    hosts = {"localhost": HOST_VARS, "replica": {**HOST_VARS, "selfheal_postgres_role": "replica"}}
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return path


def _run(playbook: Path, inventory: Path, extra: dict) -> str:
    result = subprocess.run(
        [
            ansible_bin("ansible-playbook"),
            "-i",
            str(inventory),
            "-e",
            json.dumps(extra),
            str(playbook),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )
    assert result.returncode != 0, f"{playbook.name} ran on a non-compliant host:\n{result.stdout}"
    return result.stdout


def _failed_task(stdout: str) -> str:
    """The header of the task that failed the run."""
    before = stdout.split("fatal: [", 1)[0]
    return before.rsplit("TASK [", 1)[1].split("]", 1)[0]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.role)
def test_runbook_refuses_a_host_without_its_compliance_tags(entry, tmp_path: Path) -> None:
    if entry.role in UNREACHABLE:
        pytest.skip(UNREACHABLE[entry.role])
    playbook = REPO / "playbooks" / entry.playbook
    stdout = _run(playbook, _inventory(tmp_path), {**EXTRA_VARS, "runbook": entry.runbook})
    assert MESSAGE in stdout, stdout
    assert "selfheal_managed" in stdout
    task = _failed_task(stdout)
    assert task.startswith(f"selfheal.core.{entry.role} : Refuse"), task
    assert "compliance" in task, task
    recaps = [line for line in stdout.splitlines() if re.match(r"^\S+\s+: ok=", line)]
    assert recaps and all(" changed=0 " in line for line in recaps), recaps
