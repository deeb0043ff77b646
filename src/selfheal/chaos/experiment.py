"""Experiment files (YAML), in the Chaos Toolkit model: a steady-state hypothesis, a method
of faults, the healing expected, and rollbacks. Validation names the bad field
(`method[0].target: ...`); `check_against(inventory)` then checks hosts and services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfheal.chaos.faults import Fault, get_fault
from selfheal.errors import ConfigError

PROBE_TYPES = ("http", "health_check", "prometheus", "cert")
DETECTION_SOURCES = ("auto", "alertmanager", "probe")
HEAL_AFTER = ("detection", "fault")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=")
MAX_SECONDS = 1800
_PLAYBOOK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.ya?ml$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Probe:
    name: str
    type: str
    host: str | None = None
    service: str = "web"
    path: str | None = None
    tolerance: Any = None
    timeout: float = 2.0
    query: str | None = None
    min_days: float = 0.0


@dataclass
class Step:
    fault: Fault
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    pause_after: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.fault.name} on {self.target}"


@dataclass
class Detection:
    source: str = "auto"
    alert: str | None = None
    timeout: float = 60.0
    interval: float = 1.0


@dataclass
class Heal:
    playbook: str
    after: str = "detection"
    vars: dict[str, Any] = field(default_factory=dict)
    timeout: float = 180.0


@dataclass
class HealingExpectation:
    runbook: str
    host: str
    within: float

    @property
    def label(self) -> str:
        return f"healing: {self.runbook} on {self.host} within {self.within:g}s"


@dataclass
class Experiment:
    name: str
    title: str
    path: Path | None
    description: str
    tags: list[str]
    probes: list[Probe]
    method: list[Step]
    detection: Detection
    heal: Heal | None
    healing: list[HealingExpectation]
    steady_state_within: float
    detection_within: float | None
    rollbacks: list[Step]

    def check_against(self, inventory) -> None:
        """Every host is one of the inventory's, every service one its host declares."""
        for i, probe in enumerate(self.probes):
            where = f"steady_state.probes[{i}]"
            if probe.type == "prometheus":
                continue
            inventory.check_host(probe.host, f"{where}.host")
            if probe.type in ("http", "health_check"):
                inventory.check_service(probe.host, probe.service, f"{where}.service")
        for label, steps in (("method", self.method), ("rollbacks", self.rollbacks)):
            for i, step in enumerate(steps):
                inventory.check_host(step.target, f"{label}[{i}].target")
                if service := step.fault.service(step.params):
                    inventory.check_service(step.target, service, f"{label}[{i}].params.service")
        for i, expectation in enumerate(self.healing):
            inventory.check_host(expectation.host, f"expect.healing[{i}].host")
        if self.heal and isinstance(target := self.heal.vars.get("target"), str):
            inventory.check_host(target, "heal.vars.target")
        if self.heal:
            from selfheal.chaos.faults import playbooks_dir

            if not (playbooks_dir() / self.heal.playbook).is_file():
                raise ConfigError(
                    f"no playbook {self.heal.playbook!r} in the collection's playbooks/",
                    "heal.playbook",
                )


# -- validation helpers ---------------------------------------------------------------------
def _mapping(value: Any, where: str, required: bool = False) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping", where)
    return value


def _no_extra(data: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"unknown field (allowed: {', '.join(allowed)})", f"{prefix}{key}")


def _str(value: Any, where: str, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("must be a non-empty string", where)
    if pattern and not pattern.match(value):
        raise ConfigError(f"not an allowed name: {value!r}", where)
    return value


def _seconds(value: Any, where: str, default: float, low: float = 0.0) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must be a number of seconds (got {value!r})", where)
    if not low <= value <= MAX_SECONDS:
        raise ConfigError(f"must be between {low:g} and {MAX_SECONDS} seconds", where)
    return float(value)


def _list(value: Any, where: str, required: bool = False) -> list:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise ConfigError("must be a non-empty list" if required else "must be a list", where)
    return value


def _tolerance(kind: str, value: Any, where: str) -> Any:
    if kind == "http":
        value = 200 if value is None else value
        codes = value if isinstance(value, list) else [value]
        if not codes or not all(
            isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
        ):
            raise ConfigError("must be an HTTP status or a list of them", where)
        return codes
    if kind == "prometheus":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"op": "==", "value": float(value)}
        data = _mapping(value, where, required=True)
        _no_extra(data, ("op", "value"), where)
        if data.get("op", "==") not in OPERATORS:
            raise ConfigError(f"must be one of {' '.join(OPERATORS)}", f"{where}.op")
        number = data.get("value")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ConfigError("must be a number", f"{where}.value")
        return {"op": data.get("op", "=="), "value": float(number)}
    if value not in (None, True):
        raise ConfigError("must be true (healthy) or left out", where)
    return True


def _probe(data: Any, where: str) -> Probe:
    data = _mapping(data, where, required=True)
    allowed = ("name", "type", "host", "service", "path", "tolerance", "timeout", "query")
    _no_extra(data, (*allowed, "min_days"), where)
    kind = data.get("type")
    if kind not in PROBE_TYPES:
        raise ConfigError(f"must be one of {', '.join(PROBE_TYPES)}", f"{where}.type")
    probe = Probe(name=_str(data.get("name"), f"{where}.name", _NAME), type=kind)
    probe.timeout = _seconds(data.get("timeout"), f"{where}.timeout", 2.0, 0.1)
    probe.tolerance = _tolerance(kind, data.get("tolerance"), f"{where}.tolerance")
    if kind == "prometheus":
        probe.query = _str(data.get("query"), f"{where}.query")
        for key in ("host", "service", "path"):
            if key in data:
                raise ConfigError("not used by a prometheus probe (put it in the query)", where)
        return probe
    probe.host = _str(data.get("host"), f"{where}.host")
    if kind == "cert":
        days = data.get("min_days", 0)
        if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
            raise ConfigError("must be a number of days, 0 or more", f"{where}.min_days")
        probe.min_days = float(days)
        return probe
    probe.service = _str(data.get("service", "web"), f"{where}.service", _NAME)
    if kind == "http" and data.get("path") is not None:
        path = _str(data.get("path"), f"{where}.path")
        if not path.startswith("/") or "//" in path or any(c.isspace() for c in path):
            raise ConfigError("must be a path on the service, starting with '/'", f"{where}.path")
        probe.path = path
    elif "path" in data:
        raise ConfigError("only http probes take a path", f"{where}.path")
    return probe


def _step(data: Any, where: str) -> Step:
    data = _mapping(data, where, required=True)
    _no_extra(data, ("fault", "target", "params", "pause_after"), where)
    fault = get_fault(data.get("fault"), f"{where}.fault")
    target = _str(data.get("target"), f"{where}.target")
    params = fault.check_params(data.get("params"), f"{where}.params")
    pause = _seconds(data.get("pause_after"), f"{where}.pause_after", 0.0)
    return Step(fault, target, params, pause)


def parse_experiment(data: Any, name: str = "experiment", path: Path | None = None) -> Experiment:
    data = _mapping(data, "(top)", required=True)
    fields = ("version", "title", "description", "tags", "steady_state", "method")
    _no_extra(data, (*fields, "detection", "heal", "expect", "rollbacks"), "")
    if data.get("version", 1) != 1:
        raise ConfigError("only version 1 is known", "version")
    title = _str(data.get("title"), "title")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError("must be a string", "description")
    tags = _list(data.get("tags"), "tags")
    if not all(isinstance(t, str) for t in tags):
        raise ConfigError("must be a list of strings", "tags")

    steady = _mapping(data.get("steady_state"), "steady_state", required=True)
    _no_extra(steady, ("probes",), "steady_state")
    raw_probes = _list(steady.get("probes"), "steady_state.probes", required=True)
    probes = [_probe(p, f"steady_state.probes[{i}]") for i, p in enumerate(raw_probes)]
    names = [p.name for p in probes]
    for i, probe in enumerate(probes):
        if names.index(probe.name) != i:
            raise ConfigError(f"duplicate probe name {probe.name!r}", f"steady_state.probes[{i}]")

    method = [
        _step(s, f"method[{i}]") for i, s in enumerate(_list(data.get("method"), "method", True))
    ]

    raw = _mapping(data.get("detection"), "detection")
    _no_extra(raw, ("source", "alert", "timeout", "interval"), "detection")
    detection = Detection(
        source=raw.get("source", "auto"),
        timeout=_seconds(raw.get("timeout"), "detection.timeout", 60.0, 1),
        interval=_seconds(raw.get("interval"), "detection.interval", 1.0, 0.1),
    )
    if detection.source not in DETECTION_SOURCES:
        raise ConfigError(f"must be one of {', '.join(DETECTION_SOURCES)}", "detection.source")
    if raw.get("alert") is not None:
        detection.alert = _str(raw.get("alert"), "detection.alert", _NAME)
    if detection.source == "alertmanager" and not detection.alert:
        raise ConfigError("an alertmanager detection needs the alert's name", "detection.alert")

    heal = None
    if data.get("heal") is not None:
        raw = _mapping(data.get("heal"), "heal")
        _no_extra(raw, ("playbook", "after", "vars", "timeout"), "heal")
        heal = Heal(playbook=_str(raw.get("playbook"), "heal.playbook", _PLAYBOOK))
        heal.after = raw.get("after", "detection")
        if heal.after not in HEAL_AFTER:
            raise ConfigError(f"must be one of {', '.join(HEAL_AFTER)}", "heal.after")
        heal.timeout = _seconds(raw.get("timeout"), "heal.timeout", 180.0, 1)
        heal_vars = _mapping(raw.get("vars"), "heal.vars")
        for key, value in heal_vars.items():
            if not isinstance(key, str) or not re.match(r"^[a-z_][a-z0-9_]*$", key):
                raise ConfigError("variable names are lower-case identifiers", f"heal.vars.{key}")
            if not isinstance(value, str | int | float | bool):
                raise ConfigError("must be a string, number or boolean", f"heal.vars.{key}")
        first = method[0]
        defaults = {"target": first.target}
        if service := first.fault.service(first.params):
            defaults["service"] = service
        heal.vars = {**defaults, **heal_vars}

    raw = _mapping(data.get("expect"), "expect")
    _no_extra(raw, ("healing", "steady_state_within", "detection_within"), "expect")
    healing = []
    for i, item in enumerate(_list(raw.get("healing"), "expect.healing")):
        where = f"expect.healing[{i}]"
        item = _mapping(item, where, required=True)
        _no_extra(item, ("runbook", "host", "within"), where)
        healing.append(
            HealingExpectation(
                runbook=_str(item.get("runbook"), f"{where}.runbook"),
                host=_str(item.get("host"), f"{where}.host"),
                within=_seconds(item.get("within"), f"{where}.within", 60.0, 1),
            )
        )
    within = _seconds(raw.get("steady_state_within"), "expect.steady_state_within", 60.0, 1)
    detect_within = None
    if raw.get("detection_within") is not None:
        detect_within = _seconds(raw.get("detection_within"), "expect.detection_within", 0, 0.1)

    if data.get("rollbacks") is None:
        rollbacks = list(reversed(method))
    else:
        raw_rb = _list(data.get("rollbacks"), "rollbacks")
        rollbacks = [_step(s, f"rollbacks[{i}]") for i, s in enumerate(raw_rb)]

    return Experiment(
        name=name,
        title=title,
        path=path,
        description=description.strip(),
        tags=tags,
        probes=probes,
        method=method,
        detection=detection,
        heal=heal,
        healing=healing,
        steady_state_within=within,
        detection_within=detect_within,
        rollbacks=rollbacks,
    )


def experiments_dir() -> Path:
    from selfheal.chaos.faults import playbooks_dir

    return playbooks_dir() / "chaos" / "experiments"


def resolve(name_or_path: str | Path) -> Path:
    """A path to an experiment file, or the name of one in playbooks/chaos/experiments/."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if _NAME.match(str(name_or_path)):
        for suffix in (".yml", ".yaml", ""):
            candidate = experiments_dir() / f"{name_or_path}{suffix}"
            if candidate.is_file():
                return candidate
    raise ConfigError(
        f"no experiment file {str(name_or_path)!r} (a path, or a name listed by "
        "`selfheal chaos list`)",
        "experiment",
    )


def load_experiment(name_or_path: str | Path) -> Experiment:
    path = resolve(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", str(path)) from None
    name = path.stem
    try:
        return parse_experiment(data, name, path)
    except ConfigError as exc:
        raise ConfigError(str(exc), path.name) from None


def list_experiments() -> list[Path]:
    folder = experiments_dir()
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]) if folder.is_dir() else []
