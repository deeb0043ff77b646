"""The fault playbooks: syntax-check clean, ansible-lint clean (production profile), and
they refuse a target that is not a host of a lab inventory before touching anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import REPO, ansible_bin

pytestmark = pytest.mark.integration

CHAOS = REPO / "playbooks" / "chaos"
FAULT_PLAYBOOKS = sorted(p for p in CHAOS.glob("*.yml") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory) -> Path:
    from selfheal.lab import render
    from selfheal.lab.plan import LabSpec

    state = tmp_path_factory.mktemp("inv")
    spec = LabSpec(state_dir=state, hosts=2, mode="loopback", subnet="127.73.0.0/24")
    spec.inventory.parent.mkdir(parents=True)
    spec.inventory.write_text(yaml.safe_dump(render.inventory(spec)))
    return spec.inventory


def test_there_are_fault_playbooks() -> None:
    names = {p.stem for p in FAULT_PLAYBOOKS}
    assert names >= {
        "kill_service",
        "stop_service",
        "crashloop_service",
        "fill_disk",
        "hog_cpu",
        "netem",
        "partition",
        "expire_cert",
    }


@pytest.mark.parametrize("playbook", FAULT_PLAYBOOKS, ids=lambda p: p.stem)
def test_syntax_check(playbook: Path, lab_inventory: Path) -> None:
    proc = subprocess.run(
        [
            ansible_bin("ansible-playbook"),
            "--syntax-check",
            "-i",
            str(lab_inventory),
            "-e",
            "target=lab1",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(600)
def test_ansible_lint_production_profile() -> None:
    lint = shutil.which("ansible-lint") or ansible_bin("ansible-lint")
    if not Path(lint).exists() and shutil.which(lint) is None:
        pytest.skip("ansible-lint is not installed")
    proc = subprocess.run(
        [lint, "--profile", "production", "playbooks/chaos"],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("target", ["localhost", "lab9", "lab", "lab1,lab2"])
def test_a_target_outside_the_lab_is_refused(target: str, lab_inventory: Path) -> None:
    proc = subprocess.run(
        [
            ansible_bin("ansible-playbook"),
            "-i",
            str(lab_inventory),
            "-e",
            f"target={target}",
            str(CHAOS / "fill_disk.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode != 0
    assert "target must name one host of a selfheal lab inventory" in proc.stdout
