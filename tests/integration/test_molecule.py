"""The molecule scenarios (molecule/service, molecule/host, molecule/database) for real:
`molecule test -s NAME` brings up a lab of the scenario's own (create = `selfheal lab up`),
breaks something (prepare), converges the roles over SSH, proves idempotence (the second
converge changes nothing), verifies and destroys the lab. Whatever happens, the finalizer
runs `selfheal lab down` and the test checks that no namespace of the lab is left."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import COLLECTIONS, REPO, ansible_bin

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TAG = os.getpid() % 250  # runs side by side get their own namespaces, bridges and subnets
# scenario -> the SELFHEAL_LAB_INDEX its molecule.yml sets (see molecule/shared/templates)
SCENARIOS = {"service": 1, "host": 2, "database": 3}
SEQUENCE = ("syntax", "create", "prepare", "converge", "idempotence", "verify", "destroy")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\]8;;[^\x1b]*\x1b\\")


def _missing(scenario: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root (the lab's network namespaces)"
    if not Path(ansible_bin("molecule")).exists() and shutil.which("molecule") is None:
        return "molecule is not installed (pip install molecule)"
    for tool in ("supervisord", "supervisorctl", "ssh", "ssh-keygen", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        return "sshd is not installed"
    if scenario == "database" and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "PostgreSQL is not installed"
    return None


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def _recap_before(text: str, marker: str) -> str:
    """The last PLAY RECAP printed before `marker` (the step's own recap)."""
    return text.split(marker, 1)[0].rsplit("PLAY RECAP", 1)[1]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_molecule_scenario(scenario: str) -> None:
    if reason := _missing(scenario):
        pytest.skip(reason)
    index = SCENARIOS[scenario]
    state_dir = f"/tmp/shm{TAG}-{index}"
    env = {
        **os.environ,
        "SELFHEAL_MOLECULE_TAG": str(TAG),
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    molecule = ansible_bin("molecule")
    try:
        result = subprocess.run(
            [molecule, "test", "-s", scenario],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream: the step logs and the recaps in order
            text=True,
            timeout=420,
            cwd=REPO,
            env=env,
            check=False,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "selfheal.cli", "lab", "down", "--state-dir", state_dir],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )
    text = ANSI.sub("", result.stdout)
    assert result.returncode == 0, text[-6000:]
    for step in SEQUENCE:
        assert f"{scenario} > {step}: Executed: Successful" in text, step  # the summary
    # The converge did something (prepare broke it) and the second one nothing.
    converge = _recap_before(text, f"[{scenario} > converge] Executed")
    assert re.search(r"lab\d+\s+: ok=\d+\s+changed=[1-9]", converge), converge
    idempotence = _recap_before(text, f"[{scenario} > idempotence] Executed")
    assert re.search(r"lab\d+\s+: ok=\d+\s+changed=0\b", idempotence), idempotence
    # The roles came from the working tree, not from a copy installed elsewhere.
    for used in re.findall(r"only the first one will be used, \S+ \(([^)]+)\)", text):
        assert used == str(COLLECTIONS), used
    assert _namespaces(f"shm{TAG}x{index}-") == []  # destroy left nothing behind
    assert not Path(state_dir).exists()
