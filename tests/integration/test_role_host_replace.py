"""The replace-not-repair hook: playbooks/heal_service.yml on an immutable host calls the
host's replace playbook instead of restarting anything, verifies with the health checks,
changes nothing in check mode or on a second run, and refuses an immutable host without a
hook or without the compliance tags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import REPO, ansible_bin, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "playbooks/heal_service.yml"
REPLACE = """\
- name: Rebuild the host (stands in for a real image rebuild)
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: The new instance is up
      ansible.builtin.copy:
        dest: "{{ marker }}"
        content: "replaced {{ target }}\\n"
        mode: "0644"
"""


def _vars(tmp_path: Path, **replace) -> dict:
    marker = tmp_path / "instance"
    book = tmp_path / "replace.yml"
    book.write_text(REPLACE)
    return {
        "target": "localhost",
        "service": "web",
        "selfheal_immutable": True,
        "selfheal_services": {"web": {"manager": "supervisord"}},
        "selfheal_replace": {
            "playbook": str(book),
            "ansible_playbook": [ansible_bin("ansible-playbook")],
            "extra_vars": {"marker": str(marker)},
            "health_checks": [
                {"name": "instance", "kind": "command", "read_only": True,
                 "argv": [sys.executable, "-c", f"import os,sys; sys.exit(not os.path.exists({str(marker)!r}))"]}
            ],
            **replace,
        },
        "host_replace_verify_delay": 1,
    }  # fmt: skip


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def test_replaces_instead_of_repairing(tmp_path: Path) -> None:
    marker = tmp_path / "instance"
    dry = run_playbook(PLAYBOOK, extra_vars=_vars(tmp_path), check=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would replace localhost with playbook" in dry.stdout
    assert not marker.exists()

    first = run_playbook(PLAYBOOK, extra_vars=_vars(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=1" in _recap(first.stdout)
    assert marker.read_text() == "replaced localhost\n"
    assert "Restart the supervisord program" not in first.stdout  # never repaired in place

    second = run_playbook(PLAYBOOK, extra_vars=_vars(tmp_path))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in _recap(second.stdout)


def test_an_immutable_host_without_a_hook_is_refused(tmp_path: Path) -> None:
    extra = _vars(tmp_path)
    extra["selfheal_replace"].pop("playbook")
    result = run_playbook(PLAYBOOK, extra_vars=extra)
    assert result.returncode != 0
    assert "is immutable and is never repaired in place" in result.stdout


def test_refuses_a_host_without_the_compliance_tags(tmp_path: Path) -> None:
    extra = {**_vars(tmp_path), "host_replace_required_tags": {"env": "production"}}
    result = run_playbook(PLAYBOOK, extra_vars=extra)
    assert result.returncode != 0
    assert "not cleared for automated remediation" in result.stdout
    assert not (tmp_path / "instance").exists()
