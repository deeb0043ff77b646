"""A postmortem of a real incident: the lab's kill-service chaos experiment with every
component real (network-namespace host with sshd and supervisord, Prometheus, Alertmanager,
`selfheal serve` healing over SSH), then `selfheal postmortem` on the dispatcher's store and
audit trail. The draft has its sections, the real timeline, the runbook's output, and MTTD /
MTTR equal to what the store's rows say. The lab always comes down.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import REPO

from selfheal.chaos import audit as chaos_audit
from selfheal.chaos.engine import ExperimentRunner, PlaybookExecutor
from selfheal.chaos.experiment import load_experiment
from selfheal.chaos.inventory import LabInventory
from selfheal.chaos.probes import run_probes
from selfheal.lab import dispatcher, monitoring
from selfheal.lab.lab import Lab, netns_support
from selfheal.lab.plan import LabSpec
from selfheal.reporting.facts import fmt_duration, fmt_time, parse_ts
from selfheal.store import SQLiteStore

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
HOST = "lab1"
SECTIONS = (
    "Summary",
    "Impact",
    "Detection",
    "Timeline",
    "What the automation tried",
    "What the runbook did",
    "Action items",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _poll(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


@pytest.fixture
def lab(tmp_path_factory):
    state = tmp_path_factory.mktemp("pm", numbered=True)
    spec = LabSpec(
        state_dir=state / "s",  # short: supervisord's socket path must fit
        hosts=1,
        netns_prefix=f"shp{TAG}-",
        bridge=f"shp{TAG}",
        subnet=f"10.74.{TAG}.0/24",
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
        lab.down()
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"shp{TAG}-" not in namespaces


def _experiment(tmp_path: Path) -> Path:
    """The collection's kill-service experiment, healed by the dispatcher instead of by its
    own heal step; detection is Alertmanager's ServiceDown. The healing run is checked in the
    store below: steady state can return before the run's last audit record is written."""
    data = yaml.safe_load((REPO / "playbooks/chaos/experiments/kill_web_healed.yml").read_text())
    data.pop("heal")
    data["detection"].update(source="alertmanager", timeout=60, interval=0.5)
    data["expect"] = {"steady_state_within": 90}
    path = tmp_path / "kill_web_dispatcher.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.timeout(300)
def test_postmortem_of_the_kill_service_experiment(lab: Lab, tmp_path: Path) -> None:
    inventory = LabInventory.load(lab.spec.inventory)
    experiment = load_experiment(_experiment(tmp_path))
    experiment.check_against(inventory)
    # steady state first: Prometheus must have scraped the host
    assert _poll(lambda: all(r.ok for r in run_probes(experiment.probes, inventory)), 60)
    trail, keys = dispatcher.audit_paths(lab)
    runner = ExperimentRunner(
        experiment,
        inventory,
        PlaybookExecutor(inventory, tmp_path / "chaos-runs"),
        audit=chaos_audit.TrailAudit(trail),
        log=print,
    )
    run = runner.run()
    assert run.status == "passed", run.to_dict()
    assert run.detection["source"] == "alertmanager"

    # Alertmanager's resolved notification closes the incident
    store_path = dispatcher.state_dir(lab) / "store.db"

    def resolved():
        with SQLiteStore(store_path) as store:
            mine = [i for i in store.list_incidents() if i.labels.get("host") == HOST]
            return mine if mine and all(i.status == "resolved" for i in mine) else None

    incidents = _poll(resolved, 60)
    assert incidents, "the incident was not resolved"
    [incident] = incidents

    def finished():
        with SQLiteStore(store_path) as store:
            runs = store.list_runs(incident_id=incident.id)
            return runs if runs and runs[-1].finished_at is not None else None

    [heal] = _poll(finished, 60) or [None]
    assert heal is not None, "the heal run did not finish"
    with SQLiteStore(store_path) as store:
        alerts = store.alerts_of(incident.id)
    # MTTD / MTTR straight from the rows: first alert start -> opened -> resolved
    first_start = min(parse_ts(a["starts_at"]) for a in alerts if a["starts_at"])
    mttd = (incident.opened_at - first_start).total_seconds()
    mttr = (incident.resolved_at - incident.opened_at).total_seconds()
    assert 0 < mttd < 60 and mttr > 0
    assert (heal.runbook, heal.target, heal.status) == ("restart_service", HOST, "succeeded")

    out = tmp_path / "postmortem.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfheal.cli",
            "postmortem",
            str(incident.id),
            "--store",
            str(store_path),
            "--audit",
            str(trail),
            "--key-file",
            str(keys),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    print(f"\nincident {incident.id}: MTTD {mttd:.1f}s MTTR {mttr:.1f}s\n{text[:3000]}")
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    for section in SECTIONS:
        assert section in headings, (section, headings)
    assert f"Time to detect (MTTD): {fmt_duration(mttd)}" in text
    assert f"Time to resolve (MTTR): {fmt_duration(mttr)}" in text
    assert "Outcome: auto-resolved" in text
    # the real timeline, in order
    timeline = text.split("## Timeline", 1)[1].split("\n## ", 1)[0]
    events = ["alert starts", "incident opened", "decision: auto", "run started"]
    positions = [timeline.find(f"| {event} |") for event in events]
    assert all(p >= 0 for p in positions), dict(zip(events, positions, strict=True))
    assert positions == sorted(positions)
    # the service may answer (and the alert resolve) before the run's last task is done
    for event in ("run succeeded", "incident resolved"):
        assert timeline.find(f"| {event} |") > positions[-1], event
    assert f"| {fmt_time(incident.opened_at)} | incident opened |" in timeline
    assert f"| {fmt_time(incident.resolved_at)} | incident resolved |" in timeline
    assert f"| {fmt_time(heal.started_at)} | run started |" in timeline
    assert "| audit: run.start |" in timeline and "| audit: run.finish |" in timeline
    # what the runbook printed, from the run's artifacts
    did = text.split("## What the runbook did", 1)[1].split("\n## ", 1)[0]
    assert f"Run {heal.id} (restart_service)" in did
    assert "PLAY RECAP" in did and HOST in did
