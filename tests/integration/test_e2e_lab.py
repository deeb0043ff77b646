"""End to end on the lab, every component real: network-namespace hosts with sshd and
supervisord, Prometheus scraping them, Alertmanager routing to `selfheal serve`, the heal
playbook running over SSH. Kill the web service on one host; the restart runbook runs on
exactly that host, steady state returns, the audit trail verifies, and the lab comes down
leaving nothing behind. Prints MTTD and MTTR."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from selfheal.lab import dispatcher, heal_loop, monitoring
from selfheal.lab.lab import Lab, netns_support
from selfheal.lab.plan import LabSpec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.skipif(netns_support() is not None, reason=str(netns_support())),
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
        reason="Prometheus and Alertmanager are not installed",
    ),
]

TAG = os.getpid() % 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running(pid: int) -> bool:
    """Alive and not a zombie (the lab's daemons are children of this process)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def lab(tmp_path_factory):
    state = tmp_path_factory.mktemp("e2e", numbered=True)
    spec = LabSpec(
        state_dir=state / "s",  # short: supervisord's socket path must fit
        hosts=3,
        netns_prefix=f"she{TAG}-",
        bridge=f"she{TAG}",
        subnet=f"10.79.{TAG}.0/24",
        prometheus_port=_free_port(),
        alertmanager_port=_free_port(),
    )
    lab = Lab(spec)
    try:
        lab.up()
        port = _free_port()
        monitoring.start(lab, dispatcher_port=port)
        dispatcher.start(lab, port=port)
        yield lab
    finally:
        pids = [p for h in lab.record.get("pids", {}).values() for p in h.values() if p]
        pids += [e["pid"] for e in (lab.record.get("monitoring") or {}).values() if "pid" in e]
        pids += [lab.record["dispatcher"]["pid"]] if lab.record.get("dispatcher") else []
        lab.down()
        # Nothing left: no namespace, no bridge, no process, no state.
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"she{TAG}-" not in namespaces
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert f"she{TAG}" not in links
        assert not [pid for pid in pids if _running(pid)]
        left = sorted(p.name for p in spec.state_dir.iterdir()) if spec.state_dir.exists() else []
        assert not left, left


def test_killed_service_is_healed_on_exactly_that_host(lab: Lab) -> None:
    report = heal_loop.kill_and_watch(lab, host_index=2, echo=print)
    print(f"\nMTTD {report.mttd_s} s, MTTR {report.mttr_s} s")
    assert report.missed is None, report.steps
    assert report.healed
    runs = report.incident["runs"]
    assert [(r["target"], r["status"]) for r in runs] == [("lab2", "succeeded")]
    assert report.incident["decisions"][-1]["mode"] == "auto"
    assert report.audit["ok"], report.audit
    # Only lab2 was touched: the other hosts' services kept their PIDs.
    for index in (1, 3):
        host = lab.spec.host(index)
        assert lab.supervisor(host).is_running("web")
