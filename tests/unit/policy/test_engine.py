"""Every guardrail of `evaluate`, with both state implementations."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.policy.policy_fixtures import BASE, INVENTORY, NOW, WEB_HOSTS

from selfheal.policy import (
    MemoryState,
    Request,
    begin_run,
    compile_policy,
    evaluate,
    finish_run,
    record_decision,
)


def policy_with(**changes):
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(changes))
    return compile_policy(data)


POLICY = policy_with()


def web_alert(host="web-01", **extra) -> Request:
    labels = {"alertname": "Down", "service": "web", "instance": host}
    return Request(labels=labels, inventory=INVENTORY, **extra)


def codes(decision, effect=None) -> set[str]:
    return {r.code for r in decision.reasons if effect is None or r.effect == effect}


def run(state, decision, at, ok=True):
    assert begin_run(state, decision, at)
    finish_run(state, decision, ok, at + timedelta(minutes=1))


# -- routing and modes --------------------------------------------------------------------------


def test_low_risk_runs_automatically(state) -> None:
    d = evaluate(POLICY, web_alert("web-03:9100"), state, NOW)
    assert d.mode == "auto" and d.allowed
    assert (d.runbook, d.service, d.target, d.route) == ("restart", "web", "web-03", "web-down")
    assert d.environment == "prod"
    assert codes(d, "deny") == set()
    assert "risk_tier" in codes(d)


def test_every_reason_has_a_code_and_a_message(state) -> None:
    d = evaluate(POLICY, web_alert(), state, NOW)
    payload = d.to_dict()
    assert payload["mode"] == "auto"
    assert all(r["code"] and r["message"] for r in payload["reasons"])


def test_high_risk_needs_approval_with_approvers(state) -> None:
    labels = {"alertname": "Down", "service": "db", "instance": "db-01"}
    d = evaluate(POLICY, Request(labels=labels, inventory=INVENTORY), state, NOW)
    assert d.mode == "approval"
    assert d.approvers.users == {"alice"} and d.approvers.groups == {"sre-leads"}


def test_critical_is_manual_with_an_incident_link(state) -> None:
    d = evaluate(POLICY, web_alert(runbook="rebuild", target="web-01"), state, NOW)
    assert d.mode == "manual"
    assert d.incident["link"] == "https://rb/rebuild"
    assert d.incident["assignee"] == "pd:web"


def test_unrouted_alert_is_left_to_a_human(state) -> None:
    d = evaluate(POLICY, Request(labels={"alertname": "Mystery"}), state, NOW)
    assert d.mode == "manual" and codes(d) == {"no_route"}


def test_escalation_ladder_route(state) -> None:
    d = evaluate(POLICY, Request(labels={"alertname": "SplitBrain"}), state, NOW)
    assert d.mode == "manual" and "escalate" in codes(d)
    assert [s["target"] for s in d.escalation] == ["dba", "cto"]
    assert d.escalation[0]["timeout"] == "15m"


# -- untrusted alert content ----------------------------------------------------------------------


def test_alert_cannot_invent_a_target(state) -> None:
    d = evaluate(POLICY, web_alert("evil.example.com"), state, NOW)
    assert d.mode == "deny" and "inventory" in codes(d, "deny")


def test_alert_cannot_pick_a_host_of_another_service(state) -> None:
    d = evaluate(POLICY, web_alert("db-01"), state, NOW)
    assert d.mode == "deny" and "inventory" in codes(d, "deny")


def test_alert_cannot_name_an_unknown_service_or_runbook(state) -> None:
    d = evaluate(POLICY, Request(labels={"alertname": "Disk", "service": "ghost"}), state, NOW)
    assert d.mode == "deny" and codes(d, "deny") == {"unknown_service"}
    d = evaluate(POLICY, Request(runbook="rm_rf", target="web-01"), state, NOW)
    assert d.mode == "deny" and codes(d, "deny") == {"unknown_runbook"}


def test_target_without_inventory_uses_the_service_hosts(state) -> None:
    labels = {"alertname": "Down", "service": "web", "instance": "web-02"}
    d = evaluate(POLICY, Request(labels=labels), state, NOW)
    assert "inventory" not in codes(d, "deny")
    assert "compliance" in codes(d, "deny")  # no tags known: not compliant


def test_missing_target(state) -> None:
    d = evaluate(POLICY, Request(labels={"alertname": "Down", "service": "web"}), state, NOW)
    assert d.mode == "deny" and "inventory" in codes(d, "deny")


# -- compliance -------------------------------------------------------------------------------------


def test_compliance_tags_required(state) -> None:
    inventory = {**INVENTORY, "web-01": {"owner": "x"}}
    d = evaluate(POLICY, Request(labels=web_alert().labels, inventory=inventory), state, NOW)
    assert d.mode == "deny" and "compliance" in codes(d, "deny")
    inventory = {**INVENTORY, "web-01": ["selfheal_managed", "pci"]}  # list form
    d = evaluate(POLICY, Request(labels=web_alert().labels, inventory=inventory), state, NOW)
    assert d.mode == "auto"


def test_compliance_tag_with_a_value(state) -> None:
    policy = policy_with(compliance={"required_tags": ["selfheal_managed", "tier=gold"]})
    inventory = {**INVENTORY, "web-01": {"selfheal_managed": True, "tier": "silver"}}
    d = evaluate(policy, Request(labels=web_alert().labels, inventory=inventory), state, NOW)
    assert "tier=gold" in next(r.message for r in d.reasons if r.code == "compliance")
    inventory["web-01"]["tier"] = "gold"
    assert evaluate(
        policy, Request(labels=web_alert().labels, inventory=inventory), state, NOW
    ).allowed


# -- run budgets -----------------------------------------------------------------------------------


def test_fourth_run_on_the_same_host_within_an_hour_is_refused(state) -> None:
    for minutes in (0, 10, 20):
        at = NOW + timedelta(minutes=minutes)
        d = evaluate(POLICY, web_alert(request_id=f"r{minutes}"), state, at)
        assert d.mode == "auto"
        run(state, d, at)
    d = evaluate(POLICY, web_alert(request_id="r4"), state, NOW + timedelta(minutes=30))
    assert d.mode == "deny"
    assert "budget" in codes(d, "deny")
    assert "escalate" in codes(d)  # a loop is stopped and escalated, not retried
    assert d.escalation[0]["target"] == "pd:web"
    # another host is not affected
    assert evaluate(POLICY, web_alert("web-02"), state, NOW + timedelta(minutes=30)).allowed
    # an hour after the first run the budget has room again
    assert evaluate(POLICY, web_alert(), state, NOW + timedelta(minutes=61)).allowed


def test_per_runbook_budget(state) -> None:
    policy = policy_with(limits={**BASE["limits"], "runs_per_runbook": {"count": 2, "per": "1h"}})
    for i, host in enumerate(WEB_HOSTS[:2]):
        d = evaluate(policy, web_alert(host, request_id=f"r{i}"), state, NOW)
        run(state, d, NOW)
    d = evaluate(policy, web_alert("web-05"), state, NOW + timedelta(minutes=5))
    assert d.mode == "deny" and "budget" in codes(d, "deny")


def test_medium_tier_has_tighter_default_limits(state) -> None:
    data = copy.deepcopy(BASE)
    del data["risk_tiers"]
    policy = compile_policy(data)
    req = Request(labels={"alertname": "DiskFull", "instance": "web-01"}, inventory=INVENTORY)
    for i in range(2):
        d = evaluate(policy, Request(**{**req.__dict__, "request_id": f"m{i}"}), state, NOW)
        assert d.mode == "auto", d.reasons
        run(state, d, NOW + timedelta(minutes=i))
    d = evaluate(policy, req, state, NOW + timedelta(minutes=5))
    assert "budget" in codes(d, "deny")


# -- blast radius and storm cooldown ---------------------------------------------------------------


def test_blast_radius_stops_automation_until_fraction_drops_and_cooldown_passes(state) -> None:
    sick = WEB_HOSTS[:4]  # 40% of web with max_unhealthy 30%
    for host in sick:
        state.set_health("web", host, healthy=False, at=NOW)
    d = evaluate(POLICY, web_alert("web-01"), state, NOW)
    assert d.mode == "deny" and "blast_radius" in codes(d, "deny") and d.storm
    assert "4/10" in next(r.message for r in d.reasons if r.code == "blast_radius")
    record_decision(state, d)

    # two recover: 20%, but the storm cooldown (15m) holds automation back
    for host in sick[2:]:
        state.set_health("web", host, healthy=True, at=NOW + timedelta(minutes=5))
    later = NOW + timedelta(minutes=10)
    d = evaluate(POLICY, web_alert("web-01"), state, later)
    assert d.mode == "deny" and codes(d, "deny") == {"storm_cooldown"}

    # still 40% after the cooldown would have passed: still stopped
    after = NOW + timedelta(minutes=16)
    for host in sick[2:]:
        state.set_health("web", host, healthy=False, at=after)
    d = evaluate(POLICY, web_alert("web-01"), state, after)
    assert "blast_radius" in codes(d, "deny")
    record_decision(state, d)
    for host in sick[2:]:
        state.set_health("web", host, healthy=True, at=after)
    assert (
        evaluate(POLICY, web_alert("web-01"), state, after + timedelta(minutes=14)).mode == "deny"
    )
    assert evaluate(POLICY, web_alert("web-01"), state, after + timedelta(minutes=15)).allowed


def test_targets_in_remediation_count_as_unhealthy(state) -> None:
    for i, host in enumerate(WEB_HOSTS[:3]):
        d = evaluate(POLICY, web_alert(host, request_id=f"h{i}"), state, NOW)
        assert d.allowed, d.reasons
        assert begin_run(state, d, NOW)  # in flight, not finished
    d = evaluate(POLICY, web_alert("web-09"), state, NOW)
    assert "blast_radius" in codes(d, "deny")  # 3 in flight + this one = 40%


def test_max_unhealthy_as_a_count(state) -> None:
    services = copy.deepcopy(BASE["services"])
    services["web"]["max_unhealthy"] = 1
    policy = policy_with(services=services)
    state.set_health("web", "web-05", healthy=False, at=NOW)
    d = evaluate(policy, web_alert("web-01"), state, NOW)
    assert "blast_radius" in codes(d, "deny")


# -- circuit breaker --------------------------------------------------------------------------------


def test_circuit_opens_after_failures_then_half_open_probe(state) -> None:
    for i, host in enumerate(WEB_HOSTS[:3]):
        state.record_result(runbook="restart", target=host, ok=False, at=NOW + timedelta(minutes=i))
    d = evaluate(POLICY, web_alert("web-05"), state, NOW + timedelta(minutes=5))
    assert d.mode == "deny" and "circuit_open" in codes(d, "deny")
    # after the cooldown (10m after the last failure): one probe may run
    probe_at = NOW + timedelta(minutes=13)
    d = evaluate(POLICY, web_alert("web-05", request_id="probe"), state, probe_at)
    assert d.allowed and d.probe and "circuit_half_open" in codes(d)
    assert begin_run(state, d, probe_at)
    other = evaluate(POLICY, web_alert("web-06"), state, probe_at)
    assert "circuit_open" in codes(other, "deny")  # only one probe at a time
    finish_run(state, d, ok=False, now=probe_at + timedelta(minutes=1))
    d = evaluate(POLICY, web_alert("web-06"), state, probe_at + timedelta(minutes=2))
    assert "circuit_open" in codes(d, "deny")  # failed probe: open again
    state.record_result(
        runbook="restart", target="web-06", ok=True, at=probe_at + timedelta(minutes=20)
    )
    d = evaluate(POLICY, web_alert("web-06"), state, probe_at + timedelta(minutes=21))
    assert d.allowed and not d.probe  # closed after a success


# -- concurrency ------------------------------------------------------------------------------------


def test_per_target_and_global_concurrency(state) -> None:
    d = evaluate(POLICY, web_alert("web-01", request_id="a"), state, NOW)
    assert begin_run(state, d, NOW)
    again = evaluate(POLICY, web_alert("web-01", request_id="b"), state, NOW)
    assert "concurrency" in codes(again, "deny")
    # the lock holder itself is not blocked by its own lock
    assert "concurrency" not in codes(
        evaluate(POLICY, web_alert("web-01", request_id="a"), state, NOW)
    )
    # TTL: an abandoned lock expires
    later = NOW + timedelta(minutes=31)
    assert "concurrency" not in codes(evaluate(POLICY, web_alert("web-01"), state, later))

    policy = policy_with(limits={**BASE["limits"], "max_concurrent": 1, "max_unhealthy": "90%"})
    d = evaluate(policy, web_alert("web-02"), state, NOW)
    assert "concurrency" in codes(d, "deny")
    assert not begin_run(state, d, NOW)  # the atomic slot agrees


# -- cost budget ------------------------------------------------------------------------------------


def test_over_the_daily_cost_budget_needs_approval_and_raises_a_cost_alert(state) -> None:
    policy = policy_with(limits={**BASE["limits"], "daily_cost_budget": 2})
    for i, host in enumerate(WEB_HOSTS[:2]):
        d = evaluate(policy, web_alert(host, request_id=f"c{i}"), state, NOW)
        assert d.allowed and not d.cost_alert
        run(state, d, NOW)
    d = evaluate(policy, web_alert("web-05"), state, NOW + timedelta(minutes=2))
    assert d.mode == "approval" and d.cost_alert and "cost_budget" in codes(d, "approval")
    assert d.approvers.groups == {"incident-commanders"}  # low tier lists none: break-glass group
    # the next day the budget is fresh
    assert evaluate(policy, web_alert("web-05"), state, NOW + timedelta(days=1)).allowed


# -- escalation after failed attempts --------------------------------------------------------------


def test_escalation_after_failed_attempts(state) -> None:
    policy = policy_with(limits={**BASE["limits"], "escalate_after_failures": 2})
    state.record_result(runbook="restart", target="web-01", ok=False, at=NOW - timedelta(hours=3))
    assert evaluate(policy, web_alert("web-01"), state, NOW).allowed
    state.record_result(runbook="restart", target="web-01", ok=False, at=NOW - timedelta(hours=2))
    d = evaluate(policy, web_alert("web-01"), state, NOW)
    assert d.mode == "manual" and "escalate" in codes(d, "manual")
    assert d.escalation[0]["target"] == "pd:web"
    state.record_result(runbook="restart", target="web-01", ok=True, at=NOW - timedelta(hours=1))
    assert evaluate(policy, web_alert("web-01"), state, NOW).allowed


# -- freeze windows ---------------------------------------------------------------------------------

DENY_NIGHTS = {
    "name": "nights",
    "kind": "deny",
    "schedule": "0 22 * * *",
    "duration": "8h",
    "timezone": "Europe/Berlin",
}
ALLOW_DAYS = {
    "name": "office",
    "kind": "allow",
    "schedule": "0 9 * * mon-fri",
    "duration": "8h",
    "timezone": "UTC",
}


def test_deny_window_freezes(state) -> None:
    policy = policy_with(windows=[DENY_NIGHTS])
    at = NOW.replace(hour=21, minute=30)  # 23:30 in Berlin (CEST)
    d = evaluate(policy, web_alert(), state, at)
    assert d.mode == "deny" and "freeze" in codes(d, "deny") and d.windows == ("nights",)
    assert evaluate(policy, web_alert(), state, NOW).allowed


def test_deny_beats_allow(state) -> None:
    deny = {**DENY_NIGHTS, "schedule": "0 13 * * *", "duration": "1h"}  # 11:00Z-12:00Z in June
    policy = policy_with(windows=[ALLOW_DAYS, deny])
    at = NOW.replace(hour=11, minute=30)  # inside both
    d = evaluate(policy, web_alert(), state, at)
    assert d.mode == "deny" and "freeze" in codes(d, "deny")
    assert evaluate(policy, web_alert(), state, NOW.replace(hour=10)).allowed  # allow only


def test_outside_every_allow_window_is_refused(state) -> None:
    policy = policy_with(windows=[ALLOW_DAYS])
    d = evaluate(policy, web_alert(), state, NOW.replace(hour=20))
    assert d.mode == "deny"
    message = next(r.message for r in d.reasons if r.code == "freeze")
    assert "outside every allow window" in message and "2026-06-11T09:00:00+00:00" in message
    # an allow window scoped elsewhere does not restrict this service
    policy = policy_with(windows=[{**ALLOW_DAYS, "services": ["db"]}])
    assert evaluate(policy, web_alert(), state, NOW.replace(hour=20)).allowed


def test_window_scope_any_and_all(state) -> None:
    scoped = {
        **DENY_NIGHTS,
        "schedule": "0 0 * * *",
        "duration": "24h",
        "services": ["web"],
        "risks": ["high"],
    }
    policy = policy_with(windows=[scoped])
    assert evaluate(policy, web_alert(), state, NOW).mode == "deny"  # any: service matches
    policy = policy_with(windows=[{**scoped, "match": "all"}])
    assert evaluate(policy, web_alert(), state, NOW).allowed  # all: risk low does not match
    policy = policy_with(
        windows=[{**scoped, "environments": ["staging"], "risks": [], "match": "all"}]
    )
    assert evaluate(policy, web_alert(), state, NOW).allowed


def test_calendar_holiday_freeze(state) -> None:
    holiday = {
        "name": "xmas",
        "kind": "deny",
        "dates": ["12-24..12-26"],
        "timezone": "America/New_York",
    }
    policy = policy_with(windows=[holiday])
    xmas = NOW.replace(month=12, day=25)
    assert "freeze" in codes(evaluate(policy, web_alert(), state, xmas), "deny")
    assert evaluate(policy, web_alert(), state, NOW.replace(month=12, day=27, hour=12)).allowed


def test_break_glass_requires_approval_and_is_flagged(state) -> None:
    policy = policy_with(windows=[DENY_NIGHTS])
    at = NOW.replace(hour=21, minute=30)
    d = evaluate(policy, web_alert(break_glass="INC-42 checkout down", requester="bob"), state, at)
    assert d.mode == "approval"
    assert d.break_glass and d.break_glass_reason == "INC-42 checkout down"
    assert d.approvers.groups == {"incident-commanders"} and d.approvers.quorum == 2
    assert {"freeze", "break_glass"} <= codes(d, "approval")
    assert d.to_dict()["break_glass"] is True
    # a window may forbid break-glass
    policy = policy_with(windows=[{**DENY_NIGHTS, "break_glass": False}])
    d = evaluate(policy, web_alert(break_glass="please"), state, at)
    assert d.mode == "deny" and not d.break_glass
    # break-glass never lifts other guardrails
    policy = policy_with(windows=[DENY_NIGHTS])
    inventory = {**INVENTORY, "web-01": {}}
    req = Request(labels=web_alert().labels, inventory=inventory, break_glass="x")
    assert evaluate(policy, req, state, at).mode == "deny"


def test_break_glass_without_a_freeze_is_not_used(state) -> None:
    d = evaluate(POLICY, web_alert(break_glass="just because"), state, NOW)
    assert d.allowed and not d.break_glass


def test_overrun_lets_running_actions_finish(state) -> None:
    policy = policy_with(windows=[{**DENY_NIGHTS, "overrun": True}])
    at = NOW.replace(hour=21, minute=30)
    started = NOW.replace(hour=19, minute=55)  # before the window opened at 20:00Z
    d = evaluate(policy, web_alert(started_at=started), state, at)
    assert d.allowed and "overrun" in codes(d)
    started_inside = NOW.replace(hour=20, minute=30)
    assert evaluate(policy, web_alert(started_at=started_inside), state, at).mode == "deny"
    # without overrun the deny window stops it
    policy = policy_with(windows=[DENY_NIGHTS])
    assert evaluate(policy, web_alert(started_at=started), state, at).mode == "deny"
    # allow window with overrun: started inside, window closed since
    policy = policy_with(windows=[{**ALLOW_DAYS, "overrun": True}])
    d = evaluate(
        policy,
        web_alert(started_at=NOW.replace(hour=16, minute=50)),
        state,
        NOW.replace(hour=17, minute=30),
    )
    assert d.allowed and "overrun" in codes(d)


def test_environment_comes_from_inventory_not_the_alert(state) -> None:
    services = copy.deepcopy(BASE["services"])
    del services["web"]["environment"]
    policy = policy_with(
        services=services,
        windows=[
            {
                "name": "prod-freeze",
                "kind": "deny",
                "dates": ["01-01..12-31"],
                "environments": ["prod"],
            }
        ],
    )
    inventory = {**INVENTORY, "web-01": {"selfheal_managed": True, "env": "prod"}}
    labels = {**web_alert().labels, "env": "dev", "environment": "dev"}
    d = evaluate(policy, Request(labels=labels, inventory=inventory), state, NOW)
    assert d.environment == "prod" and d.mode == "deny"


# -- one pass -----------------------------------------------------------------------------------


def test_all_guardrails_report_in_one_pass(state) -> None:
    policy = policy_with(windows=[DENY_NIGHTS])
    for host in WEB_HOSTS[:5]:
        state.set_health("web", host, healthy=False, at=NOW)
    inventory = {**INVENTORY, "web-01": {}}
    at = NOW.replace(hour=21, minute=30)
    d = evaluate(policy, Request(labels=web_alert().labels, inventory=inventory), state, at)
    assert {"compliance", "freeze", "blast_radius"} <= codes(d, "deny")


def test_evaluate_is_pure(state) -> None:
    before = state.locks(NOW), state.runs(since=NOW - timedelta(days=1))
    first = evaluate(POLICY, web_alert(), state, NOW)
    second = evaluate(POLICY, web_alert(), state, NOW)
    assert first == second
    assert (state.locks(NOW), state.runs(since=NOW - timedelta(days=1))) == before


def test_naive_now_is_rejected(state) -> None:
    with pytest.raises(ValueError):
        evaluate(POLICY, web_alert(), state, NOW.replace(tzinfo=None))


def test_service_comes_from_the_inventory_when_the_route_names_none(state) -> None:
    req = Request(labels={"alertname": "DiskFull", "instance": "web-04"}, inventory=INVENTORY)
    d = evaluate(POLICY, req, state, NOW)
    assert (d.service, d.environment) == ("web", "prod")
    assert any(r.code == "blast_radius" for r in d.reasons)


# -- property: deny beats allow, whatever the time -------------------------------------------------


WINDOWS_POLICY = policy_with(
    windows=[
        {**ALLOW_DAYS, "timezone": "America/New_York"},
        {
            **DENY_NIGHTS,
            "schedule": "30 11 * * *",
            "duration": "3h",
            "timezone": "America/New_York",
        },
        {
            "name": "hols",
            "kind": "deny",
            "dates": ["12-24..12-26", "12-31..01-01"],
            "timezone": "America/New_York",
        },
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31)).map(
        lambda d: d.replace(tzinfo=UTC)
    )
)
def test_deny_beats_allow_at_any_time(when) -> None:
    allow, deny, hols = WINDOWS_POLICY.windows
    d = evaluate(WINDOWS_POLICY, web_alert(), MemoryState(), when)
    frozen = deny.is_open(when) or hols.is_open(when) or not allow.is_open(when)
    assert (d.mode == "deny") == frozen
    assert ("freeze" in codes(d, "deny")) == frozen


def test_alert_cannot_move_a_host_to_another_service(state) -> None:
    data = copy.deepcopy(BASE)
    data["services"]["lax"] = {}  # lists no hosts
    data["routes"].append({"name": "any", "match": {"alertname": "Any"}, "runbook": "restart"})
    policy = compile_policy(data)
    inventory = {**INVENTORY, "web-01": {"selfheal_managed": True, "service": "web"}}
    labels = {"alertname": "Any", "service": "lax", "instance": "web-01"}
    d = evaluate(policy, Request(labels=labels, inventory=inventory), state, NOW)
    assert d.mode == "deny" and "inventory" in codes(d, "deny")
