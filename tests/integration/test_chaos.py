"""Chaos on a real lab: experiments end to end (`selfheal chaos run`), rollbacks after a
failing step and on SIGTERM, and each fault's injection and rollback on the hosts.

One lab for the module (its own state dir, namespace prefix, bridge, subnet and ports, so
it never meets a demo lab), torn down at the end with everything the tests made. netns
mode when root with `ip`, loopback mode otherwise (the netns-only faults then skip).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from support import REPO

pytestmark = pytest.mark.integration

TAG = os.getpid() % 1000
PREFIX = f"shct{TAG}"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _missing() -> str | None:
    for tool in ("supervisord", "supervisorctl", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        return "sshd is not installed (openssh-server)"
    return None


def _netns_ok() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _selfheal(*args: str, timeout: float = 240, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _healthy(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


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


class Lab:
    def __init__(self, state: Path, mode: str):
        self.state = state
        self.mode = mode
        self.inventory = state / "inventory" / "hosts.yml"
        self.hosts = yaml.safe_load(self.inventory.read_text())["all"]["children"]["lab"]["hosts"]
        self.audit = state.parent / "audit"
        self.env = {"SELFHEAL_AUDIT_KEYS": "kchaos:" + "ab" * 32}

    def url(self, host: str) -> str:
        return self.hosts[host]["selfheal_services"]["web"]["health_url"]

    def healthy(self, host: str) -> bool:
        return _healthy(self.url(host))

    def chaos(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return _selfheal(
            "chaos", *args, "--inventory", str(self.inventory), timeout=timeout, env=self.env
        )

    def experiment(self, tmp_path: Path, data: dict) -> Path:
        path = tmp_path / "experiment.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if reason := _missing():
        pytest.skip(reason)
    mode = "netns" if _netns_ok() else "loopback"
    state = tmp_path_factory.mktemp("chaos") / "s"
    opts = ["--mode", mode, "--state-dir", str(state), "--hosts", "2"]
    if mode == "netns":
        opts += [
            "--netns-prefix",
            f"{PREFIX}-",
            "--bridge",
            PREFIX,
            "--subnet",
            f"10.74.{TAG % 250}.0/24",
        ]
    else:
        opts += ["--subnet", f"127.74.{TAG % 250}.0/24", "--ssh-port-base", str(30000 + TAG * 5)]
    try:
        up = _selfheal("lab", "up", *opts)
        assert up.returncode == 0, up.stderr
        yield Lab(state, mode)
    finally:
        down = _selfheal("lab", "down", "--state-dir", str(state))
        if mode == "netns":
            _cleanup_network()
    assert down.returncode == 0, down.stderr


@pytest.fixture
def healthy_lab(lab):
    """Each test starts (and leaves) with web healthy everywhere."""
    for host in lab.hosts:
        assert lab.healthy(host), f"{host} is not healthy before the test"
    yield lab
    for host in lab.hosts:
        assert _wait(lambda h=host: lab.healthy(h), 20), f"{host} was left unhealthy"


UNHEALED = {
    "title": "kill web, nothing heals it",
    "steady_state": {
        "probes": [{"name": "web-livez", "type": "http", "host": "lab1", "path": "/livez"}]
    },
    "method": [{"fault": "kill_service", "target": "lab1"}],
    "detection": {"source": "probe", "timeout": 5, "interval": 0.3},
    "expect": {
        "steady_state_within": 6,
        "healing": [{"runbook": "heal_service", "host": "lab1", "within": 6}],
    },
}


@pytest.mark.timeout(300)
def test_unhealed_experiment_fails_naming_the_missed_expectations(healthy_lab, tmp_path) -> None:
    lab = healthy_lab
    path = lab.experiment(tmp_path, UNHEALED)
    run = lab.chaos("run", str(path), "--json", "--audit-trail", str(lab.audit))
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["status"] == "failed"
    assert report["steady_state_before"][0]["ok"]
    assert report["mttd"] is not None and report["mttr"] is None
    assert report["missed"][0].startswith("steady state again within 6s: still failing: web-livez")
    assert report["missed"][1].startswith("healing: heal_service on lab1 within 6s: no successful")
    # The rollback still ran: the killed service is back.
    assert [r["status"] for r in report["rollbacks"]] == ["done"]
    assert report["steady_state_after_rollback"][0]["ok"]
    assert lab.healthy("lab1")


@pytest.mark.timeout(300)
def test_kill_service_with_the_heal_step_passes(healthy_lab) -> None:
    lab = healthy_lab
    run = lab.chaos("run", "kill_web_healed", "--json", "--audit-trail", str(lab.audit))
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["status"] == "passed", report["missed"]
    assert all(r["ok"] for r in report["steady_state_before"])
    assert report["method"][0]["status"] == "done"
    assert report["detection"]["source"] == "probe" and report["detection"]["detected_at"]
    assert report["heal"]["status"] == "done"
    assert all(r["ok"] for r in report["steady_state_after"])
    assert 0 <= report["mttd"] < report["mttr"] < 60
    assert [e["met"] for e in report["expectations"]] == [True, True]
    assert any("heal_service on lab1" in a for a in report["automation"]["actions"])
    print(f"kill_web_healed: MTTD {report['mttd']:.2f}s MTTR {report['mttr']:.2f}s")
    history = lab.chaos("history", "--json")
    assert history.returncode == 0
    trends = {t["experiment"]: t for t in json.loads(history.stdout)["trends"]}
    assert trends["kill_web_healed"]["passed"] >= 1


@pytest.mark.timeout(300)
def test_a_step_failing_midway_is_rolled_back(healthy_lab, tmp_path) -> None:
    lab = healthy_lab
    data = {
        **UNHEALED,
        "method": [
            {"fault": "kill_service", "target": "lab1"},
            {"fault": "kill_service", "target": "lab2", "params": {"fail_midway": True}},
        ],
    }
    path = lab.experiment(tmp_path, data)
    run = lab.chaos("run", str(path), "--json", "--rollback", "never")
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["missed"][0].startswith("method[1] (kill_service on lab2) failed")
    assert "rolled back by the playbook" in report["missed"][0]
    assert [(r["target"], r["status"]) for r in report["rollbacks"]] == [
        ("lab2", "done"),
        ("lab1", "done"),
    ]
    assert lab.healthy("lab1") and lab.healthy("lab2")


@pytest.mark.timeout(300)
def test_sigterm_while_the_fault_is_active_rolls_back(healthy_lab, tmp_path) -> None:
    lab = healthy_lab
    data = {
        **UNHEALED,
        "detection": {"source": "probe", "timeout": 120},
        "expect": {"steady_state_within": 120},
    }
    path = lab.experiment(tmp_path, data)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfheal.cli",
            "chaos",
            "run",
            str(path),
            "--json",
            "--inventory",
            str(lab.inventory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert _wait(lambda: not lab.healthy("lab1"), 60), "the fault never took web down"
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    report = json.loads(out)
    assert report["status"] == "interrupted"
    assert report["missed"] == ["interrupted by SIGTERM before the experiment finished"]
    assert [r["status"] for r in report["rollbacks"]] == ["done"]
    assert lab.healthy("lab1")


# -- each fault: inject, see it, roll back, see it gone ---------------------------------------
@pytest.fixture
def executor(lab, tmp_path):
    from selfheal.chaos.engine import PlaybookExecutor
    from selfheal.chaos.inventory import LabInventory

    return PlaybookExecutor(LabInventory.load(lab.inventory), tmp_path / "runs")


def _step(fault: str, target: str = "lab2", **params):
    from selfheal.chaos.experiment import Step
    from selfheal.chaos.faults import FAULTS

    return Step(FAULTS[fault], target, FAULTS[fault].check_params(params, "params"))


def _marked(marker: str, token: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv and token.encode() in argv:
                pids.append(int(entry))
    return pids


@pytest.mark.timeout(300)
def test_stop_service(healthy_lab, executor) -> None:
    step = _step("stop_service")
    try:
        assert executor.fault(step, "inject").status == "done"
        assert not healthy_lab.healthy("lab2")
    finally:
        assert executor.fault(step, "rollback").status == "done"
    assert _wait(lambda: healthy_lab.healthy("lab2"), 10)


@pytest.mark.timeout(300)
def test_fill_disk(healthy_lab, executor) -> None:
    fill = healthy_lab.state / "chaos" / "lab2" / "fill" / "fill.bin"
    step = _step("fill_disk", size_mb=8)
    try:
        outcome = executor.fault(step, "inject")
        assert outcome.status == "done", outcome.reason
        assert fill.stat().st_size == 8 * 1024 * 1024
        assert fill.stat().st_blocks * 512 >= 8 * 1024 * 1024  # written, not sparse
    finally:
        assert executor.fault(step, "rollback").status == "done"
    assert not fill.exists()
    too_big = _step("fill_disk", size_mb=1024)
    if shutil.disk_usage(fill.parent).free < 2 * 1024**3:
        outcome = executor.fault(too_big, "inject")
        assert outcome.status == "failed" and "half of the" in outcome.reason
        executor.fault(too_big, "rollback")
        assert not fill.exists()


@pytest.mark.timeout(300)
def test_hog_cpu_is_bounded_and_rolled_back(healthy_lab, executor) -> None:
    token = str(healthy_lab.state / "chaos" / "lab2")
    step = _step("hog_cpu", duration=30, workers=1)
    try:
        outcome = executor.fault(step, "inject")
        assert outcome.status == "done", outcome.reason
        assert _wait(lambda: _marked("selfheal-chaos-cpu-hog", token), 10)
    finally:
        assert executor.fault(step, "rollback").status == "done"
    assert _wait(lambda: not _marked("selfheal-chaos-cpu-hog", token), 5)
    # Without a rollback it still stops by itself at its deadline.
    short = _step("hog_cpu", duration=2, workers=1)
    assert executor.fault(short, "inject").status == "done"
    assert _wait(lambda: not _marked("selfheal-chaos-cpu-hog", token), 15)


@pytest.mark.timeout(300)
def test_crashloop_service(healthy_lab, executor) -> None:
    token = str(healthy_lab.state / "chaos" / "lab2")
    step = _step("crashloop_service", duration=60, crash_after=0.5)
    try:
        assert executor.fault(step, "inject").status == "done"
        assert _wait(lambda: _marked("selfheal-chaos-crashloop", token), 10)
        assert not healthy_lab.healthy("lab2")
    finally:
        assert executor.fault(step, "rollback").status == "done"
    assert not _marked("selfheal-chaos-crashloop", token)
    assert _wait(lambda: healthy_lab.healthy("lab2"), 10)


@pytest.mark.timeout(300)
def test_expire_cert(healthy_lab, executor) -> None:
    from selfheal.chaos.probes import cert_not_after

    cert = healthy_lab.state / "chaos" / "lab2" / "tls" / "server.crt"
    step = _step("expire_cert")
    try:
        outcome = executor.fault(step, "inject")
        assert outcome.status == "done", outcome.reason
        assert cert_not_after(str(cert)).timestamp() < time.time()
    finally:
        assert executor.fault(step, "rollback").status == "done"
    assert cert_not_after(str(cert)).timestamp() > time.time() + 86400


@pytest.mark.timeout(300)
def test_partition(healthy_lab, executor) -> None:
    if healthy_lab.mode != "netns":
        outcome = executor.fault(_step("partition"), "inject")
        assert outcome.status == "skipped" and "netns mode" in outcome.reason
        return
    step = _step("partition")
    try:
        outcome = executor.fault(step, "inject")
        assert outcome.status == "done", outcome.reason
        assert not healthy_lab.healthy("lab2") and healthy_lab.healthy("lab1")
    finally:
        assert executor.fault(step, "rollback").status == "done"
    assert _wait(lambda: healthy_lab.healthy("lab2"), 10)


@pytest.mark.timeout(300)
def test_netem_or_a_clear_skip(healthy_lab, executor) -> None:
    step = _step("netem", delay_ms=300)
    try:
        outcome = executor.fault(step, "inject")
    finally:
        rollback = executor.fault(step, "rollback")
    assert rollback.status in ("done", "skipped"), rollback.reason
    if healthy_lab.mode != "netns":
        assert outcome.status == "skipped" and "netns mode" in outcome.reason
    elif outcome.status == "skipped":
        assert "sch_netem" in outcome.reason
        print(f"netem skipped: {outcome.reason}")
    else:
        assert outcome.status == "done", outcome.reason
    netns = healthy_lab.hosts["lab2"]["selfheal_lab_netns"]
    if netns:
        qdisc = subprocess.run(
            ["ip", "netns", "exec", netns, "tc", "qdisc", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "netem" not in qdisc.stdout
