"""The lab's address plan and naming: pure logic, no root needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfheal.errors import ConfigError
from selfheal.lab.plan import LabSpec, default_state_dir


def test_default_netns_plan(tmp_path: Path) -> None:
    spec = LabSpec(state_dir=tmp_path)
    hosts = spec.all_hosts()
    assert [h.name for h in hosts] == ["lab1", "lab2", "lab3"]
    assert [h.address for h in hosts] == ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
    assert [h.netns for h in hosts] == ["selfheal-lab-1", "selfheal-lab-2", "selfheal-lab-3"]
    assert {h.ssh_port for h in hosts} == {22}
    assert spec.gateway == "10.77.0.1" and spec.prefixlen == 24
    assert hosts[0].veth == "shlab0v1" and hosts[0].veth_peer == "shlab0p1"
    assert hosts[0].url("/livez") == "http://10.77.0.11:8080/livez"
    assert hosts[1].dir == tmp_path / "hosts" / "lab2"
    assert spec.inventory == tmp_path / "inventory" / "hosts.yml"


def test_loopback_plan_has_a_port_per_host_and_no_network(tmp_path: Path) -> None:
    spec = LabSpec(state_dir=tmp_path, mode="loopback", hosts=2)
    hosts = spec.all_hosts()
    assert [h.address for h in hosts] == ["127.0.0.11", "127.0.0.12"]
    assert [h.ssh_port for h in hosts] == [2221, 2222]
    assert all(h.netns is None and h.veth is None for h in hosts)


def test_names_and_subnet_are_parameters(tmp_path: Path) -> None:
    spec = LabSpec(
        state_dir=tmp_path, hosts=5, netns_prefix="t-", bridge="tbr", subnet="10.9.8.0/24"
    )
    assert spec.host(5).address == "10.9.8.15"
    assert spec.host(5).netns == "t-5" and spec.host(5).veth == "tbrv5"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"hosts": 0}, "hosts"),
        ({"hosts": 51}, "hosts"),
        ({"mode": "docker"}, "mode"),
        ({"subnet": "10.0.0.0/29"}, "subnet"),
        ({"subnet": "not-a-net"}, "subnet"),
        ({"mode": "loopback", "subnet": "10.0.0.0/24"}, "subnet"),
        ({"bridge": "a-bridge-name-too-long"}, "bridge"),
        ({"netns_prefix": "bad name"}, "netns_prefix"),
        ({"web_port": 70000}, "ports"),
    ],
)
def test_bad_options_name_the_field(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        LabSpec(state_dir=tmp_path, **kwargs)


def test_state_dir_too_long_for_a_socket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unix socket"):
        LabSpec(state_dir=tmp_path / ("x" * 100))


def test_spec_round_trips_through_the_record(tmp_path: Path) -> None:
    spec = LabSpec(state_dir=tmp_path, hosts=4, mode="loopback", subnet="127.5.0.0/24")
    again = LabSpec.from_dict(spec.to_dict())
    assert again == spec and again.all_hosts() == spec.all_hosts()


def test_default_state_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SELFHEAL_LAB_DIR", str(tmp_path / "lab"))
    assert default_state_dir() == tmp_path / "lab"
    monkeypatch.delenv("SELFHEAL_LAB_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "selfheal" / "lab"


def test_postgres_needs_two_hosts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^hosts:.*2 hosts"):
        LabSpec(state_dir=tmp_path, hosts=1, postgres=True)
    spec = LabSpec(state_dir=tmp_path, hosts=2, postgres=True)
    assert [spec.postgres_role(h) for h in spec.all_hosts()] == ["primary", "replica"]
    assert LabSpec(state_dir=tmp_path).postgres_role(spec.host(1)) is None
