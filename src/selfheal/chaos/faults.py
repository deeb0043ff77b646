"""The fault catalog: what each fault does, its playbook, its parameters and their caps.

Every fault is a playbook under `playbooks/chaos/` taking `target` (one lab host),
`chaos_phase` (`inject`, `rollback` or `full`) and its parameters as extra vars. The caps
here are checked again by the playbooks, so a direct `ansible-playbook` run is bounded too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfheal.errors import ConfigError


@dataclass(frozen=True)
class Param:
    name: str
    kind: type  # int, float or str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    var: str = ""  # the playbook's extra var; "" = the same name
    help: str = ""

    def check(self, value: Any, where: str) -> Any:
        if self.kind is str:
            if not isinstance(value, str) or not value or len(value) > 64:
                raise ConfigError("must be a non-empty string of at most 64 characters", where)
            if not all(c.isalnum() or c in "-_." for c in value):
                raise ConfigError(f"letters, digits, '-', '_' and '.' only (got {value!r})", where)
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"must be a number (got {value!r})", where)
        if self.kind is int and value != int(value):
            raise ConfigError(f"must be a whole number (got {value!r})", where)
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"must be at least {self.minimum:g} (got {value!r})", where)
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"must be at most {self.maximum:g} (got {value!r})", where)
        return self.kind(value)


SERVICE = Param("service", str, "web", help="a supervisord service the host declares")
# Tests of the rollback: the playbook fails right after injecting the fault.
FAIL_MIDWAY = Param("fail_midway", bool, False, var="chaos_fail_midway")


@dataclass(frozen=True)
class Fault:
    name: str
    playbook: str  # under playbooks/chaos/
    summary: str
    rollback: str
    params: tuple[Param, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)  # extra vars the fault always sets
    netns_only: bool = False  # skipped (not failed) in loopback mode
    prepare: bool = False  # has a `prepare` phase, run before the steady state is checked

    def extravars(self, params: dict[str, Any]) -> dict[str, Any]:
        """The playbook's extra vars for these (already checked) parameters."""
        out = dict(self.fixed)
        for p in self.params:
            if p.name in params:
                out[p.var or p.name] = params[p.name]
        if params.get("fail_midway"):
            out[FAIL_MIDWAY.var] = True
        return out

    def check_params(self, params: Any, where: str) -> dict[str, Any]:
        if params is None:
            return {}
        if not isinstance(params, dict):
            raise ConfigError("must be a mapping of parameter names to values", where)
        known = {p.name: p for p in self.params}
        out: dict[str, Any] = {}
        for key, value in params.items():
            if key == "fail_midway":
                if not isinstance(value, bool):
                    raise ConfigError("must be true or false", f"{where}.{key}")
                out[key] = value
                continue
            if key not in known:
                names = ", ".join(known) or "none"
                raise ConfigError(f"unknown parameter of {self.name} (known: {names})", where)
            out[key] = known[key].check(value, f"{where}.{key}")
        return out

    def service(self, params: dict[str, Any]) -> str | None:
        """The service the fault acts on, if it acts on one."""
        if "service" in self.fixed:
            return self.fixed["service"]
        if any(p.name == "service" for p in self.params):
            return params.get("service", SERVICE.default)
        return None


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "kill_service",
            "kill_service.yml",
            "SIGKILL a supervisord service (it stays down: autorestart is off in the lab)",
            "start the service",
            (SERVICE,),
        ),
        Fault(
            "stop_service",
            "stop_service.yml",
            "stop a supervisord service (supervisorctl stop)",
            "start the service",
            (SERVICE,),
        ),
        Fault(
            "crashloop_service",
            "crashloop_service.yml",
            "kill a service and kill it again whenever it is started, for a while",
            "stop the loop, start the service",
            (
                SERVICE,
                Param("duration", int, 60, 1, 300, var="chaos_duration", help="seconds"),
                Param("crash_after", float, 2.0, 0.2, 60, help="seconds a start survives"),
            ),
        ),
        Fault(
            "fill_disk",
            "fill_disk.yml",
            "write one file of size_mb MiB under the lab's own directory for the host",
            "remove the file",
            (Param("size_mb", int, 64, 1, 1024, help="MiB, at most half of the free space"),),
        ),
        Fault(
            "hog_cpu",
            "hog_cpu.yml",
            "busy-loop `workers` processes for `duration` seconds (they stop by themselves)",
            "kill the busy processes",
            (
                Param("duration", int, 30, 1, 120, var="chaos_duration", help="seconds"),
                Param("workers", int, 1, 1, 8, help="busy processes"),
            ),
        ),
        Fault(
            "netem",
            "netem.yml",
            "tc netem delay/loss on the host's eth0 in its namespace (netns mode, sch_netem)",
            "delete the qdisc",
            (
                Param("delay_ms", int, 200, 0, 5000, help="added latency"),
                Param("loss_pct", float, 0.0, 0, 100, help="packet loss"),
            ),
            netns_only=True,
        ),
        Fault(
            "partition",
            "partition.yml",
            "set the host's eth0 down in its namespace (netns mode)",
            "set the link up",
            netns_only=True,
        ),
        Fault(
            "stop_postgres",
            "stop_service.yml",
            "stop the host's PostgreSQL (a dependency; lab up --postgres)",
            "start PostgreSQL",
            fixed={"service": "postgres"},
        ),
        Fault(
            "expire_cert",
            "expire_cert.yml",
            "replace the host's certificate by an expired one (selfheal_tls_cert, or the "
            "lab's demo certificate)",
            "restore the original certificate",
            prepare=True,
        ),
    )
}


def playbooks_dir() -> Path:
    """The playbooks/ directory: the checkout's when run from one, else the collection's."""
    checkout = Path(__file__).resolve().parents[3] / "playbooks"
    if (checkout / "chaos").is_dir():
        return checkout
    from selfheal.runner import collection_root

    return collection_root() / "playbooks"


def get_fault(name: Any, where: str) -> Fault:
    if not isinstance(name, str) or name not in FAULTS:
        raise ConfigError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})", where)
    return FAULTS[name]
