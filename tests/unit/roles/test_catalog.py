"""The runbook catalog (selfheal.catalog) and what every role must carry for it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from selfheal.catalog import (
    load_catalog,
    load_entry,
    markdown_table,
    merge_into_policy,
    policy_runbooks,
    roles_dir,
)
from selfheal.errors import ConfigError
from selfheal.policy import load_policy

REPO = Path(__file__).resolve().parents[3]
ALL_ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
# Setup roles that are not remediation runbooks. Every other role must declare itself in
# meta/selfheal.yml; a role joins this list only on purpose.
NOT_RUNBOOKS = {"desired_state", "fluent_bit", "auto_recovery_defaults"}
ROLES = [p for p in ALL_ROLES if p.name not in NOT_RUNBOOKS]


def test_roles_dir_is_the_checkout() -> None:
    assert roles_dir() == REPO / "roles"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_has_what_the_catalog_and_ansible_need(role: Path) -> None:
    for name in (
        "meta/selfheal.yml",
        "meta/argument_specs.yml",
        "meta/main.yml",
        "defaults/main.yml",
        "tasks/main.yml",
        "README.md",
    ):
        assert (role / name).is_file(), f"{role.name} lacks {name}"
    entry = load_entry(role)
    assert (REPO / "playbooks" / entry.playbook).is_file(), entry.playbook


@pytest.mark.parametrize("role", ALL_ROLES, ids=lambda p: p.name)
def test_every_role_has_argument_specs(role: Path) -> None:
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    assert specs["argument_specs"]["main"]["short_description"]


def test_only_declared_setup_roles_are_not_runbooks() -> None:
    undeclared = {p.name for p in ALL_ROLES if not (p / "meta/selfheal.yml").is_file()}
    assert undeclared <= NOT_RUNBOOKS, (
        f"roles without meta/selfheal.yml: {undeclared - NOT_RUNBOOKS}"
    )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_specs_document_every_default(role: Path) -> None:
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text()) or {}
    assert set(defaults) <= set(options), set(defaults) - set(options)
    assert all(name.startswith(f"{role.name}_") for name in options)
    for name, spec in options.items():
        assert spec.get("description"), f"{role.name}: {name} has no description"
        if "default" in spec and name in defaults:
            assert spec["default"] == defaults[name], name


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_checks_compliance_first(role: Path) -> None:
    tasks = yaml.safe_load((role / "tasks/main.yml").read_text())
    first = tasks[0]
    assert first["name"].startswith("Refuse ") and "compliance" in first["name"]
    assert "not cleared for automated remediation" in first["ansible.builtin.assert"]["fail_msg"]
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
    assert defaults[f"{role.name}_required_tags"] == {"selfheal_managed": True}


def test_catalog_lists_every_role_with_risk_cost_and_verification() -> None:
    entries = load_catalog()
    assert [e.role for e in entries] == [r.name for r in ROLES]
    by_role = {e.role: e for e in entries}
    assert by_role["service_restart"].risk == "low"
    assert by_role["db_failover"].risk == "high"
    assert by_role["db_failover"].runbook == "failover_db"
    assert by_role["host_reboot"].risk == "high"
    for entry in entries:
        assert entry.cost >= 0 and entry.timeout > timedelta(0)
        assert entry.fixes and entry.runs_on and entry.verifies_with


def test_catalog_runbooks_are_a_valid_policy(tmp_path: Path) -> None:
    entries = load_catalog()
    doc = merge_into_policy({"version": 1}, entries)
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump(doc))
    policy = load_policy(path)
    assert set(policy.runbooks) == {e.runbook for e in entries}
    assert policy.runbooks["failover_db"].risk == "high"
    assert policy.runbooks["failover_db"].playbook == "failover_db.yml"
    assert policy.runbooks["heal_service"].timeout == timedelta(seconds=120)


def test_the_policy_wins_over_the_catalog() -> None:
    mine = {"version": 1, "runbooks": {"heal_disk": {"playbook": "x.yml", "risk": "high"}}}
    merged = merge_into_policy(mine, load_catalog())
    assert merged["runbooks"]["heal_disk"] == {"playbook": "x.yml", "risk": "high"}
    assert "failover_db" in merged["runbooks"]
    assert mine["runbooks"].keys() == {"heal_disk"}  # not modified


def _role(tmp_path: Path, doc) -> Path:
    role = tmp_path / "roles" / "broken"
    (role / "meta").mkdir(parents=True)
    (role / "meta/selfheal.yml").write_text(yaml.safe_dump(doc))
    return role


GOOD = {
    "runbook": "fix",
    "playbook": "fix.yml",
    "risk": "low",
    "cost": 1,
    "timeout": "15m",
    "fixes": "things",
    "runs_on": "the host",
    "verifies_with": "a check",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"risk": "extreme"}, "broken/meta/selfheal.yml.risk: must be one of low"),
        ({"cost": -1}, "broken/meta/selfheal.yml.cost: must be a number >= 0"),
        ({"cost": True}, "cost: must be a number"),
        ({"timeout": "soon"}, "broken/meta/selfheal.yml.timeout:"),
        ({"timeout": 0}, "timeout: must be positive"),
        ({"fixes": ""}, "fixes: must be a non-empty string"),
        ({"owner": "me"}, "unknown key(s) owner"),
    ],
)
def test_bad_declarations_name_the_field(tmp_path: Path, change: dict, message: str) -> None:
    role = _role(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError, match=None) as err:
        load_entry(role)
    assert message in str(err.value)


def test_missing_keys_are_named(tmp_path: Path) -> None:
    role = _role(tmp_path, {"risk": "low"})
    with pytest.raises(ConfigError, match="missing runbook, playbook, cost"):
        load_entry(role)


def test_duplicate_runbook_names_are_refused(tmp_path: Path) -> None:
    _role(tmp_path, GOOD)
    other = tmp_path / "roles" / "other" / "meta"
    other.mkdir(parents=True)
    (other / "selfheal.yml").write_text(yaml.safe_dump(GOOD))
    with pytest.raises(ConfigError, match="declared by broken and other"):
        load_catalog(tmp_path / "roles")


def test_policy_runbooks_and_table() -> None:
    entries = load_catalog()
    runbooks = policy_runbooks(entries)
    assert runbooks["heal_service"]["risk"] == "low"
    table = markdown_table(entries)
    assert table.startswith(
        "| runbook | what it fixes | risk tier | where it runs | how it verifies |"
    )
    assert table.count("\n") == len(entries) + 2


def test_readme_catalog_lists_every_runbook() -> None:
    readme = (REPO / "README.md").read_text()
    assert "## Runbook catalog" in readme
    section = readme.split("## Runbook catalog", 1)[1].split("\n## ", 1)[0]
    for entry in load_catalog():
        assert f"`{entry.runbook}`" in section, entry.runbook
        assert f"| {entry.risk} |" in section
