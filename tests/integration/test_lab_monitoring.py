"""The monitoring configs are valid for the real tools, and `lab up --monitoring` runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import REPO

pytestmark = pytest.mark.integration

MONITORING = REPO / "monitoring"
TAG = os.getpid() % 1000


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed (Debian packages prometheus, prometheus-alertmanager)"
        )
    return path


def _run(*cmd: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def test_alert_rules_are_valid() -> None:
    rules = sorted(str(p) for p in (MONITORING / "prometheus/rules").glob("*.yml"))
    assert rules
    result = _run(_tool("promtool"), "check", "rules", *rules)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    tests = sorted(
        str(p.relative_to(MONITORING / "prometheus"))
        for p in (MONITORING / "prometheus/tests").glob("*.yml")
    )
    assert tests
    result = _run(_tool("promtool"), "test", "rules", *tests, cwd=MONITORING / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid() -> None:
    result = _run(
        _tool("promtool"), "check", "config", "prometheus.yml", cwd=MONITORING / "prometheus"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_is_valid_and_routes_to_the_dispatcher() -> None:
    result = _run(_tool("amtool"), "check-config", "alertmanager/alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    import yaml

    config = yaml.safe_load((MONITORING / "alertmanager/alertmanager.yml").read_text())
    receiver = next(r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    urls = [w["url"] for w in receiver["webhook_configs"]]
    assert urls == ["http://127.0.0.1:9095/alerts/alertmanager"]


def _get(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        return json.load(resp)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.mark.timeout(300)
def test_lab_up_with_monitoring_scrapes_the_hosts(tmp_path: Path) -> None:
    _tool("prometheus")
    if not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")):
        pytest.skip("Alertmanager is not installed (Debian package prometheus-alertmanager)")
    for tool in ("supervisord", "ssh-keygen"):
        _tool(tool)
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        pytest.skip("sshd is not installed (openssh-server)")
    state = tmp_path / "s"
    prom, am = 29090 + TAG % 500, 29600 + TAG % 500
    opts = [
        "--state-dir", str(state), "--mode", "loopback", "--hosts", "2",
        "--subnet", f"127.79.{TAG % 250}.0/24", "--ssh-port-base", str(21000 + TAG * 10),
        "--prometheus-port", str(prom), "--alertmanager-port", str(am),
    ]  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "selfheal.cli", "lab", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)

    try:
        up = cli("up", "--monitoring", "--json", *opts)
        assert up.returncode == 0, up.stderr
        monitoring = json.loads(up.stdout)["monitoring"]
        pids = [entry["pid"] for entry in monitoring.values()]
        deadline = time.monotonic() + 60
        while True:
            targets = _get(f"http://127.0.0.1:{prom}/api/v1/targets")["data"]["activeTargets"]
            web = [t for t in targets if t["labels"]["job"] == "selfheal-lab-web"]
            if len(web) == 2 and all(t["health"] == "up" for t in web):
                break
            assert time.monotonic() < deadline, web
            time.sleep(1)
        assert {t["labels"]["host"] for t in web} == {"lab1", "lab2"}
        rules = _get(f"http://127.0.0.1:{prom}/api/v1/rules")["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"ServiceDown", "HighLatency"}
        ams = _get(f"http://127.0.0.1:{prom}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        assert [a["url"] for a in ams] == [f"http://127.0.0.1:{am}/api/v2/alerts"]
        status = cli("status", "--state-dir", str(state))
        assert f"127.0.0.1:{prom}" in status.stdout
    finally:
        down = cli("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert "prometheus stopped" in down.stdout and "alertmanager stopped" in down.stdout
    assert not [pid for pid in pids if _alive(pid)]
    assert not state.exists()


def test_lab_alertmanager_config_authenticates_to_the_dispatcher(tmp_path: Path) -> None:
    from selfheal.lab.monitoring import alertmanager_config

    token = tmp_path / "token"
    token.write_text("secret-token\n")
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager_config(MONITORING, token))
    result = _run(_tool("amtool"), "check-config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"credentials_file: {token}" in config.read_text()
    assert "secret-token" not in config.read_text()  # the token itself stays in its file
