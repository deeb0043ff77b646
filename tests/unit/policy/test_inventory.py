"""Targets and tags from Ansible inventories, plain mappings and host variables."""

from __future__ import annotations

import copy

import pytest
from unit.policy.policy_fixtures import BASE

from selfheal.policy import compile_policy
from selfheal.policy.inventory import inventory_from_data, tags_from_hostvars

POLICY = compile_policy(
    {**copy.deepcopy(BASE), "compliance": {"required_tags": ["x"], "tag_vars": ["owner", "pci"]}}
)


def test_tags_from_hostvars() -> None:
    hostvars = {
        "selfheal_tags": ["selfheal_managed", "tier=gold"],
        "owner": "sre",
        "env": "prod",
        "unrelated": 1,
    }
    assert tags_from_hostvars(POLICY, hostvars) == {
        "selfheal_managed": True,
        "tier": "gold",
        "owner": "sre",
        "env": "prod",
    }
    assert tags_from_hostvars(POLICY, {"selfheal_tags": {"a": 1}, "pci": True}) == {
        "a": 1,
        "pci": True,
    }
    assert tags_from_hostvars(POLICY, {"selfheal_tags": "solo"}) == {"solo": True}


def test_ansible_inventory_with_group_vars() -> None:
    data = {
        "all": {
            "vars": {"owner": "sre"},
            "children": {
                "web": {
                    "vars": {"selfheal_tags": ["selfheal_managed"]},
                    "hosts": {"web-01": {"env": "prod"}, "web-02": None},
                },
                "db": {"hosts": {"db-01": {"owner": "dba"}}},
            },
        }
    }
    inventory = inventory_from_data(POLICY, data)
    assert inventory["web-01"] == {"selfheal_managed": True, "owner": "sre", "env": "prod"}
    assert inventory["web-02"] == {"selfheal_managed": True, "owner": "sre"}
    assert inventory["db-01"] == {"owner": "dba"}


def test_plain_mappings_and_lists() -> None:
    assert inventory_from_data(POLICY, ["a", "b"]) == {"a": {}, "b": {}}
    assert inventory_from_data(POLICY, {"a": ["t1"], "b": {"k": "v"}, "c": None}) == {
        "a": {"t1": True},
        "b": {"k": "v"},
        "c": {},
    }
    assert inventory_from_data(POLICY, None) == {}
    with pytest.raises(ValueError):
        inventory_from_data(POLICY, "web-01")
