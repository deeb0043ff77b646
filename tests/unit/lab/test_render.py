"""What the lab writes: sshd configs, the inventory, the supervisord program, Prometheus."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from support import REPO

from selfheal.lab import render
from selfheal.lab.plan import LabSpec


def test_sshd_config_is_key_only_and_self_contained(tmp_path: Path) -> None:
    host = LabSpec(state_dir=tmp_path).host(2)
    text = render.sshd_config(host, "root")
    lines = set(text.splitlines())
    assert "ListenAddress 10.77.0.12:22" in lines
    assert f"HostKey {host.host_key}" in lines
    assert f"PidFile {tmp_path}/hosts/lab2/sshd.pid" in lines
    assert {"PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no"} <= lines
    assert "AllowUsers root" in lines


def test_inventory_has_what_ansible_and_the_restart_role_need(tmp_path: Path) -> None:
    spec = LabSpec(state_dir=tmp_path, hosts=2)
    inv = yaml.safe_load(render.inventory_text(spec))
    hosts = inv["all"]["children"]["lab"]["hosts"]
    assert list(hosts) == ["lab1", "lab2"]
    lab1 = hosts["lab1"]
    assert lab1["ansible_host"] == "10.77.0.11" and lab1["ansible_port"] == 22
    assert lab1["ansible_ssh_private_key_file"] == str(tmp_path / "ssh" / "id_ed25519")
    assert "StrictHostKeyChecking=no" in lab1["ansible_ssh_common_args"]
    assert "UserKnownHostsFile=/dev/null" in lab1["ansible_ssh_common_args"]
    assert lab1["ansible_python_interpreter"] == sys.executable
    assert (lab1["env"], lab1["owner"], lab1["selfheal_managed"]) == ("lab", "sre", True)
    web = lab1["selfheal_services"]["web"]
    # The keys playbooks/heal_service.yml reads for the service_restart role.
    assert web["manager"] == "supervisord"
    assert web["supervisor_config"] == str(tmp_path / "hosts/lab1/sv/supervisord.conf")
    assert web["health_url"] == "http://10.77.0.11:8080/livez"
    assert {c["url"] for c in web["health_checks"]} == {
        "http://10.77.0.11:8080/livez",
        "http://10.77.0.11:8080/readyz",
    }
    assert all(c["kind"] == "http" and c["name"] for c in web["health_checks"])
    assert lab1["health_checks"] == web["health_checks"]  # for playbooks/health.yml


def test_manager_is_one_the_restart_role_accepts() -> None:
    specs = yaml.safe_load((REPO / "roles/service_restart/meta/argument_specs.yml").read_text())
    choices = specs["argument_specs"]["main"]["options"]["service_restart_manager"]["choices"]
    assert "supervisord" in choices


def test_web_program_runs_the_demo_on_the_host_address(tmp_path: Path) -> None:
    host = LabSpec(state_dir=tmp_path).host(1)
    program = render.web_program(host)
    assert program.name == "web" and not program.autorestart
    assert program.command == (
        f"{sys.executable} -m selfheal.health.demo --host 10.77.0.11 --port 8080 --name web"
    )
    assert "PYTHONPATH=" in program.environment
    other = render.web_program(host, "{python} -m http.server --bind {address} {port}")
    assert other.command == f"{sys.executable} -m http.server --bind 10.77.0.11 8080"


def test_prometheus_config_scrapes_every_host_with_host_and_service_labels(tmp_path) -> None:
    spec = LabSpec(state_dir=tmp_path, mode="loopback", prometheus_port=19090)
    config = render.prometheus_config(spec, tmp_path / "rules")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    groups = jobs["selfheal-lab-web"]["static_configs"]
    assert [g["targets"] for g in groups] == [[f"127.0.0.1{i}:8080"] for i in (1, 2, 3)]
    assert [g["labels"]["host"] for g in groups] == ["lab1", "lab2", "lab3"]
    assert all(g["labels"]["service"] == "web" for g in groups)
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:19090"]
    assert config["rule_files"] == [f"{tmp_path}/rules/*.yml"]


def test_repository_prometheus_config_is_the_default_labs() -> None:
    """monitoring/prometheus/prometheus.yml is what the generator makes for the default lab."""
    spec = LabSpec(state_dir=Path("/nonexistent"))
    expected = render.prometheus_config_text(spec, "rules")
    assert (REPO / "monitoring/prometheus/prometheus.yml").read_text() == expected


def test_postgres_hosts_declare_the_service_and_its_role(tmp_path: Path) -> None:
    spec = LabSpec(state_dir=tmp_path, postgres=True, postgres_port=15432)
    text = render.inventory_text(spec)
    assert "&id" not in text  # no YAML anchors for values used twice
    hosts = yaml.safe_load(text)["all"]["children"]["lab"]["hosts"]
    roles = {name: h.get("selfheal_postgres_role") for name, h in hosts.items()}
    assert roles == {"lab1": "primary", "lab2": "replica", "lab3": None}
    pg = hosts["lab2"]["selfheal_services"]["postgres"]
    assert pg["manager"] == "supervisord" and pg["port"] == 15432
    assert pg["health_checks"] == [
        {"name": "postgres", "kind": "tcp", "host": "10.77.0.12", "port": 15432}
    ]
    assert pg["health_checks"][0] in hosts["lab2"]["health_checks"]
    assert "postgres" not in hosts["lab3"]["selfheal_services"]
