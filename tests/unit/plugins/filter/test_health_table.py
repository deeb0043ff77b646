"""The health_table / health_failing filters over registered health_check results."""

from __future__ import annotations

import importlib.util

import pytest
from support import REPO

_spec = importlib.util.spec_from_file_location(
    "selfheal_health_table", REPO / "plugins/filter/health_table.py"
)
health_table_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(health_table_module)
health_table = health_table_module.health_table
health_failing = health_table_module.health_failing

HEALTHY = {"healthy": True, "checks": [{"name": "web", "status": "ok"}], "changed": False}
UNHEALTHY = {
    "healthy": False,
    "checks": [
        {"name": "web", "status": "fail", "reason": "connection refused"},
        {"name": "disk", "status": "ok"},
    ],
}
HOSTVARS = {
    "web1": {"health_result": HEALTHY},
    "web2": {"health_result": UNHEALTHY},
    "bare": {"health_result": {"skipped": True, "changed": False}},
    "gone": {"health_result": {"unreachable": True, "msg": "ssh: connect refused\nmore"}},
    "broken": {"health_result": {"failed": False, "msg": "checks[0].kind: must be one of"}},
    "never": {},
}


def test_table_has_a_row_per_host_with_verdict_and_reason() -> None:
    lines = health_table(list(HOSTVARS), HOSTVARS)
    assert lines[0].split() == ["HOST", "STATUS", "DETAIL"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(HOSTVARS)
    assert "healthy" in rows["web1"] and "1 check passed" in rows["web1"]
    assert "UNHEALTHY" in rows["web2"] and "web (connection refused)" in rows["web2"]
    assert "disk" not in rows["web2"]
    assert "no checks" in rows["bare"] and "no checks" in rows["never"]
    assert "UNREACHABLE" in rows["gone"] and "more" not in rows["gone"]
    assert "ERROR" in rows["broken"] and "checks[0].kind" in rows["broken"]
    # Columns line up: STATUS starts at the same offset on every line.
    column = lines[0].index("STATUS")
    verdicts = {line[column:].split()[0] for line in lines[1:]}
    assert verdicts == {"healthy", "UNHEALTHY", "no", "UNREACHABLE", "ERROR"}


def test_failing_counts_unhealthy_unreachable_and_errors_not_hosts_without_checks() -> None:
    assert health_failing(list(HOSTVARS), HOSTVARS) == ["broken", "gone", "web2"]
    assert health_failing(["web1", "bare"], HOSTVARS) == []


def test_other_result_variable_name() -> None:
    hostvars = {"a": {"probe": UNHEALTHY}}
    assert health_failing(["a"], hostvars, result_var="probe") == ["a"]


def test_bad_input_is_a_clear_error() -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="list of host names"):
        health_table("web1", HOSTVARS)
    with pytest.raises(AnsibleFilterError, match="nohost is not in hostvars"):
        health_failing(["nohost"], HOSTVARS)
