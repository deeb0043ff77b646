"""Stopping a dependency: the shipped `stop_postgres` experiment on a lab with
`--postgres` (PostgreSQL primary on lab1): the check fails, heal_service.yml starts it
again, and the rollback leaves it running.

Its own lab (state dir, subnet, ports), torn down at the end. Needs root (PostgreSQL runs as
the postgres user) and the Debian postgresql package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

pytestmark = pytest.mark.integration

TAG = os.getpid() % 1000


def _selfheal(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


@pytest.mark.timeout(600)
def test_stop_postgres_is_healed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL in the lab needs root (it runs as the postgres user)")
    for tool in ("supervisord", "supervisorctl", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    state = tmp_path / "s"
    opts = ["--state-dir", str(state), "--mode", "loopback", "--hosts", "2", "--postgres"]
    opts += ["--subnet", f"127.71.{TAG % 250}.0/24", "--ssh-port-base", str(38000 + TAG * 3)]
    opts += ["--postgres-port", str(26432 + TAG)]
    try:
        up = _selfheal("lab", "up", *opts)
        assert up.returncode == 0, up.stderr
        inventory = str(state / "inventory" / "hosts.yml")
        run = _selfheal("chaos", "run", "stop_postgres", "--json", "--inventory", inventory)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)
        assert report["method"][0]["fault"] == "stop_postgres"
        assert report["detection"]["detail"].startswith("probe postgres-primary")
        assert report["heal"]["status"] == "done"
        assert report["mttd"] is not None and report["mttr"] is not None
        status = json.loads(_selfheal("lab", "status", "--json", "--state-dir", str(state)).stdout)
        assert [h.get("postgres") for h in status["hosts"]] == ["primary", "replica"]
    finally:
        down = _selfheal("lab", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
