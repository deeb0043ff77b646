"""The lab's generated policy: valid, covering every lab host, and it lets the dispatcher
restart a down web service on exactly the host the alert names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from selfheal.lab import render
from selfheal.lab.plan import LabSpec
from selfheal.policy import MemoryState, Request, compile_policy, evaluate
from selfheal.policy.inventory import inventory_from_data


def test_lab_policy_is_valid_and_routes_service_down_to_the_named_host(tmp_path: Path) -> None:
    spec = LabSpec(state_dir=tmp_path, hosts=3)
    policy = compile_policy(yaml.safe_load(render.policy_text(spec)))
    inventory = inventory_from_data(policy, render.inventory(spec))
    labels = {"alertname": "ServiceDown", "service": "web", "host": "lab2", "instance": "x:8080"}
    decision = evaluate(
        policy,
        Request(labels=labels, inventory=inventory),
        MemoryState(),
        datetime.now(UTC),
    )
    assert decision.mode == "auto", decision.to_dict()
    assert decision.target == "lab2" and decision.runbook == "restart_service"


def test_lab_policy_refuses_a_host_outside_the_lab(tmp_path: Path) -> None:
    spec = LabSpec(state_dir=tmp_path, hosts=2)
    policy = compile_policy(yaml.safe_load(render.policy_text(spec)))
    inventory = inventory_from_data(policy, render.inventory(spec))
    labels = {"alertname": "ServiceDown", "service": "web", "host": "lab9"}
    decision = evaluate(
        policy,
        Request(labels=labels, inventory=inventory),
        MemoryState(),
        datetime.now(UTC),
    )
    assert decision.mode == "deny"
    assert any(r.code == "inventory" and r.effect == "deny" for r in decision.reasons)
