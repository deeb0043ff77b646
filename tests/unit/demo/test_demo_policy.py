"""The demo decides by the policy it embeds: automation for a compliant host, a refusal for
one that lacks the compliance tag -- the same engine the dispatcher uses."""

from __future__ import annotations

from pathlib import Path

import yaml

from selfheal.demo import DEMO_POLICY, HOST, decide, write_inventory
from selfheal.policy import load_policy
from selfheal.supervisor import Supervisor


def test_embedded_policy_is_valid_and_shipped_in_the_package() -> None:
    policy = load_policy(DEMO_POLICY)
    assert "restart_service" in policy.runbooks
    assert DEMO_POLICY.parent.name == "selfheal"


def test_compliant_demo_host_is_healed_automatically(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    write_inventory(inventory, Supervisor(tmp_path / "sup"), 18080)
    decision = decide(inventory)
    assert decision.mode == "auto", decision.to_dict()
    assert decision.target == HOST and decision.runbook == "restart_service"


def test_host_without_the_compliance_tag_is_not_touched(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    write_inventory(inventory, Supervisor(tmp_path / "sup"), 18080)
    data = yaml.safe_load(inventory.read_text())
    del data["all"]["children"]["demo"]["hosts"][HOST]["selfheal_managed"]
    inventory.write_text(yaml.safe_dump(data))
    decision = decide(inventory)
    assert decision.mode == "deny"
    assert any(r.code == "compliance" and r.effect == "deny" for r in decision.reasons)
