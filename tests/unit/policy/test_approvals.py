"""Approvals: approver lists and groups, quorum, no self-approval, timeout outcomes."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from unit.policy.policy_fixtures import BASE, INVENTORY, NOW

from selfheal.policy import (
    Request,
    approval_status,
    approve,
    compile_policy,
    evaluate,
    open_approval,
)


def _decision(state, quorum=1, on_timeout="deny", requester="bob", **request):
    data = copy.deepcopy(BASE)
    data["risk_tiers"]["high"]["approval"].update(
        {"quorum": quorum, "on_timeout": on_timeout, "timeout": "30m"}
    )
    policy = compile_policy(data)
    labels = {"alertname": "Down", "service": "db", "instance": "db-01"}
    req = Request(labels=labels, inventory=INVENTORY, requester=requester, **request)
    decision = evaluate(policy, req, state, NOW)
    assert decision.mode == "approval", decision.reasons
    open_approval(state, decision, NOW)
    return decision


def test_listed_user_approves(state) -> None:
    d = _decision(state)
    result = approve(state, d.request_id, "alice", now=NOW + timedelta(minutes=1))
    assert result.accepted and result.status == "approved" and result.votes == ("alice",)


def test_group_member_approves(state) -> None:
    d = _decision(state)
    result = approve(state, d.request_id, "carol", roles=["sre-leads"], now=NOW)
    assert result.status == "approved"


def test_self_approval_refused(state) -> None:
    d = _decision(state, requester="alice")
    result = approve(state, d.request_id, "alice", roles=["sre-leads"], now=NOW)
    assert not result.accepted and result.status == "pending"
    assert [r.code for r in result.reasons] == ["self_approval"]


def test_not_an_approver(state) -> None:
    d = _decision(state)
    result = approve(state, d.request_id, "mallory", roles=["devs"], now=NOW)
    assert not result.accepted and result.reasons[0].code == "not_approver"


def test_quorum_needs_distinct_approvers(state) -> None:
    d = _decision(state, quorum=2)
    first = approve(state, d.request_id, "alice", now=NOW)
    assert first.accepted and first.status == "pending"
    dup = approve(state, d.request_id, "alice", now=NOW)
    assert not dup.accepted and dup.reasons[0].code == "duplicate_vote"
    second = approve(state, d.request_id, "dave", roles=["sre-leads"], now=NOW)
    assert second.status == "approved" and second.votes == ("alice", "dave")
    late = approve(state, d.request_id, "erin", roles=["sre-leads"], now=NOW)
    assert not late.accepted and late.reasons[0].code == "closed"


@pytest.mark.parametrize(
    ("on_timeout", "status"), [("deny", "denied"), ("approve", "approved"), ("manual", "manual")]
)
def test_timeout_outcome(state, on_timeout, status) -> None:
    d = _decision(state, on_timeout=on_timeout)
    assert approval_status(state, d.request_id, NOW + timedelta(minutes=29)).status == "pending"
    assert approval_status(state, d.request_id, NOW + timedelta(minutes=30)).status == status
    late = approve(state, d.request_id, "alice", now=NOW + timedelta(minutes=31))
    assert not late.accepted and late.status == status


def test_vote_after_deadline_reports_the_timeout(state) -> None:
    d = _decision(state)
    late = approve(state, d.request_id, "alice", now=NOW + timedelta(hours=1))
    assert late.reasons[0].code == "approval_timeout" and late.status == "denied"


def test_unknown_request(state) -> None:
    result = approve(state, "nope", "alice", now=NOW)
    assert result.status == "unknown" and result.reasons[0].code == "unknown_request"


def test_break_glass_approval_is_recorded_for_audit(state) -> None:
    data = copy.deepcopy(BASE)
    data["windows"] = [{"name": "all-year", "kind": "deny", "dates": ["01-01..12-31"]}]
    policy = compile_policy(data)
    labels = {"alertname": "Down", "service": "web", "instance": "web-01"}
    req = Request(labels=labels, inventory=INVENTORY, requester="bob", break_glass="INC-7")
    d = evaluate(policy, req, state, NOW)
    assert d.mode == "approval" and d.break_glass
    record = open_approval(state, d, NOW)
    assert record["break_glass"] and record["break_glass_reason"] == "INC-7"
    one = approve(state, d.request_id, "ic1", roles=["incident-commanders"], now=NOW)
    assert one.status == "pending" and one.break_glass  # quorum 2
    two = approve(state, d.request_id, "ic2", roles=["incident-commanders"], now=NOW)
    assert two.status == "approved"
    assert state.load_approval(d.request_id)["votes"][1]["approver"] == "ic2"


def test_open_approval_rejects_other_modes(state) -> None:
    labels = {"alertname": "Down", "service": "web", "instance": "web-01"}
    d = evaluate(
        compile_policy(copy.deepcopy(BASE)), Request(labels=labels, inventory=INVENTORY), state, NOW
    )
    with pytest.raises(ValueError):
        open_approval(state, d)


def test_bound_approvals(state) -> None:
    from selfheal.policy import Approvals

    d = _decision(state, requester="alice")
    approvals = Approvals(state)
    assert approvals.approve(d.request_id, "alice", ["sre-leads"], NOW).reasons[0].code == (
        "self_approval"
    )
    assert approvals.approve(d.request_id, "carol", ["sre-leads"], NOW).status == "approved"
    assert approvals.status(d.request_id, NOW).status == "approved"
