"""The EDA rulebook that forwards Alertmanager events to the dispatcher. ansible-rulebook
is not a test dependency: without it the rulebook is only checked for its structure."""

from __future__ import annotations

import yaml
from support import REPO

RULEBOOK = REPO / "extensions/eda/rulebooks/forward_to_selfheal.yml"


def test_rulebook_structure() -> None:
    [ruleset] = yaml.safe_load(RULEBOOK.read_text())
    assert set(ruleset) == {"name", "hosts", "sources", "rules"}
    [source] = ruleset["sources"]
    assert "ansible.eda.alertmanager" in source
    [rule] = ruleset["rules"]
    action = rule["action"]["run_module"]
    assert action["name"] == "ansible.builtin.uri"
    args = action["module_args"]
    assert args["url"].endswith("/alerts/alertmanager")
    assert args["method"] == "POST"
    assert args["headers"]["Authorization"].startswith("Bearer ")
    assert args["body"]["version"] == "4"
