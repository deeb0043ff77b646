"""The policy file: load, validate (errors name the bad field's path), compile.

Structure is checked against `policy.schema.json` (the same file editors use); references
between sections, cron schedules, time zones and dates are checked here. Compiling turns the
file into immutable objects with precompiled matchers and schedules, so a decision never
re-parses anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from selfheal.errors import ConfigError
from selfheal.policy.cron import Cron, CronError
from selfheal.policy.windows import Window, parse_date_span

RISKS = ("low", "medium", "high", "critical")
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int | float) -> timedelta:
    """`90s`, `15m`, `1h30m`, `2d`, `1w`, or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is not a boolean")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = value.strip()
    if not text or _DURATION.sub("", text):
        raise ValueError(f"{value!r} is not a duration like 90s, 15m, 1h30m, 2d")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(text)))


def parse_time(text: str | None, where: str = "--at") -> datetime:
    """ISO 8601 (`2026-12-24T10:00`, `...Z`, `...+01:00`); no zone means UTC; None is now."""
    if text is None or text == "now":
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not an ISO 8601 time", where) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out)


# -- compiled policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    quorum: int = 1
    timeout: timedelta = timedelta(hours=1)
    on_timeout: str = "deny"  # deny | approve | manual

    def to_dict(self) -> dict[str, Any]:
        return {
            "users": sorted(self.users),
            "groups": sorted(self.groups),
            "quorum": self.quorum,
            "timeout": format_duration(self.timeout),
            "on_timeout": self.on_timeout,
        }


@dataclass(frozen=True)
class Budget:
    count: int
    per: timedelta


@dataclass(frozen=True)
class CircuitBreaker:
    failures: int = 3
    window: timedelta = timedelta(hours=1)
    cooldown: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class Unhealthy:
    """`max_unhealthy`: a host count, or a percentage of the service's hosts."""

    value: float
    percent: bool

    @classmethod
    def parse(cls, raw: int | str) -> Unhealthy:
        if isinstance(raw, str):
            return cls(float(raw.rstrip("%")), True)
        return cls(float(raw), False)

    def exceeded(self, unhealthy: int, total: int) -> bool:
        if self.percent:
            return total > 0 and unhealthy * 100.0 > self.value * total
        return unhealthy > self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


@dataclass(frozen=True)
class Limits:
    runs_per_target: Budget | None = Budget(3, timedelta(hours=1))
    runs_per_runbook: Budget | None = None
    max_concurrent: int = 10
    max_concurrent_per_target: int = 1
    lock_ttl: timedelta = timedelta(minutes=30)
    max_unhealthy: Unhealthy | None = Unhealthy(30.0, True)
    storm_cooldown: timedelta = timedelta(minutes=15)
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    daily_cost_budget: float | None = None
    escalate_after_failures: int = 2


@dataclass(frozen=True)
class Tier:
    name: str
    mode: str
    approval: Approval
    limits: Limits


@dataclass(frozen=True)
class Service:
    name: str
    tier: int | None = None
    slo: str | None = None
    rto: timedelta | None = None
    owner: str | None = None
    environment: str | None = None
    dependencies: tuple[str, ...] = ()
    escalation: str | None = None
    hosts: frozenset[str] | None = None
    max_unhealthy: Unhealthy | None = None
    storm_cooldown: timedelta | None = None


@dataclass(frozen=True)
class Runbook:
    name: str
    risk: str
    playbook: str | None = None
    job_template: str | None = None
    cost: float = 0.0
    timeout: timedelta = timedelta(minutes=30)
    url: str | None = None
    description: str = ""
    verify: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class EscalationStep:
    target: str
    timeout: timedelta | None

    def to_dict(self) -> dict[str, Any]:
        timeout = format_duration(self.timeout) if self.timeout else None
        return {"target": self.target, "timeout": timeout}


@dataclass(frozen=True)
class Route:
    index: int
    name: str
    equal: tuple[tuple[str, str], ...]
    regex: tuple[tuple[str, re.Pattern[str]], ...]
    runbook: str | None
    escalate: tuple[EscalationStep, ...]
    service: str | None
    service_label: str
    target_label: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.equal:
            if labels.get(key) != value:
                return False
        for key, pattern in self.regex:
            if pattern.fullmatch(labels.get(key, "")) is None:
                return False
        return True


@dataclass(frozen=True)
class Compliance:
    required_tags: tuple[tuple[str, str | None], ...] = ()  # (name, value or None = any)
    tag_vars: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    version: int
    timezone: ZoneInfo
    tiers: Mapping[str, Tier]
    services: Mapping[str, Service]
    runbooks: Mapping[str, Runbook]
    routes: tuple[Route, ...]
    windows: tuple[Window, ...]
    limits: Limits
    compliance: Compliance
    break_glass: Approval
    source: str | None = None
    _by_alertname: Mapping[str, tuple[Route, ...]] = field(default_factory=dict, repr=False)
    _generic_routes: tuple[Route, ...] = field(default=(), repr=False)
    _scoped: dict[tuple, tuple[Window, ...]] = field(default_factory=dict, repr=False)

    def windows_for(
        self, service: str | None, risk: str | None, runbook: str | None, env: str | None
    ) -> tuple[Window, ...]:
        """The windows whose scope covers this action (memoised per scope)."""
        key = (service, risk, runbook, env)
        found = self._scoped.get(key)
        if found is None:
            found = tuple(w for w in self.windows if w.applies(service, risk, runbook, env))
            if len(self._scoped) < 100_000:
                self._scoped[key] = found
        return found

    def route_for(self, labels: Mapping[str, str]) -> Route | None:
        """The first route, in file order, whose matchers all hold."""
        specific = self._by_alertname.get(labels.get("alertname", ""), ())
        best: Route | None = None
        for route in specific:
            if route.matches(labels):
                best = route
                break
        for route in self._generic_routes:
            if best is not None and route.index > best.index:
                break
            if route.matches(labels):
                return route
        return best

    def limits_for(self, risk: str) -> Limits:
        return self.tiers[risk].limits


# -- defaults -----------------------------------------------------------------------------

DEFAULT_TIER_MODES = {"low": "auto", "medium": "auto", "high": "approval", "critical": "manual"}
# "medium: auto with tighter limits"
DEFAULT_TIER_LIMITS: dict[str, dict[str, Any]] = {
    "medium": {"runs_per_target": {"count": 2, "per": "1h"}, "max_unhealthy": "20%"},
}


# -- loading ------------------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the policy file (shipped as `policy.schema.json`)."""
    text = resources.files("selfheal.policy").joinpath("policy.schema.json").read_text()
    return json.loads(text)


def load_policy(path: str | Path) -> Policy:
    """Read, validate and compile a policy file. Raises ConfigError naming the bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read policy: {exc.strerror or exc}", str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", str(path)) from exc
    return compile_policy(data, source=str(path))


def _path(parts) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _schema_message(error) -> tuple[str, str]:
    """A jsonschema error as (path, plain message)."""
    path = list(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        key = extra[0] if extra else "?"
        known = ", ".join(sorted(allowed))
        return _path([*path, key]), f"unknown key (expected one of: {known})"
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return _path([*path, missing]), "is required"
    if validator == "enum":
        return _path(path), "must be one of " + ", ".join(str(v) for v in error.validator_value)
    if validator == "const":
        return _path(path), f"must be {error.validator_value!r}"
    if validator == "type":
        expected = error.validator_value
        if isinstance(expected, list):
            expected = " or ".join(expected)
        article = "an" if str(expected)[0] in "aeiou" else "a"
        return _path(path), f"must be {article} {expected}"
    if validator == "oneOf":
        hint = error.schema.get("description") or "has the wrong form"
        return _path(path), f"must be {hint[0].lower()}{hint[1:]}".rstrip(".")
    if validator == "pattern":
        return _path(path), f"{error.instance!r} does not match {error.validator_value}"
    if validator == "propertyNames":
        return _path(path), f"{error.instance!r}: names may use letters, digits, '_', '.', '-'"
    if validator in ("minimum", "minItems", "minLength"):
        return _path(path), f"must be at least {error.validator_value}" + (
            " item(s)"
            if validator == "minItems"
            else " character(s)"
            if validator == "minLength"
            else ""
        )
    return _path(path), error.message


def validate(data: Any) -> None:
    """Structural validation against the JSON Schema; raises ConfigError on the first error."""
    import jsonschema

    if not isinstance(data, dict):
        raise ConfigError("must be a mapping with `version: 1`", "(top level)")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        # The deepest error is the most specific (oneOf reports both alternatives).
        error = max(
            errors[:1] + [e for e in errors if e.absolute_path == errors[0].absolute_path],
            key=lambda e: len(e.absolute_path),
        )
        where, message = _schema_message(error)
        raise ConfigError(message, where)


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r} (use an IANA name)", where) from exc


def _approval(raw: Mapping[str, Any] | None, base: Approval | None = None) -> Approval:
    base = base or Approval()
    raw = raw or {}
    return Approval(
        users=frozenset(raw.get("users", base.users)),
        groups=frozenset(raw.get("groups", base.groups)),
        quorum=raw.get("quorum", base.quorum),
        timeout=parse_duration(raw["timeout"]) if "timeout" in raw else base.timeout,
        on_timeout=raw.get("on_timeout", base.on_timeout),
    )


def _limits(raw: Mapping[str, Any] | None, base: Limits) -> Limits:
    raw = raw or {}
    values: dict[str, Any] = {}
    for key in ("runs_per_target", "runs_per_runbook"):
        if key in raw:
            values[key] = Budget(raw[key]["count"], parse_duration(raw[key]["per"]))
    for key in ("max_concurrent", "max_concurrent_per_target", "escalate_after_failures"):
        if key in raw:
            values[key] = raw[key]
    for key in ("lock_ttl", "storm_cooldown"):
        if key in raw:
            values[key] = parse_duration(raw[key])
    if "max_unhealthy" in raw:
        values["max_unhealthy"] = Unhealthy.parse(raw["max_unhealthy"])
    if "daily_cost_budget" in raw:
        values["daily_cost_budget"] = float(raw["daily_cost_budget"])
    if "circuit_breaker" in raw:
        cb, old = raw["circuit_breaker"], base.circuit_breaker
        values["circuit_breaker"] = CircuitBreaker(
            failures=cb.get("failures", old.failures),
            window=parse_duration(cb["window"]) if "window" in cb else old.window,
            cooldown=parse_duration(cb["cooldown"]) if "cooldown" in cb else old.cooldown,
        )
    return Limits(**{**base.__dict__, **values})


def _required_tag(text: str) -> tuple[str, str | None]:
    name, sep, value = text.partition("=")
    return (name.strip(), value.strip() if sep else None)


def compile_policy(data: Any, source: str | None = None) -> Policy:
    """Validate a parsed policy document and compile it."""
    validate(data)
    tz = _zone(data.get("timezone", "UTC"), "timezone")
    limits = _limits(data.get("limits"), Limits())
    raw_tiers = data.get("risk_tiers", {})
    tiers = {}
    for risk in RISKS:
        raw = raw_tiers.get(risk, {})
        tier_limits = raw.get("limits")
        if tier_limits is None:
            tier_limits = DEFAULT_TIER_LIMITS.get(risk) if risk not in raw_tiers else None
        tiers[risk] = Tier(
            name=risk,
            mode=raw.get("mode", DEFAULT_TIER_MODES[risk]),
            approval=_approval(raw.get("approval")),
            limits=_limits(tier_limits, limits),
        )

    services = {}
    for name, raw in data.get("services", {}).items():
        services[name] = Service(
            name=name,
            tier=raw.get("tier"),
            slo=raw.get("slo"),
            rto=parse_duration(raw["rto"]) if "rto" in raw else None,
            owner=raw.get("owner"),
            environment=raw.get("environment"),
            dependencies=tuple(raw.get("dependencies", ())),
            escalation=raw.get("escalation"),
            hosts=frozenset(raw["hosts"]) if "hosts" in raw else None,
            max_unhealthy=Unhealthy.parse(raw["max_unhealthy"]) if "max_unhealthy" in raw else None,
            storm_cooldown=parse_duration(raw["storm_cooldown"])
            if "storm_cooldown" in raw
            else None,
        )
    for name, service in services.items():
        for i, dep in enumerate(service.dependencies):
            if dep not in services:
                raise ConfigError(f"unknown service {dep!r}", f"services.{name}.dependencies[{i}]")

    runbooks = {}
    for name, raw in data.get("runbooks", {}).items():
        if "playbook" in raw and "job_template" in raw:
            raise ConfigError("give playbook or job_template, not both", f"runbooks.{name}")
        if "playbook" not in raw and "job_template" not in raw:
            raise ConfigError("needs a playbook or a job_template", f"runbooks.{name}")
        runbooks[name] = Runbook(
            name=name,
            risk=raw["risk"],
            playbook=raw.get("playbook"),
            job_template=raw.get("job_template"),
            cost=float(raw.get("cost", 0.0)),
            timeout=parse_duration(raw["timeout"]) if "timeout" in raw else timedelta(minutes=30),
            url=raw.get("url"),
            description=raw.get("description", ""),
            verify=tuple(raw.get("verify", ())),
        )

    routes = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data.get("routes", [])):
        where = f"routes[{i}]"
        if raw["name"] in seen:
            raise ConfigError(
                f"duplicate route name {raw['name']!r} (also routes[{seen[raw['name']]}])",
                f"{where}.name",
            )
        seen[raw["name"]] = i
        if ("runbook" in raw) == ("escalate" in raw):
            raise ConfigError("needs exactly one of runbook or escalate", where)
        if "runbook" in raw and raw["runbook"] not in runbooks:
            raise ConfigError(f"unknown runbook {raw['runbook']!r}", f"{where}.runbook")
        if "service" in raw and raw["service"] not in services:
            raise ConfigError(f"unknown service {raw['service']!r}", f"{where}.service")
        if not raw.get("match") and not raw.get("match_re"):
            raise ConfigError("needs match or match_re (a route must not match everything)", where)
        regex = []
        for key, pattern in raw.get("match_re", {}).items():
            try:
                regex.append((key, re.compile(pattern)))
            except re.error as exc:
                raise ConfigError(
                    f"bad regular expression: {exc}", f"{where}.match_re.{key}"
                ) from exc
        escalate = tuple(
            EscalationStep(s["target"], parse_duration(s["timeout"]) if "timeout" in s else None)
            for s in raw.get("escalate", ())
        )
        routes.append(
            Route(
                index=i,
                name=raw["name"],
                equal=tuple(raw.get("match", {}).items()),
                regex=tuple(regex),
                runbook=raw.get("runbook"),
                escalate=escalate,
                service=raw.get("service"),
                service_label=raw.get("service_label", "service"),
                target_label=raw.get("target_label", "instance"),
            )
        )

    windows = []
    names: set[str] = set()
    for i, raw in enumerate(data.get("windows", [])):
        where = f"windows[{i}]"
        if raw["name"] in names:
            raise ConfigError(f"duplicate window name {raw['name']!r}", f"{where}.name")
        names.add(raw["name"])
        wtz = _zone(raw.get("timezone", "UTC"), f"{where}.timezone")
        cron = None
        if "schedule" in raw:
            try:
                cron = Cron.parse(raw["schedule"], wtz)
            except CronError as exc:
                raise ConfigError(f"bad cron schedule: {exc}", f"{where}.schedule") from exc
            if "duration" not in raw:
                raise ConfigError("is required with schedule", f"{where}.duration")
        elif "duration" in raw:
            raise ConfigError("only makes sense with schedule", f"{where}.duration")
        if cron is None and not raw.get("dates"):
            raise ConfigError("needs a schedule (with duration) or dates", where)
        spans = []
        for j, text in enumerate(raw.get("dates", ())):
            try:
                spans.append(parse_date_span(text))
            except ValueError as exc:
                raise ConfigError(f"bad date: {exc}", f"{where}.dates[{j}]") from exc
        duration = parse_duration(raw["duration"]) if "duration" in raw else timedelta(0)
        if cron is not None and duration <= timedelta(0):
            raise ConfigError("must be longer than 0s", f"{where}.duration")
        for key, known in (("services", services), ("runbooks", runbooks)):
            for j, name in enumerate(raw.get(key, ())):
                if name not in known:
                    raise ConfigError(f"unknown {key[:-1]} {name!r}", f"{where}.{key}[{j}]")
        windows.append(
            Window(
                name=raw["name"],
                kind=raw["kind"],
                tz=wtz,
                cron=cron,
                duration=duration,
                dates=tuple(spans),
                services=frozenset(raw.get("services", ())),
                risks=frozenset(raw.get("risks", ())),
                runbooks=frozenset(raw.get("runbooks", ())),
                environments=frozenset(raw.get("environments", ())),
                match_all=raw.get("match", "any") == "all",
                overrun=raw.get("overrun", False),
                break_glass=raw.get("break_glass", True),
                description=raw.get("description", ""),
            )
        )

    compliance_raw = data.get("compliance", {})
    compliance = Compliance(
        required_tags=tuple(_required_tag(t) for t in compliance_raw.get("required_tags", ())),
        tag_vars=tuple(compliance_raw.get("tag_vars", ())),
    )

    by_alertname: dict[str, list[Route]] = {}
    generic: list[Route] = []
    for route in routes:
        name = dict(route.equal).get("alertname")
        if name is None:
            generic.append(route)
        else:
            by_alertname.setdefault(name, []).append(route)

    return Policy(
        version=data["version"],
        timezone=tz,
        tiers=tiers,
        services=services,
        runbooks=runbooks,
        routes=tuple(routes),
        windows=tuple(windows),
        limits=limits,
        compliance=compliance,
        break_glass=_approval(data.get("break_glass")),
        source=source,
        _by_alertname={k: tuple(v) for k, v in by_alertname.items()},
        _generic_routes=tuple(generic),
    )
