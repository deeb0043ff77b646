"""The fault catalog: every fault has a playbook with a rollback, parameters are capped."""

from __future__ import annotations

import pytest
import yaml

from selfheal.chaos.faults import FAULTS, get_fault, playbooks_dir
from selfheal.errors import ConfigError


def test_every_fault_has_a_playbook_with_a_rollback() -> None:
    for fault in FAULTS.values():
        path = playbooks_dir() / "chaos" / fault.playbook
        text = path.read_text()
        plays = yaml.safe_load(text)
        assert plays[0]["ansible.builtin.import_playbook"] == "_check_target.yml", path
        assert "always:" in text and "Roll back" in text, path
        assert "Report the fault" in text, path


def test_extravars() -> None:
    hog = FAULTS["hog_cpu"]
    params = hog.check_params({"duration": 5, "workers": 2, "fail_midway": True}, "p")
    assert hog.extravars(params) == {"chaos_duration": 5, "workers": 2, "chaos_fail_midway": True}
    assert FAULTS["stop_postgres"].extravars({}) == {"service": "postgres"}
    assert FAULTS["stop_postgres"].service({}) == "postgres"
    assert FAULTS["kill_service"].service({}) == "web"
    assert FAULTS["fill_disk"].service({}) is None


@pytest.mark.parametrize(
    ("fault", "params", "message"),
    [
        ("hog_cpu", {"duration": 121}, "at most 120"),
        ("hog_cpu", {"workers": 0}, "at least 1"),
        ("hog_cpu", {"workers": 1.5}, "whole number"),
        ("fill_disk", {"size_mb": 1025}, "at most 1024"),
        ("fill_disk", {"size_mb": "1G"}, "must be a number"),
        ("netem", {"loss_pct": 101}, "at most 100"),
        ("kill_service", {"service": "web;rm"}, "letters, digits"),
        ("partition", {"anything": 1}, "unknown parameter"),
    ],
)
def test_caps(fault: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FAULTS[fault].check_params(params, "params")


def test_unknown_fault() -> None:
    with pytest.raises(ConfigError, match="unknown fault"):
        get_fault("format_disk", "fault")
