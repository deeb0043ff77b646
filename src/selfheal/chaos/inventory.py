"""The lab's generated inventory, read on the controller: its hosts and what they declare.

Faults and probes only ever name hosts of this inventory; addresses, ports, services and
paths come from it (and from the lab's record beside it), never from the experiment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from selfheal.errors import ConfigError, SelfhealError


def default_inventory() -> Path:
    from selfheal.lab.plan import default_state_dir

    return default_state_dir() / "inventory" / "hosts.yml"


def _walk(group: dict, inherited: dict, hosts: dict[str, dict]) -> None:
    group_vars = {**inherited, **(group.get("vars") or {})}
    for name, host_vars in (group.get("hosts") or {}).items():
        hosts[name] = {**group_vars, **hosts.get(name, {}), **(host_vars or {})}
    for child in (group.get("children") or {}).values():
        _walk(child or {}, group_vars, hosts)


@dataclass
class LabInventory:
    path: Path
    hosts: dict[str, dict[str, Any]]
    group_vars: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path | None = None) -> LabInventory:
        path = Path(path) if path else default_inventory()
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SelfhealError(
                f"cannot read the lab inventory {path}: {exc.strerror} (is the lab up? "
                "`selfheal lab up`, or give --inventory)"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", str(path)) from None
        top = (data or {}).get("all") if isinstance(data, dict) else None
        if not isinstance(top, dict):
            raise ConfigError("not an inventory with an `all` group", str(path))
        hosts: dict[str, dict] = {}
        _walk(top, {}, hosts)
        group_vars = top.get("vars") or {}
        if not hosts or "selfheal_lab_state_dir" not in group_vars:
            raise ConfigError(
                "not a selfheal lab inventory (no hosts, or no selfheal_lab_state_dir): faults "
                "run only against the inventory `selfheal lab up` generates",
                str(path),
            )
        return cls(path.absolute(), hosts, group_vars)

    # -- the lab beside it -----------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return Path(self.group_vars["selfheal_lab_state_dir"])

    @property
    def mode(self) -> str:
        return str(self.group_vars.get("selfheal_lab_mode", ""))

    @property
    def chaos_dir(self) -> Path:
        return self.state_dir / "chaos"

    def lab_record(self) -> dict:
        try:
            data = json.loads((self.state_dir / "lab.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def monitoring_url(self, name: str) -> str | None:
        """`prometheus` / `alertmanager` URL when the lab runs them (`lab up --monitoring`)."""
        entry = (self.lab_record().get("monitoring") or {}).get(name) or {}
        return entry.get("url")

    # -- hosts -----------------------------------------------------------------------------
    def check_host(self, name: Any, where: str) -> str:
        if not isinstance(name, str) or name not in self.hosts:
            known = ", ".join(sorted(self.hosts))
            raise ConfigError(f"{name!r} is not a host of the inventory (hosts: {known})", where)
        return name

    def services(self, host: str) -> dict[str, dict]:
        return self.hosts[host].get("selfheal_services") or {}

    def check_service(self, host: str, service: str, where: str) -> dict:
        services = self.services(host)
        if service not in services:
            declared = ", ".join(services) or "none"
            raise ConfigError(
                f"{host} declares no service {service!r} (declared: {declared})", where
            )
        return services[service]

    def service_base_url(self, host: str, service: str, where: str) -> str:
        svc = self.check_service(host, service, where)
        url = svc.get("health_url") or svc.get("metrics_url")
        if not url:
            raise ConfigError(f"{host}'s service {service!r} has no health_url", where)
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def service_health_path(self, host: str, service: str) -> str:
        url = self.services(host).get(service, {}).get("health_url") or "/"
        return urlsplit(url).path or "/"

    def cert_path(self, host: str) -> Path:
        """What the expire_cert fault replaces on `host` (see playbooks/chaos/expire_cert.yml)."""
        declared = self.hosts[host].get("selfheal_tls_cert")
        return Path(declared) if declared else self.chaos_dir / host / "tls" / "server.crt"
