"""Detection by Alertmanager: on a lab with `--monitoring`, the kill-service experiment's
detection is the ServiceDown alert (polled from Alertmanager's API), not a probe.

Its own lab (state dir, prefix, bridge, subnet, Prometheus/Alertmanager ports), torn down
at the end. Skips without prometheus/alertmanager or the lab's tools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import REPO

pytestmark = pytest.mark.integration

TAG = os.getpid() % 1000
PREFIX = f"shcm{TAG}"


def _missing() -> str | None:
    for tool in ("supervisord", "supervisorctl", "ssh", "ssh-keygen", "prometheus"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")):
        return "alertmanager is not installed (prometheus-alertmanager)"
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        return "sshd is not installed (openssh-server)"
    return None


def _selfheal(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def _cleanup_network() -> None:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith(f"{PREFIX}-"):
            subprocess.run(["ip", "netns", "del", line.split()[0]], timeout=30, check=False)
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            subprocess.run(["ip", "link", "del", name], timeout=30, check=False)


@pytest.mark.timeout(600)
def test_detection_by_alertmanager(tmp_path: Path) -> None:
    if reason := _missing():
        pytest.skip(reason)
    netns = os.geteuid() == 0 and shutil.which("ip") is not None
    state = tmp_path / "s"
    opts = ["--state-dir", str(state), "--hosts", "1", "--mode", "netns" if netns else "loopback"]
    opts += ["--prometheus-port", str(35000 + TAG), "--alertmanager-port", str(36000 + TAG)]
    if netns:
        opts += [
            "--netns-prefix",
            f"{PREFIX}-",
            "--bridge",
            PREFIX,
            "--subnet",
            f"10.72.{TAG % 250}.0/24",
        ]
    else:
        opts += ["--subnet", f"127.72.{TAG % 250}.0/24", "--ssh-port-base", str(37000 + TAG)]
    experiment = tmp_path / "e.yml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "title": "killed web is detected by the ServiceDown alert and healed",
                "steady_state": {
                    "probes": [
                        {"name": "web", "type": "http", "host": "lab1", "path": "/livez"},
                        {
                            "name": "scraped",
                            "type": "prometheus",
                            "query": 'up{job="selfheal-lab-web",host="lab1"}',
                            "tolerance": 1,
                        },
                    ]
                },
                "method": [{"fault": "kill_service", "target": "lab1"}],
                "detection": {
                    "source": "auto",
                    "alert": "ServiceDown",
                    "timeout": 90,
                    "interval": 1,
                },
                "heal": {"playbook": "heal_service.yml"},
                "expect": {"steady_state_within": 150},
            }
        )
    )
    try:
        up = _selfheal("lab", "up", "--monitoring", *opts)
        assert up.returncode == 0, up.stderr
        inventory = state / "inventory" / "hosts.yml"
        # Wait for Prometheus to have scraped the host (the steady state needs it).
        deadline = time.monotonic() + 60
        while True:
            check = _selfheal("chaos", "validate", str(experiment), "--inventory", str(inventory))
            assert check.returncode == 0, check.stdout
            from selfheal.chaos.experiment import load_experiment
            from selfheal.chaos.inventory import LabInventory
            from selfheal.chaos.probes import run_probes

            inv = LabInventory.load(inventory)
            if all(r.ok for r in run_probes(load_experiment(experiment).probes, inv)):
                break
            assert time.monotonic() < deadline, "Prometheus never scraped the lab"
            time.sleep(1)
        run = _selfheal("chaos", "run", str(experiment), "--json", "--inventory", str(inventory))
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)
        assert report["detection"]["source"] == "alertmanager"
        assert report["detection"]["detail"].startswith("ServiceDown firing for lab1")
        # ServiceDown needs up == 0 for 4s (scrape and evaluation every 2s): never sooner.
        assert 4 <= report["mttd"] <= 60, report["mttd"]
        assert report["mttr"] >= report["mttd"]
        print(f"alertmanager detection: MTTD {report['mttd']:.1f}s MTTR {report['mttr']:.1f}s")
    finally:
        down = _selfheal("lab", "down", "--state-dir", str(state))
        if netns:
            _cleanup_network()
    assert down.returncode == 0, down.stderr
