"""Fixtures for the dispatcher tests (helpers live in unit/dispatcher/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from unit.dispatcher.helpers import (
    ALICE,
    BOB,
    HMAC_SECRET,
    INVENTORY,
    READ_TOKEN,
    TOKEN,
    Client,
    policy_data,
    write_playbook,
)

from selfheal.dispatcher import Dispatcher, build_app, config_from_data


@pytest.fixture
def env(tmp_path: Path) -> dict:
    marker = tmp_path / "runs.log"
    playbook = write_playbook(tmp_path / "heal.yml", marker)
    (tmp_path / "policy.yml").write_text(yaml.safe_dump(policy_data(str(playbook))))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    return {
        "tmp": tmp_path,
        "marker": marker,
        "config": {
            "store": str(tmp_path / "state/selfheal.db"),
            "policy": str(tmp_path / "policy.yml"),
            "inventory": str(tmp_path / "inventory.yml"),
            "audit": str(tmp_path / "audit"),
            "audit_key_file": str(tmp_path / "audit-keys.json"),
            "workers": 0,
            "instance": "test",
            "reevaluate_s": 0.2,
            "poll_s": 0.1,
            "tokens": [
                {"name": "alertmanager", "token": TOKEN, "scopes": ["intake"]},
                {"name": "reader", "token": READ_TOKEN, "scopes": ["read"]},
                {"name": "alice", "token": ALICE, "scopes": ["read", "approve"]},
                {"name": "bob", "token": BOB, "scopes": ["read", "approve"], "roles": ["devs"]},
            ],
            "sources": {
                # unsigned SNS fixtures; signatures are tested in test_sns_verify*.py
                "cloudwatch_sns": {"verify_signatures": False},
                "grafana": {"auth": "hmac", "hmac_secret": HMAC_SECRET},
                "generic": {
                    "mapping": {
                        "name": "check",
                        "status": "state",
                        "firing": "down",
                        "resolved": "up",
                        "labels": "tags",
                    }
                },
            },
        },
    }


@pytest.fixture
def make_dispatcher(env):
    made = []

    def make(**overrides):
        data = {**env["config"], **overrides}
        d = Dispatcher(config_from_data(data, env["tmp"]))
        d.start()
        client = Client(build_app(d, manage_lifecycle=False))
        made.append((d, client))
        return d, client

    yield make
    for d, client in made:
        d.stop()
        client.close()
