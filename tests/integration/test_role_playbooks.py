"""The entry playbooks take their settings from the inventory (here: extra vars standing in
for host variables) and pass them to their roles; runs in check mode, plus the refusals of
requests the inventory does not declare."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support import REPO, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOKS = REPO / "playbooks"


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def test_heal_disk_maps_selfheal_disk(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / "old.bin"
    old.write_text("x")
    when = time.time() - 30 * 86400
    os.utime(old, (when, when))
    extra = {
        "target": "localhost",
        "force": True,
        "selfheal_disk": {
            "allowed_paths": [str(tmp_path)],
            "purge_dirs": [str(cache)],
            "min_free_percent": 1,
        },
    }
    dry = run_playbook(PLAYBOOKS / "heal_disk.yml", extra_vars=extra, check=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "changed=1" in _recap(dry.stdout) and old.exists()
    run = run_playbook(PLAYBOOKS / "heal_disk.yml", extra_vars=extra)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not old.exists()


def test_heal_disk_without_an_allow_list_refuses() -> None:
    extra = {"target": "localhost", "force": True, "selfheal_disk": {"purge_dirs": ["/tmp"]}}
    result = run_playbook(PLAYBOOKS / "heal_disk.yml", extra_vars=extra)
    assert result.returncode != 0
    assert "refusing to clean anything" in result.stdout


def test_heal_cert_refuses_an_undeclared_certificate() -> None:
    result = run_playbook(
        PLAYBOOKS / "heal_cert.yml", extra_vars={"target": "localhost", "service": "web"}
    )
    assert result.returncode != 0
    assert 'declares no certificate "web" in selfheal_certs' in result.stdout


def test_heal_memory_only_offers_declared_allowed_services() -> None:
    extra = {
        "target": "localhost",
        "selfheal_services": {"web": {"manager": "supervisord"}},
        "selfheal_memory": {"allowed_services": ["api"]},  # not declared: never a candidate
    }
    result = run_playbook(PLAYBOOKS / "heal_memory.yml", extra_vars=extra, check=True)
    assert result.returncode != 0
    assert "memory_relief_services is empty" in result.stdout


def test_unknown_target_is_refused() -> None:
    for book in ("heal_disk.yml", "heal_memory.yml", "heal_reboot.yml", "heal_cert.yml"):
        result = run_playbook(PLAYBOOKS / book, extra_vars={"target": "nosuchhost"})
        assert result.returncode != 0
        assert "target must name a host or group of this inventory" in result.stdout, book


def test_failover_needs_two_known_servers() -> None:
    result = run_playbook(PLAYBOOKS / "failover_db.yml", extra_vars={"target": "localhost"})
    assert result.returncode != 0
    assert "must name two hosts of this inventory" in result.stdout
