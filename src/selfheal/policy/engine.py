"""The decision: `evaluate(policy, request, state, now) -> Decision`.

`evaluate` is pure: it reads the policy, the request and the state and changes none of them.
Every guardrail runs in the same pass and adds a reason; the decision's mode is the most
restrictive effect among them (auto < approval < manual < deny). The dispatcher then calls
`record_decision` (remembers a blast-radius storm), `begin_run` (takes the concurrency
slot atomically and counts the run) and `finish_run` (outcome, frees the slot).

Alert content is untrusted: its labels only select among routes, services and runbooks the
policy already names, and a target it names must be a known host (inventory or the service's
hosts); nothing in an alert can add a runbook, a host, or change a target's environment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from selfheal.policy.model import Approval, Limits, Policy, Route, Runbook, format_duration
from selfheal.policy.state import State

MODES = ("auto", "approval", "manual", "deny")
_RANK = {"info": -1, "auto": 0, "approval": 1, "manual": 2, "deny": 3}


@dataclass(frozen=True)
class Request:
    """A proposed remediation. `labels` come from the alert (untrusted)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    runbook: str | None = None  # set by a trusted caller (a playbook); else the route picks
    target: str | None = None  # set by a trusted caller; else the route's target label
    service: str | None = None
    requester: str | None = None
    request_id: str | None = None
    # Known targets and their tags/labels: {"web-01": {"selfheal_managed": True, ...}}.
    inventory: Mapping[str, Mapping[str, Any]] | None = None
    break_glass: str | None = None  # the reason, when someone asks to override a freeze
    started_at: datetime | None = None  # set when the action is already running (overrun)
    # Hosts the caller knows to be down (the dispatcher: targets of its open incidents). They
    # count against the service's max_unhealthy with those in remediation.
    down: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    effect: str = "info"  # info | auto | approval | manual | deny

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "effect": self.effect}


@dataclass(frozen=True)
class Decision:
    mode: str  # auto | approval | manual | deny
    reasons: tuple[Reason, ...]
    request_id: str
    at: datetime
    runbook: str | None = None
    route: str | None = None
    service: str | None = None
    target: str | None = None
    environment: str | None = None
    risk: str | None = None
    requester: str | None = None
    approvers: Approval | None = None
    break_glass: bool = False
    break_glass_reason: str | None = None
    cost_alert: bool = False
    storm: bool = False
    probe: bool = False
    escalation: tuple[dict[str, Any], ...] = ()
    incident: Mapping[str, Any] | None = None
    windows: tuple[str, ...] = ()  # windows that shaped the decision
    lock_ttl: timedelta | None = None
    max_concurrent: int = 1
    max_concurrent_per_target: int = 1
    cost: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.mode == "auto"

    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "request_id": self.request_id,
            "at": self.at.isoformat(),
            "runbook": self.runbook,
            "route": self.route,
            "service": self.service,
            "target": self.target,
            "environment": self.environment,
            "risk": self.risk,
            "requester": self.requester,
            "approvers": self.approvers.to_dict() if self.approvers else None,
            "break_glass": self.break_glass,
            "break_glass_reason": self.break_glass_reason,
            "cost_alert": self.cost_alert,
            "storm": self.storm,
            "probe": self.probe,
            "escalation": list(self.escalation),
            "incident": dict(self.incident) if self.incident else None,
            "windows": list(self.windows),
            "reasons": [r.to_dict() for r in self.reasons],
        }


def _request_id(request: Request, now: datetime) -> str:
    if request.request_id:
        return request.request_id
    blob = json.dumps(
        [sorted(request.labels.items()), request.runbook, request.target, now.isoformat()],
        default=str,
    )
    return "req-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _tags(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        raw = [raw]
    out: dict[str, Any] = {}
    for item in raw:
        name, sep, value = str(item).partition("=")
        out[name] = value if sep else True
    return out


def _merge_approvals(items: list[Approval]) -> Approval | None:
    if not items:
        return None
    order = {"approve": 0, "manual": 1, "deny": 2}
    return Approval(
        users=frozenset().union(*(a.users for a in items)),
        groups=frozenset().union(*(a.groups for a in items)),
        quorum=max(a.quorum for a in items),
        timeout=min(a.timeout for a in items),
        on_timeout=max((a.on_timeout for a in items), key=order.__getitem__),
    )


class _Pass:
    """Collects reasons for one evaluation."""

    def __init__(self) -> None:
        self.reasons: list[Reason] = []

    def add(self, code: str, message: str, effect: str = "info") -> None:
        self.reasons.append(Reason(code, message, effect))

    def mode(self) -> str:
        rank = max((_RANK[r.effect] for r in self.reasons), default=0)
        return MODES[max(rank, 0)]


def _resolve_target(
    policy: Policy, request: Request, route: Route | None, service: str | None
) -> tuple[str | None, str]:
    """(target, how it was named). Strips a `:port` suffix when the bare host is known."""
    if request.target:
        return request.target, "request"
    label = route.target_label if route else "instance"
    value = request.labels.get(label)
    if not value:
        return None, f"alert label {label!r}"
    if ":" in value and not _is_known(policy, request, service, value):
        host = value.rsplit(":", 1)[0]
        if _is_known(policy, request, service, host):
            return host, f"alert label {label!r}"
    return value, f"alert label {label!r}"


def _is_known(policy: Policy, request: Request, service: str | None, host: str) -> bool:
    if request.inventory is not None:
        return host in request.inventory
    if service and policy.services[service].hosts is not None:
        return host in policy.services[service].hosts  # type: ignore[operator]
    return any(svc.hosts and host in svc.hosts for svc in policy.services.values())


def _service_of(policy: Policy, target: str, tags: Mapping[str, Any]) -> str | None:
    named = tags.get("service")
    if isinstance(named, str) and named in policy.services:
        return named
    owners = [n for n, svc in policy.services.items() if svc.hosts and target in svc.hosts]
    return owners[0] if len(owners) == 1 else None


def _service_hosts(policy: Policy, request: Request, service: str) -> set[str] | frozenset:
    svc = policy.services[service]
    if svc.hosts is not None:
        return svc.hosts
    inventory = request.inventory or {}
    return {h for h, tags in inventory.items() if _tags(tags).get("service") == service}


def locate(policy: Policy, request: Request) -> tuple[str | None, str | None]:
    """(service, target) the policy would pick for `request`, or None for either when it
    names none or an unknown one; decides nothing. The target is returned only when it is a
    known host (alert content must not make up hosts that count as down)."""
    route = None if request.runbook else policy.route_for(request.labels)
    if route is None and not request.runbook:
        return None, None
    service = None
    if route is not None and route.service:
        service = route.service
    elif request.service:
        service = request.service
    else:
        service = request.labels.get(route.service_label if route else "service") or None
    if service is not None and service not in policy.services:
        return None, None
    target, _ = _resolve_target(policy, request, route, service)
    if target is None or not _is_known(policy, request, service, target):
        return service, None
    if service is None:
        service = _service_of(policy, target, _tags((request.inventory or {}).get(target)))
    return service, target


def evaluate(policy: Policy, request: Request, state: State, now: datetime) -> Decision:
    """Decide what happens to one proposed remediation, with every reason."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    out = _Pass()
    rid = _request_id(request, now)
    base = {"request_id": rid, "at": now, "requester": request.requester}

    # -- which runbook: a trusted caller names it, or the first matching route ----------------
    route: Route | None = None
    if request.runbook:
        runbook_name: str | None = request.runbook
        if runbook_name not in policy.runbooks:
            out.add("unknown_runbook", f"runbook {runbook_name!r} is not in the policy", "deny")
            return Decision(mode="deny", reasons=tuple(out.reasons), runbook=runbook_name, **base)
    else:
        route = policy.route_for(request.labels)
        if route is None:
            out.add("no_route", "no route matches the alert's labels: left to a human", "manual")
            return Decision(mode="manual", reasons=tuple(out.reasons), **base)
        out.add("route", f"alert matched route {route.name!r}")
        runbook_name = route.runbook

    # -- which service ---------------------------------------------------------------------------
    service: str | None = None
    if route is not None and route.service:
        service = route.service
    elif request.service:
        service = request.service
    elif request.labels.get(route.service_label if route else "service"):
        service = request.labels[route.service_label if route else "service"]
    if service is not None and service not in policy.services:
        out.add("unknown_service", f"service {service!r} is not in the policy", "deny")
        return Decision(
            mode="deny",
            reasons=tuple(out.reasons),
            runbook=runbook_name,
            service=service,
            route=route.name if route else None,
            **base,
        )
    svc = policy.services.get(service) if service else None
    escalate_to = svc.escalation if svc and svc.escalation else (svc.owner if svc else None)

    # -- an escalation-ladder route: nothing to automate ----------------------------------------
    if route is not None and route.runbook is None:
        steps = tuple(s.to_dict() for s in route.escalate)
        ladder = " -> ".join(
            s.target + (f" ({format_duration(s.timeout)})" if s.timeout else "")
            for s in route.escalate
        )
        out.add("escalate", f"route {route.name!r} escalates to people: {ladder}", "manual")
        return Decision(
            mode="manual",
            reasons=tuple(out.reasons),
            route=route.name,
            service=service,
            escalation=steps,
            **base,
        )

    assert runbook_name is not None
    runbook: Runbook = policy.runbooks[runbook_name]
    tier = policy.tiers[runbook.risk]
    limits: Limits = tier.limits
    approvals: list[Approval] = []
    escalation: list[dict[str, Any]] = []
    flags = {"break_glass": False, "cost_alert": False, "storm": False, "probe": False}
    shaped_by: list[str] = []

    # -- target: must be a known host, carrying the required tags --------------------------------
    target, named_by = _resolve_target(policy, request, route, service)
    tags: dict[str, Any] = {}
    environment = svc.environment if svc else None
    if target is None:
        out.add("inventory", f"no target: {named_by} is missing", "deny")
    else:
        if not _is_known(policy, request, service, target):
            out.add("inventory", f"target {target!r} ({named_by}) is not in the inventory", "deny")
        elif svc is not None and svc.hosts is not None and target not in svc.hosts:
            out.add("inventory", f"target {target!r} is not a host of service {service!r}", "deny")
        else:
            tags = _tags((request.inventory or {}).get(target))
            owner = tags.get("service")
            if service is not None and isinstance(owner, str) and owner != service:
                out.add(
                    "inventory",
                    f"target {target!r} belongs to service {owner!r}, not {service!r}",
                    "deny",
                )
            else:
                out.add("inventory", f"target {target!r} is in the inventory")
        if service is None:
            # The inventory (trusted), not the alert, says which service a host serves.
            service = _service_of(policy, target, tags)
            svc = policy.services.get(service) if service else None
            if svc is not None:
                environment = svc.environment
                escalate_to = svc.escalation or svc.owner
        if environment is None:
            env = tags.get("env", tags.get("environment"))
            environment = str(env) if env is not None else None
        missing = []
        for name, value in policy.compliance.required_tags:
            have = tags.get(name)
            if have is None or have is False or (value is not None and str(have) != value):
                missing.append(f"{name}={value}" if value is not None else name)
        if missing:
            out.add("compliance", f"target lacks required tags: {', '.join(missing)}", "deny")
        elif policy.compliance.required_tags:
            out.add("compliance", "target carries every required tag")

    # -- risk tier -> mode ----------------------------------------------------------------------
    incident = None
    if tier.mode == "auto":
        out.add("risk_tier", f"risk {runbook.risk}: runs automatically", "auto")
    elif tier.mode == "approval":
        out.add("risk_tier", f"risk {runbook.risk}: needs approval", "approval")
        approvals.append(tier.approval)
    else:
        link = runbook.url or runbook.playbook or runbook.job_template
        out.add(
            "risk_tier",
            f"risk {runbook.risk}: never automated; open an incident ({link})",
            "manual",
        )
        incident = {
            "runbook": runbook.name,
            "link": link,
            "service": service,
            "target": target,
            "assignee": escalate_to,
        }

    # -- freeze windows ---------------------------------------------------------------------------
    _windows(policy, request, now, service, runbook, environment, out, flags, approvals, shaped_by)

    # -- blast radius and storm cooldown ---------------------------------------------------------
    live = [lock for lock in state.locks(now) if lock.owner != rid]
    if svc is not None:
        max_unhealthy = svc.max_unhealthy or limits.max_unhealthy
        cooldown = svc.storm_cooldown or limits.storm_cooldown
        hosts = _service_hosts(policy, request, service)  # type: ignore[arg-type]
        if max_unhealthy is not None and hosts:
            sick = ((state.unhealthy(service) | request.down) & hosts) | {
                lock.target for lock in live if lock.target in hosts
            }
            if target in hosts:
                sick.add(target)
            total = len(hosts)
            share = f"{len(sick)}/{total} hosts of {service!r} down or in remediation"
            if max_unhealthy.exceeded(len(sick), total):
                flags["storm"] = True
                out.add(
                    "blast_radius",
                    f"{share}, above max_unhealthy {max_unhealthy}: automation stopped",
                    "deny",
                )
                if escalate_to:
                    escalation.append({"target": escalate_to, "timeout": None})
            else:
                last = state.last_storm(service)  # type: ignore[arg-type]
                if last is not None and now < last + cooldown:
                    left = format_duration(last + cooldown - now)
                    out.add(
                        "storm_cooldown",
                        f"{share}; storm cooldown: automation resumes in {left}",
                        "deny",
                    )
                else:
                    out.add("blast_radius", f"{share}, within max_unhealthy {max_unhealthy}")

    # -- run budgets: a loop is stopped and escalated --------------------------------------------
    loop = False
    if target is not None and limits.runs_per_target is not None:
        budget = limits.runs_per_target
        used = state.runs(since=now - budget.per, target=target)
        if used >= budget.count:
            loop = True
            out.add(
                "budget",
                f"{used} runs on {target!r} in the last {format_duration(budget.per)}"
                f" (at most {budget.count})",
                "deny",
            )
    if limits.runs_per_runbook is not None:
        budget = limits.runs_per_runbook
        used = state.runs(since=now - budget.per, runbook=runbook.name)
        if used >= budget.count:
            loop = True
            out.add(
                "budget",
                f"{used} runs of {runbook.name!r} in the last "
                f"{format_duration(budget.per)} (at most {budget.count})",
                "deny",
            )

    # -- circuit breaker per runbook -------------------------------------------------------------
    cb = limits.circuit_breaker
    failures = state.failures_since_success(runbook.name, now - cb.window)
    if len(failures) >= cb.failures:
        reopen = failures[-1] + cb.cooldown
        if now < reopen:
            out.add(
                "circuit_open",
                f"{len(failures)} failures of {runbook.name!r} in "
                f"{format_duration(cb.window)}; half-open in {format_duration(reopen - now)}",
                "deny",
            )
        elif any(lock.runbook == runbook.name for lock in live):
            out.add(
                "circuit_open",
                f"circuit half-open: a probe of {runbook.name!r} is already running",
                "deny",
            )
        else:
            flags["probe"] = True
            out.add(
                "circuit_half_open",
                f"circuit half-open after {format_duration(cb.cooldown)}: this run is the probe",
            )

    # -- concurrency -----------------------------------------------------------------------------
    if len(live) >= limits.max_concurrent:
        out.add(
            "concurrency",
            f"{len(live)} remediations in flight (global limit {limits.max_concurrent})",
            "deny",
        )
    if target is not None:
        on_target = sum(1 for lock in live if lock.target == target)
        if on_target >= limits.max_concurrent_per_target:
            out.add(
                "concurrency", f"{on_target} remediation(s) already running on {target!r}", "deny"
            )

    # -- daily cost budget -----------------------------------------------------------------------
    if limits.daily_cost_budget is not None:
        local = now.astimezone(policy.timezone)
        day_start = datetime.combine(local.date(), time(), tzinfo=policy.timezone)
        spent = state.cost_spent(day_start.astimezone(UTC))
        if spent + runbook.cost > limits.daily_cost_budget:
            flags["cost_alert"] = True
            out.add(
                "cost_budget",
                f"today's cost {spent:g} + {runbook.cost:g} exceeds the daily "
                f"budget {limits.daily_cost_budget:g}: needs approval",
                "approval",
            )
            has_people = tier.approval.users or tier.approval.groups
            approvals.append(tier.approval if has_people else policy.break_glass)

    # -- escalation after failed attempts --------------------------------------------------------
    if target is not None:
        failed = state.consecutive_failures(runbook.name, target)
        if failed >= limits.escalate_after_failures:
            loop = True
            out.add(
                "escalate",
                f"{failed} failed attempts of {runbook.name!r} on {target!r}: "
                f"escalated to {escalate_to or 'a human'}",
                "manual",
            )
    if loop and not any(r.code == "escalate" for r in out.reasons):
        out.add(
            "escalate",
            f"remediation loop stopped: escalated to {escalate_to or 'a human'}",
            "manual",
        )
    if loop and escalate_to and not escalation:
        escalation.append({"target": escalate_to, "timeout": None})

    mode = out.mode()
    return Decision(
        mode=mode,
        reasons=tuple(out.reasons),
        runbook=runbook.name,
        route=route.name if route else None,
        service=service,
        target=target,
        environment=environment,
        risk=runbook.risk,
        approvers=_merge_approvals(approvals) if mode == "approval" else None,
        break_glass=flags["break_glass"],
        break_glass_reason=request.break_glass if flags["break_glass"] else None,
        cost_alert=flags["cost_alert"],
        storm=flags["storm"],
        probe=flags["probe"],
        escalation=tuple(escalation),
        incident=incident if mode == "manual" and incident else None,
        windows=tuple(shaped_by),
        lock_ttl=limits.lock_ttl,
        max_concurrent=limits.max_concurrent,
        max_concurrent_per_target=limits.max_concurrent_per_target,
        cost=runbook.cost,
        **base,
    )


def _windows(
    policy, request, now, service, runbook, environment, out, flags, approvals, shaped_by
) -> None:
    deny_open = []
    allow_scoped = []
    allow_open = []
    for window in policy.windows_for(service, runbook.risk, runbook.name, environment):
        if window.kind == "deny":
            if window.is_open(now):
                deny_open.append((window, window.state_at(now)))
        else:
            allow_scoped.append(window)
            if window.is_open(now):
                allow_open.append(window)
    frozen: list[tuple[Any, str]] = []
    for window, state in deny_open:
        started = request.started_at
        if window.overrun and started is not None and state.start and started < state.start:
            out.add(
                "overrun",
                f"deny window {window.name!r} opened after the action started; "
                "it may finish (overrun)",
            )
            shaped_by.append(window.name)
            continue
        until = f" until {state.end.isoformat()}" if state.end else ""
        frozen.append((window, f"deny window {window.name!r} is active{until}"))
    if allow_scoped and not allow_open:
        started = request.started_at
        overrun = [w for w in allow_scoped if w.overrun and started and w.is_open(started)]
        if overrun:
            out.add(
                "overrun",
                f"allow window {overrun[0].name!r} closed after the action started;"
                " it may finish (overrun)",
            )
            shaped_by.append(overrun[0].name)
        else:
            opens = [s.next_open for s in (w.state_at(now) for w in allow_scoped) if s.next_open]
            when = f"; next opens {min(opens).isoformat()}" if opens else ""
            names = ", ".join(repr(w.name) for w in allow_scoped)
            frozen.append((allow_scoped[0], f"outside every allow window ({names}){when}"))
            for window in allow_scoped[1:]:
                shaped_by.append(window.name)
    elif allow_open:
        out.add("freeze", f"inside allow window {allow_open[0].name!r}")
        shaped_by.append(allow_open[0].name)
    if not frozen:
        if request.break_glass:
            out.add("break_glass", "break-glass requested but no freeze applies: not used")
        return
    for window, _ in frozen:
        shaped_by.append(window.name)
    if request.break_glass:
        refusing = [w.name for w, _ in frozen if not w.break_glass]
        for _, message in frozen:
            out.add("freeze", message, "deny" if refusing else "approval")
        if refusing:
            out.add(
                "break_glass", f"window(s) {', '.join(refusing)} do not allow break-glass", "deny"
            )
        else:
            flags["break_glass"] = True
            out.add(
                "break_glass",
                f"break-glass override requested ({request.break_glass}): "
                "needs approval and is audited",
                "approval",
            )
            approvals.append(policy.break_glass)
    else:
        for _, message in frozen:
            out.add("freeze", message, "deny")


# -- what the dispatcher does with a decision ----------------------------------------------------


def record_decision(state: State, decision: Decision) -> None:
    """Remember what a decision observed that later decisions depend on (a storm)."""
    if decision.storm and decision.service:
        state.note_storm(decision.service, decision.at)


def begin_run(state: State, decision: Decision, now: datetime) -> bool:
    """Take the concurrency slot (atomic across processes) and count the run.

    Call after the decision allowed the run (auto, or approval granted). False: another
    dispatcher took the last slot first; evaluate again later.
    """
    if decision.runbook is None or decision.target is None:
        raise ValueError("the decision names no runbook/target to run")
    taken = state.acquire(
        owner=decision.request_id,
        target=decision.target,
        runbook=decision.runbook,
        now=now,
        ttl=decision.lock_ttl or timedelta(minutes=30),
        max_global=decision.max_concurrent,
        max_per_target=decision.max_concurrent_per_target,
    )
    if taken:
        state.record_run(
            request_id=decision.request_id,
            runbook=decision.runbook,
            target=decision.target,
            service=decision.service,
            at=now,
            cost=decision.cost,
        )
    return taken


def finish_run(state: State, decision: Decision, ok: bool, now: datetime) -> None:
    """Record the outcome (feeds the circuit breaker and escalation) and free the slot."""
    assert decision.runbook is not None and decision.target is not None
    state.record_result(runbook=decision.runbook, target=decision.target, ok=ok, at=now)
    state.release(decision.request_id)
