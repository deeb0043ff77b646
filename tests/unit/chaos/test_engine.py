"""The experiment runner with a fake executor and fake probes: the flow, the expectations,
rollback strategies, a failing method step and a signal, without any lab."""

from __future__ import annotations

import os
import signal
import time

import pytest

from selfheal.chaos.engine import ExperimentRunner, PlaybookOutcome
from selfheal.chaos.experiment import parse_experiment
from selfheal.chaos.probes import ProbeResult


class FakeLab:
    """Hosts that are up or down; faults take them down, heals and rollbacks bring them up."""

    def __init__(self, heal_works: bool = True, fail_on: str | None = None):
        self.up = {"lab1": True, "lab2": True}
        self.calls: list[str] = []
        self.heal_works = heal_works
        self.fail_on = fail_on
        self.probe_hook = None

    # executor
    def fault(self, step, phase):
        self.calls.append(f"{phase} {step.fault.name} {step.target}")
        if phase == "prepare":
            return PlaybookOutcome("done", 0.01)
        if phase == "inject":
            self.up[step.target] = False
            if step.params.get("fail_midway") or self.fail_on == step.target:
                self.up[step.target] = True  # the playbook's own rescue/always rolled back
                return PlaybookOutcome("failed", 0.01, reason="Fail on purpose")
            return PlaybookOutcome("done", 0.01, injected_at=time.time())
        self.up[step.target] = True
        return PlaybookOutcome("done", 0.01)

    def heal(self, heal, extravars, envvars):
        self.calls.append(f"heal {extravars['target']} {extravars['selfheal_runbook']}")
        if self.heal_works:
            self.up[extravars["target"]] = True
        return PlaybookOutcome("done", 0.01)

    # probes
    def probe(self, probes, _inv):
        if self.probe_hook:
            self.probe_hook()
        return [
            ProbeResult(p.name, self.up[p.host], "up" if self.up[p.host] else "down")
            for p in probes
        ]


class FakeAudit:
    description = "fake trail"

    def __init__(self, lab: FakeLab):
        self.lab = lab

    def records(self, since, until):
        if not any(c.startswith("heal") for c in self.lab.calls):
            return []
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since + 1.5)) + ".000000Z"
        return [
            {
                "action": "playbook.end",
                "outcome": "ok",
                "ts": ts,
                "target": "lab1,localhost",
                "data": {
                    "playbook": "heal_service.yml",
                    "runbook": "heal_service",
                    "stats": {"lab1": {}, "localhost": {}},
                },
            }
        ]


def _experiment(**over):
    data = {
        "title": "t",
        "steady_state": {"probes": [{"name": "web1", "type": "http", "host": "lab1"}]},
        "method": [{"fault": "kill_service", "target": "lab1"}],
        "detection": {"source": "probe", "timeout": 2, "interval": 0.1},
        "expect": {
            "steady_state_within": 2,
            "healing": [{"runbook": "heal_service", "host": "lab1", "within": 2}],
        },
    }
    data.update(over)
    return parse_experiment(data, "t")


def _run(exp, lab, inventory, **kw):
    kw.setdefault("audit", FakeAudit(lab))
    runner = ExperimentRunner(exp, inventory, lab, probe=lab.probe, **kw)
    return runner.run()


def test_healed_experiment_passes(inventory) -> None:
    lab = FakeLab()
    run = _run(_experiment(heal={"playbook": "heal_service.yml"}), lab, inventory)
    assert run.status == "passed", run.missed
    assert run.mttd is not None and run.mttr is not None and run.mttd <= run.mttr
    assert run.detection["source"] == "probe"
    assert lab.calls == [
        "inject kill_service lab1",
        "heal lab1 heal_service",
        "rollback kill_service lab1",
    ]
    assert [e["met"] for e in run.expectations] == [True, True]
    assert run.automation["actions"] == [run.automation["actions"][0]]
    assert "heal_service on lab1,localhost: ok" in run.automation["actions"][0]


def test_no_healer_fails_naming_each_missed_expectation_and_rolls_back(inventory) -> None:
    lab = FakeLab()
    run = _run(_experiment(), lab, inventory)
    assert run.status == "failed"
    assert run.missed[0].startswith("steady state again within 2s: still failing: web1")
    assert run.missed[1].startswith("healing: heal_service on lab1 within 2s: no successful run")
    assert run.mttr is None and run.mttd is not None
    assert lab.calls[-1] == "rollback kill_service lab1" and lab.up["lab1"]
    assert run.steady_state_after_rollback[0]["ok"]


def test_no_audit_trail_skips_the_healing_expectation(inventory) -> None:
    lab = FakeLab()
    run = _run(_experiment(heal={"playbook": "heal_service.yml"}), lab, inventory, audit=None)
    assert run.status == "passed"
    assert run.expectations[1]["met"] is None
    assert "no audit trail configured" in run.expectations[1]["note"]


def test_steady_state_not_met_before_aborts_without_injecting(inventory) -> None:
    lab = FakeLab()
    lab.up["lab1"] = False
    run = _run(_experiment(), lab, inventory)
    assert run.status == "aborted" and lab.calls == []
    assert run.missed == ["steady state before: probe web1: down"]


def test_a_failing_method_step_rolls_back_every_attempted_step(inventory) -> None:
    lab = FakeLab()
    exp = _experiment(
        method=[
            {"fault": "kill_service", "target": "lab1"},
            {"fault": "kill_service", "target": "lab2", "params": {"fail_midway": True}},
        ]
    )
    run = _run(exp, lab, inventory, rollback="never")
    assert run.status == "failed"
    assert run.missed[0].startswith("method[1] (kill_service on lab2) failed: Fail on purpose")
    assert lab.calls[-2:] == ["rollback kill_service lab2", "rollback kill_service lab1"]
    assert all(lab.up.values())


@pytest.mark.parametrize(
    ("strategy", "heal", "rolled_back"),
    [
        ("always", True, True),
        ("deviated", True, False),
        ("deviated", False, True),
        ("never", False, False),
    ],
)
def test_rollback_strategies(inventory, strategy, heal, rolled_back) -> None:
    lab = FakeLab(heal_works=heal)
    exp = _experiment(heal={"playbook": "heal_service.yml"})
    run = _run(exp, lab, inventory, rollback=strategy)
    assert any(c.startswith("rollback") for c in lab.calls) is rolled_back
    assert bool(run.rollbacks) is rolled_back


def test_sigterm_during_the_fault_rolls_back(inventory) -> None:
    lab = FakeLab(heal_works=False)
    count = {"n": 0}

    def hook():
        count["n"] += 1
        if count["n"] == 3:  # while waiting for the steady state to come back
            os.kill(os.getpid(), signal.SIGTERM)

    lab.probe_hook = hook
    exp = _experiment(expect={"steady_state_within": 30})
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    run = _run(exp, lab, inventory, rollback="never")
    assert time.monotonic() - started < 10
    assert run.status == "interrupted"
    assert "interrupted by SIGTERM" in run.missed[0]
    assert lab.calls[-1] == "rollback kill_service lab1" and lab.up["lab1"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_alertmanager_detection_is_used_when_monitoring_is_up(inventory, monkeypatch) -> None:
    lab = FakeLab()
    monkeypatch.setattr(type(inventory), "monitoring_url", lambda self, name: "http://am")
    seen = []

    def alerts(url, alert, host, since):
        assert since <= time.time()
        seen.append((url, alert, host))
        return "ServiceDown firing for lab1" if len(seen) > 2 else None

    exp = _experiment(
        detection={"source": "auto", "alert": "ServiceDown", "interval": 0.1},
        heal={"playbook": "heal_service.yml"},
    )
    runner = ExperimentRunner(
        exp, inventory, lab, probe=lab.probe, alerts=alerts, audit=FakeAudit(lab)
    )
    run = runner.run()
    assert run.detection["source"] == "alertmanager" and run.status == "passed"
    assert seen[0] == ("http://am", "ServiceDown", "lab1")
    assert run.detection["detail"] == "ServiceDown firing for lab1"


def test_a_step_that_cannot_run_is_a_failed_step_and_rolled_back(inventory) -> None:
    lab = FakeLab()
    real = lab.fault

    def fault(step, phase):
        if phase == "inject":
            real(step, phase)
            raise RuntimeError("ansible-runner exploded")
        return real(step, phase)

    lab.fault = fault
    run = _run(_experiment(), lab, inventory)
    assert run.status == "failed"
    assert "RuntimeError: ansible-runner exploded" in run.missed[0]
    assert lab.calls[-1] == "rollback kill_service lab1" and lab.up["lab1"]


def test_prepare_runs_before_the_steady_state(inventory) -> None:
    lab = FakeLab()
    run = _run(_experiment(method=[{"fault": "expire_cert", "target": "lab1"}]), lab, inventory)
    assert lab.calls[:2] == ["prepare expire_cert lab1", "inject expire_cert lab1"]
    assert lab.calls[-1] == "rollback expire_cert lab1" and run.status == "failed"
